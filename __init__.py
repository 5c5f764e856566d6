"""MasaCtrl Suite, a ComfyUI node pack. The attention core (attention/) needs no ComfyUI, so it can be used
from plain Python and diffusers; the nodes (nodes/) are imported only when ComfyUI asks."""

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from .nodes import MasaCtrlSuiteExtension

    return MasaCtrlSuiteExtension()
