"""ComfyUI nodes (V3 schema), one module per capability."""
from typing_extensions import override

from comfy_api.latest import ComfyExtension, io

from .conditioning import BatchConditioning
from .inversion import DDIMInversionNode, FollowInversionNode
from .masactrl import MasaCtrl
from .masks import MaskGuidanceNode, MaskPreview, SubjectPrompts


class MasaCtrlSuiteExtension(ComfyExtension):
    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [MasaCtrl, BatchConditioning, SubjectPrompts, MaskGuidanceNode, MaskPreview,
                DDIMInversionNode, FollowInversionNode]
