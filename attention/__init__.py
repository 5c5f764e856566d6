"""MasaCtrl's attention core: pure torch, no ComfyUI import. See control.py for the entry point."""
from .control import MutualSelfAttentionControl
from .layers import SD1_LAYERS, SDXL_LAYERS, UNetLayerMap
from .mutual import BatchLayout, BatchLayoutError, mutual_self_attention, step_index
from .schedule import PARTS, MutualAttentionSchedule, ScheduleError

__all__ = ["MutualSelfAttentionControl", "MutualAttentionSchedule", "ScheduleError", "PARTS",
           "BatchLayout", "BatchLayoutError", "UNetLayerMap", "SD1_LAYERS", "SDXL_LAYERS",
           "mutual_self_attention", "step_index"]
