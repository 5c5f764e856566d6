"""Photo completion in pixel space: Extend Canvas (outpainting canvas, fill and masks) and Paste Back Original."""
from __future__ import annotations

from comfy_api.v0_0_2 import io

from ..completion.canvas import (
    ANCHORS,
    FILLS,
    MAX_SIDE,
    CanvasError,
    aspect_size,
    extend_canvas,
    parse_aspect,
    paste_back,
    pixels_padding,
    target_padding,
)
from .input_checks import report, require, rule
from .mode_widgets import mode_widgets

MODES = ("pixels", "target size", "target aspect")
EXTEND, PASTE = "Extend Canvas for Outpainting (MasaCtrl)", "Paste Back Original (MasaCtrl)"


SIDE_TOOLTIP = ("Mode 'pixels': px to add on the {}. The canvas is rounded up to multiples of 8 (SD's VAE needs "
                "them): the extra px go to an extended side of that axis (right/bottom first), or to right/bottom "
                "if that axis is not extended.")


@rule("aspect")
def aspect_parses(aspect):
    # Checked in every mode: an unreadable aspect is a mistake even where the mode does not use it yet.
    try:
        parse_aspect(aspect)
    except CanvasError as error:
        return str(error)


class ExtendCanvas(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return mode_widgets(io.Schema(
            node_id="MasaCtrlExtendCanvas",
            display_name=EXTEND,
            category="MasaCtrl/photo completion",
            description="Grow an image for outpainting (e.g. a photo whose feet are cut off, downwards), fill the "
                        "new area and return the masks inpainting, RePaint and Paste Back Original need. The "
                        "original's pixels are copied unchanged; canvas sides are multiples of 8.",
            inputs=[
                io.Image.Input("image",
                               tooltip="The photo(s) to extend; every image of the batch gets the same canvas."),
                io.Combo.Input("mode", options=list(MODES), default="pixels",
                               tooltip="pixels: add left/top/right/bottom px. target size: grow to target_width x "
                                       "target_height. target aspect: grow the short side to reach aspect. Both "
                                       "target modes place the original by anchor."),
                io.Int.Input("left", default=0, min=0, max=MAX_SIDE, step=8, tooltip=SIDE_TOOLTIP.format("left")),
                io.Int.Input("top", default=0, min=0, max=MAX_SIDE, step=8, tooltip=SIDE_TOOLTIP.format("top")),
                io.Int.Input("right", default=0, min=0, max=MAX_SIDE, step=8, tooltip=SIDE_TOOLTIP.format("right")),
                io.Int.Input("bottom", default=256, min=0, max=MAX_SIDE, step=8,
                             tooltip=SIDE_TOOLTIP.format("bottom")),
                io.Int.Input("target_width", default=768, min=8, max=MAX_SIDE, step=8,
                             tooltip="Mode 'target size': canvas width, a multiple of 8, at least the image's."),
                io.Int.Input("target_height", default=1024, min=8, max=MAX_SIDE, step=8,
                             tooltip="Mode 'target size': canvas height, a multiple of 8, at least the image's."),
                io.String.Input("aspect", default="2:3",
                                tooltip="Mode 'target aspect': width:height (2:3 portrait, 16:9 landscape) or one "
                                        "number, width / height. Only the side too short for it grows."),
                io.Combo.Input("anchor", options=list(ANCHORS), default="top",
                               tooltip="Target modes: where the original sits on the canvas. top: the photo stays "
                                       "at the top (centred across) and the canvas grows downwards."),
                io.Combo.Input("fill", options=list(FILLS), default="blur",
                               tooltip="What the new area starts as. edge: the border px repeated; mirror: the "
                                       "image reflected; blur: the edge colours heavily blurred (colour without "
                                       "structure); noise: blur plus seeded noise, for samplers at denoise < 1."),
                io.Int.Input("feather", default=32, min=0, max=MAX_SIDE,
                             tooltip="px over which the mask falls from 1 to 0 into the original, beyond the seam "
                                     "band, so the generated area blends in. 0: a hard edge. Not on sides that "
                                     "grow by less than 8 px (rounding only)."),
                io.Int.Input("seam_band", default=8, min=0, max=MAX_SIDE,
                             tooltip="px of the original next to the new area that the mask fully includes, so the "
                                     "seam itself is regenerated. Not on sides that grow by less than 8 px."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=False,
                             tooltip="Fill 'noise': the noise's seed (the same seed gives the same canvas)."),
            ],
            outputs=[
                io.Image.Output(display_name="image", tooltip="The extended canvas, original pixels unchanged."),
                io.Mask.Output(display_name="mask",
                               tooltip="1 on the new area and the seam band, feathered into the original: for "
                                       "inpainting / RePaint and for Paste Back Original."),
                io.Mask.Output(display_name="new_area", tooltip="Exactly the added pixels (hard 0/1)."),
            ],
        ), mode={"pixels": ("left", "top", "right", "bottom"),
                 "target size": ("target_width", "target_height", "anchor"),
                 "target aspect": ("aspect", "anchor")},
            fill={"noise": ("seed",)})

    RULES = (aspect_parses,)

    @classmethod
    def validate_inputs(cls, mode=None, aspect=None, anchor=None, fill=None):
        return report(cls, locals())

    @classmethod
    def execute(cls, image, mode, left, top, right, bottom, target_width, target_height, aspect, anchor, fill,
                feather, seam_band, seed) -> io.NodeOutput:
        require(cls, locals())  # the sizes against the image: below, where the image is known
        height, width = image.shape[1:3]
        try:
            if mode == "pixels":
                padding = pixels_padding(width, height, left, top, right, bottom)
            elif mode == "target size":
                padding = target_padding(width, height, target_width, target_height, anchor)
            else:
                padding = target_padding(width, height, *aspect_size(width, height, aspect), anchor)
            return io.NodeOutput(*extend_canvas(image, padding, fill, feather, seam_band, seed))
        except CanvasError as error:
            raise CanvasError(f"{EXTEND}: {error}") from None


class PasteBack(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MasaCtrlPasteBack",
            display_name=PASTE,
            category="MasaCtrl/photo completion",
            description="Put the generated pixels where the mask is white over the original: where the mask is 0 "
                        "the result is bit-identical to original, where it is 1 exactly generated, blended between.",
            inputs=[
                io.Image.Input("original", tooltip="The pixels to keep: Extend Canvas's image (or the photo placed "
                                                   "on a canvas of the same size)."),
                io.Image.Input("generated", tooltip="The decoded result (VAE Decode) on the same canvas size."),
                io.Mask.Input("mask", tooltip="Where generated is used (1), original kept (0), blended between: "
                                              "Extend Canvas's mask for this canvas."),
            ],
            outputs=[io.Image.Output(display_name="image",
                                     tooltip="original where the mask is 0 (bit-identical), generated where it is 1, "
                                             "mixed by the mask between: ready to save.")],
        )

    @classmethod
    def execute(cls, original, generated, mask) -> io.NodeOutput:
        require(cls, locals())
        try:
            return io.NodeOutput(paste_back(original, generated, mask))
        except CanvasError as error:
            raise CanvasError(f"{PASTE}: {error}") from None
