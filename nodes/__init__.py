"""ComfyUI nodes (V3 schema), one module per capability."""
import folder_paths
from comfy_api.v0_0_2 import ComfyExtension, io
from typing_extensions import override

from .canvas_nodes import ExtendCanvas, PasteBack
from .caption_nodes import BLIPCaption, BLIPLoader
from .example_inputs import copy_missing_example_inputs
from .grid_nodes import GridSampling
from .masactrl_nodes import BatchConditioning, MasaCtrl
from .mask_nodes import MaskGuidanceNode, MaskPreview, SubjectPrompts
from .pose_nodes import OpenPoseDetect, OpenPoseLoader, PoseEditor, PoseRender
from .real_photo_nodes import DDIMInversionNode, FlowInversionNode, FollowInversionNode
from .repaint_nodes import RePaint, RePaintSampler
from .score_nodes import AlignmentScoresNode, ScoreModelLoader
from .sweep_nodes import ScheduleSweep
from .vital_layers_nodes import VitalLayers

# One line per capability, in the order the node menu should list them.
NODES: list[type[io.ComfyNode]] = [
    MasaCtrl, BatchConditioning,
    SubjectPrompts, MaskGuidanceNode, MaskPreview,
    DDIMInversionNode, FlowInversionNode, FollowInversionNode,
    OpenPoseLoader, OpenPoseDetect, PoseEditor, PoseRender,
    ExtendCanvas, PasteBack,
    BLIPLoader, BLIPCaption,
    GridSampling, RePaint, RePaintSampler,
    ScoreModelLoader, AlignmentScoresNode, ScheduleSweep, VitalLayers,
]


class MasaCtrlSuiteExtension(ComfyExtension):
    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        # ComfyUI 0.3.64 never calls ComfyExtension.on_load; this runs once, when the pack is loaded.
        copy_missing_example_inputs(folder_paths.get_input_directory())
        return list(NODES)
