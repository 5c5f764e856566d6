"""Grid Sampling: a MODEL patch that samples canvases larger than the model's native size on blended tiles
(completion/comfyui_grid.py), so SD1.5 fills 512x1024 and larger canvases without repeating itself."""
from __future__ import annotations

from comfy_api.v0_0_2 import io

from ..completion.comfyui_grid import NODE, dit_layout, grid_sampling
from ..completion.tiles import BLENDS
from .input_checks import report, require, rule


@rule("tile_width", "tile_height", "overlap")
def tiles_fit_the_latent(tile_width, tile_height, overlap):
    for name, value in (("tile_width", tile_width), ("tile_height", tile_height), ("overlap", overlap)):
        if value % 8:
            return (f"{name} is {value}, not a multiple of 8 (one latent pixel is 8 image pixels): use "
                    f"{value // 8 * 8} or {value // 8 * 8 + 8}.")
    if overlap >= min(tile_width, tile_height):
        return (f"overlap {overlap} must be smaller than the tile ({tile_width}x{tile_height}); a quarter of the "
                "tile is a good start.")


class GridSampling(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MasaCtrlGridSampling",
            display_name=NODE,
            category="MasaCtrl/photo completion",
            description="Sample canvases larger than the model's native size: the diffusion model (a UNet, or "
                        "Flux, Chroma, SD3) runs on overlapping tiles of tile_width x tile_height, blended at every "
                        "step (MultiDiffusion / Mixture of Diffusers), so the canvas stays one coherent image. Works "
                        "with KSampler's noise mask (inpainting), ControlNet and MasaCtrl. Returns a copy of the "
                        "model.",
            inputs=[
                io.Model.Input("model", tooltip="A UNet model (SD1.x, SD2.x, SDXL) or Flux.1 (incl. Fill), Chroma, "
                                                "SD3.x. Not changed; a copy is returned."),
                io.Int.Input("tile_width", default=512, min=64, max=4096, step=8,
                             tooltip="Tile width in pixels, a multiple of 8 (16 on Flux, Chroma, SD3): the "
                                     "model's native size (SD1.5: 512, SDXL, Flux, SD3: 1024). A canvas no wider "
                                     "than this is not split across."),
                io.Int.Input("tile_height", default=512, min=64, max=4096, step=8,
                             tooltip="Tile height in pixels, a multiple of 8 (16 on Flux, Chroma, SD3) (SD1.5: "
                                     "512, SDXL, Flux, SD3: 1024)."),
                io.Int.Input("overlap", default=128, min=0, max=2048, step=8,
                             tooltip="Least overlap between neighbouring tiles, in pixels (a multiple of 8). "
                                     "More overlap: smoother blending, more tiles."),
                io.Combo.Input("blend", options=list(BLENDS), default="linear",
                               tooltip="How overlapping predictions mix. linear: each tile fades out over the "
                                       "overlap. gaussian: Mixture of Diffusers' Gaussian weights. uniform: "
                                       "MultiDiffusion's plain average."),
                io.Int.Input("tiles_per_batch", default=0, min=0, max=256,
                             tooltip="Tiles per UNet call. 0: as many as free memory allows (ComfyUI's own "
                                     "estimate); 1: one at a time, least memory."),
            ],
            outputs=[io.Model.Output(tooltip="A copy of the model that samples on blended tiles: connect it to "
                                             "the sampler (or RePaint (MasaCtrl)).")],
        )

    RULES = (tiles_fit_the_latent,)

    @classmethod
    def validate_inputs(cls, tile_width=None, tile_height=None, overlap=None, blend=None):
        return report(cls, locals())

    @classmethod
    def execute(cls, model, tile_width, tile_height, overlap, blend, tiles_per_batch) -> io.NodeOutput:
        require(cls, locals())
        dit = dit_layout(model.get_model_object("diffusion_model"))
        step = 8 * (dit.patch_size if dit is not None else 1)
        for name, value in (("tile_width", tile_width), ("tile_height", tile_height)):
            if value % step:
                raise ValueError(f"{NODE}: {name} is {value}, not a multiple of {step} ({dit.family} works on "
                                 f"patches of {step}x{step} px, and tiles start and end on them): use "
                                 f"{value // step * step} or {value // step * step + step}.")
        return io.NodeOutput(grid_sampling(model, tile_width, tile_height, overlap, blend, tiles_per_batch))
