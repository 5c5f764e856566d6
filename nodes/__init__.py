"""ComfyUI nodes (V3 schema), one module per capability."""
from typing_extensions import override

from comfy_api.latest import ComfyExtension, io

from .blip import BLIPCaption, BLIPLoader
from .canvas import ExtendCanvas, PasteBack
from .conditioning import BatchConditioning
from .grid import GridSampling
from .inversion import DDIMInversionNode, FollowInversionNode
from .masactrl import MasaCtrl
from .masks import MaskGuidanceNode, MaskPreview, SubjectPrompts
from .pose import OpenPoseDetect, PoseEditor, PoseRender
from .repaint import RePaint, RePaintSampler
from .scores import AlignmentScoresNode, ScoreModelLoader
from .sweep import ScheduleSweep

# One line per capability, in the order the node menu should list them.
NODES: list[type[io.ComfyNode]] = [
    MasaCtrl, BatchConditioning,
    SubjectPrompts, MaskGuidanceNode, MaskPreview,
    DDIMInversionNode, FollowInversionNode,
    OpenPoseDetect, PoseEditor, PoseRender,
    ExtendCanvas, PasteBack,
    BLIPLoader, BLIPCaption,
    GridSampling, RePaint, RePaintSampler,
    ScoreModelLoader, AlignmentScoresNode, ScheduleSweep,
]


class MasaCtrlSuiteExtension(ComfyExtension):
    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)
