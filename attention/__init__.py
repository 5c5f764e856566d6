"""The pure-torch core, no ComfyUI import: MasaCtrl's mutual self-attention (entry point: control.py) and the
algorithms around it (inversion.py, tiles.py for grid sampling, repaint.py, canvas.py for pixel operations).
The comfyui_* and diffusers_* modules are the thin adapters."""
from .control import MutualSelfAttentionControl
from .layers import SD1_LAYERS, SDXL_LAYERS, UNetLayerMap
from .mutual import BatchLayout, BatchLayoutError, mutual_self_attention, step_index
from .schedule import PARTS, MutualAttentionSchedule, ScheduleError

__all__ = ["MutualSelfAttentionControl", "MutualAttentionSchedule", "ScheduleError", "PARTS",
           "BatchLayout", "BatchLayoutError", "UNetLayerMap", "SD1_LAYERS", "SDXL_LAYERS",
           "mutual_self_attention", "step_index"]
