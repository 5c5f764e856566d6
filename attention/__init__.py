"""MasaCtrl's attention algorithms, pure torch: the paper's equations (equations.py), when and where they act
(schedule.py, batch_layout.py, control.py), where masks come from (mask_guidance.py, subject_maps.py,
subject_words.py) and DDIM inversion (ddim_inversion.py). The comfyui_* and diffusers_* modules are the glue
to each framework; only comfyui_inversion.py imports ComfyUI itself, and nothing here imports it at import
time of this package."""
from .control import BatchLayout, BatchLayoutError, MutualSelfAttentionControl
from .equations import masked_mutual_attention, mutual_self_attention
from .schedule import PARTS, SD1_LAYERS, SDXL_LAYERS, MutualAttentionSchedule, ScheduleError, UNetLayerMap, step_index

__all__ = ["MutualSelfAttentionControl", "MutualAttentionSchedule", "ScheduleError", "PARTS",
           "BatchLayout", "BatchLayoutError", "UNetLayerMap", "SD1_LAYERS", "SDXL_LAYERS",
           "mutual_self_attention", "masked_mutual_attention", "step_index"]
