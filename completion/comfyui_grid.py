"""ComfyUI glue for grid sampling: a wrapper that runs the diffusion model on overlapping tiles of the model's
native size and blends their predictions (completion/tiles.py) at every step. The tiling sits inside everything
else: KSampler's noise mask, ControlNet (its residuals, computed once on the whole latent, are cropped per tile),
inpainting models' extra channels and the MasaCtrl patch all see what they would see untiled.

- UNets (SD1.x, SD2.x, SDXL): a DIFFUSION_MODEL wrapper; tiles start on multiples of the UNet's downsampling, and
  ControlNet residuals are cropped at their own level.
- Diffusion transformers (Flux.1 incl. Fill, Chroma, SD3.x): an APPLY_MODEL wrapper (MMDiT calls no
  DIFFUSION_MODEL wrapper; the concat channels of Flux Fill arrive as c_concat, cropped like the latent); tiles
  start on the patch grid, ControlNet residuals over image tokens are cropped in token space. Flux gives each
  tile's tokens their positions in the whole image through its `post_input` patch hook; Chroma (no such hook) and
  SD3 (absolute position embeddings cropped from the centre of a fixed grid) see each tile as an image of its own.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import comfy.model_management
import comfy.patcher_extension
import torch

from ..attention.comfyui_dit_patches import dit_layer_map_of, tiled_call_options
from ..attention.comfyui_patches import MASKS_KEY, UnsupportedModelError
from .tiles import Tile, blend_into, normalised_weights, plan_tiles

WRAPPER_KEY = "masactrl_grid_sampling"
NODE = "Grid Sampling (MasaCtrl)"
TILED_FAMILIES = ("Flux", "Chroma", "SD3")  # of dit_layer_map_of's families; Qwen-Image (5D latents) is not tiled
SUPPORTED = "UNet models (SD1.x, SD2.x, SDXL) and the diffusion transformers Flux.1 (incl. Fill), Chroma and SD3.x"


@dataclass(frozen=True)
class DiTLayout:
    """What tiling needs of a diffusion transformer."""
    family: str
    patch_size: int  # latent pixels per token side: tiles start on this grid
    position_ids: bool  # RoPE ids through Flux's post_input hook: tiles keep their tokens' whole-image positions


def dit_layout(diffusion_model) -> DiTLayout | None:
    """None for a UNet; the layout of a supported diffusion transformer (the family as MasaCtrl's DiT patch
    detects it); any other model is refused, naming it."""
    if hasattr(diffusion_model, "input_blocks"):
        return None
    try:
        family = dit_layer_map_of(diffusion_model).family
    except UnsupportedModelError:
        family = None
    if family not in TILED_FAMILIES:
        raise ValueError(f"{NODE}: grid sampling supports {SUPPORTED}; this MODEL's diffusion model is a "
                         f"{type(diffusion_model).__name__} (Qwen-Image and video models have 5D latents and "
                         "positions of their own), which it does not tile. Load one of those models, or sample "
                         "without the grid.")
    return DiTLayout(family, diffusion_model.patch_size, family == "Flux")


@functools.lru_cache(maxsize=32)
def tiling(height: int, width: int, tile_height: int, tile_width: int, overlap: int, align: int, blend: str):
    tiles = plan_tiles(height, width, tile_height, tile_width, overlap, align)
    return tiles, normalised_weights(tiles, height, width, min(overlap, tile_height, tile_width), blend)


def _tiled(value, tiles: list[Tile], batch: int, height: int, width: int):
    """One UNet argument for a batch of tiles: latent-sized maps cropped per tile, per-image tensors
    (timesteps, text context, SDXL's y) repeated per tile, anything else as it is."""
    if not torch.is_tensor(value) or value.ndim == 0 or value.shape[0] != batch:
        return value
    if value.ndim == 4 and tuple(value.shape[-2:]) == (height, width):
        return torch.cat([tile.crop(value) for tile in tiles])
    return value.repeat(len(tiles), *[1] * (value.ndim - 1))


def _token_tile(tile: Tile, patch_size: int) -> Tile:
    """`tile` (on the patch grid) in image tokens."""
    return Tile(tile.top // patch_size, tile.left // patch_size, -(-tile.height // patch_size),
                -(-tile.width // patch_size))


def _tiled_control(control, tiles: list[Tile], batch: int, height: int, dit: DiTLayout | None = None):
    """ControlNet / T2I-Adapter residuals, computed once on the whole latent, cropped to each tile: a UNet's at their
    own level; a diffusion transformer's ([B, tokens, hidden] over the whole image's token grid) in token space,
    so each tile gets exactly its tokens' untiled residuals. New lists: the UNet pops from them."""
    if control is None:
        return None
    grid = None if dit is None else -(-height // dit.patch_size)

    def crop(residual):
        if residual is None:
            return None
        residual = residual.expand(batch, *residual.shape[1:]) if residual.shape[0] == 1 else residual
        if grid is None or residual.ndim != 3:
            scale = max(1, round(height / residual.shape[-2]))
            return torch.cat([tile.crop(residual, scale) for tile in tiles])
        rows, tokens, hidden = residual.shape
        if tokens % grid:
            raise ValueError(f"{NODE}: a ControlNet residual has {tokens} image tokens, which do not fill the "
                             f"latent's {grid} token rows; use a ControlNet made for this {dit.family} model.")
        maps = residual.reshape(rows, grid, tokens // grid, hidden).movedim(-1, 1)  # [B, hidden, rows, columns]
        return torch.cat([_token_tile(tile, dit.patch_size).crop(maps).movedim(1, -1).reshape(rows, -1, hidden)
                          for tile in tiles])
    return {key: [crop(r) for r in value] if isinstance(value, (list, tuple)) else value
            for key, value in control.items()}


class TilePositions:
    """Flux's post_input patch for one call on a batch of tiles: every row's image tokens get their tile's (row,
    column) offset in tokens added to their RoPE ids, so a token has the ids it has in the whole image, in every
    tile that holds it. Tokens after the tile's own (Kontext reference latents) keep theirs."""

    def __init__(self, offsets: torch.Tensor, tokens: int):
        self.offsets, self.tokens = offsets, tokens  # [rows, 2] (row, column); the tile's image tokens

    def __call__(self, args: dict) -> dict:
        ids = args["img_ids"].clone()
        ids[:, :self.tokens, 1:] += self.offsets[:, None, :].to(ids)
        return {**args, "img_ids": ids}


def _check_patch_grid(tiles: list[Tile], height: int, width: int, dit: DiTLayout):
    patch = dit.patch_size
    for tile in tiles:
        for start, size, length, axis in ((tile.top, tile.height, height, "height"),
                                          (tile.left, tile.width, width, "width")):
            if size < length and (start % patch or size % patch):
                raise ValueError(
                    f"{NODE}: {dit.family} works on patches of {patch}x{patch} latent pixels ({8 * patch} px), and a "
                    f"tile must start and end on that grid, but the canvas {axis} of {length * 8} px tiled by "
                    f"{size * 8} px puts a tile at {start * 8} px. Make the canvas width and height multiples of "
                    f"{8 * patch} px, and keep the tile at least {8 * patch} px larger than the overlap.")


class GridDenoiser:
    """The tiling wrapper: DIFFUSION_MODEL on UNets, APPLY_MODEL on diffusion transformers (`dit`): both are called
    (x, per-image or latent-sized inputs x3, control, transformer_options, **kwargs) and return a latent-sized
    result. Tiles of one call are batched (up to `tiles_per_batch`, or as many as free memory allows), repeating
    cond_or_uncond per tile so per-chunk patches such as MasaCtrl index each (tile, cond/uncond) chunk on its own."""

    def __init__(self, tile_height: int, tile_width: int, overlap: int, blend: str, tiles_per_batch: int,
                 memory_required, dit: DiTLayout | None = None):
        self.tile_height, self.tile_width, self.overlap, self.blend = tile_height, tile_width, overlap, blend
        self.tiles_per_batch, self.memory_required, self.dit = tiles_per_batch, memory_required, dit

    def batch_size(self, x: torch.Tensor, tile: Tile, count: int) -> int:
        if self.tiles_per_batch > 0:
            return min(self.tiles_per_batch, count)
        one = self.memory_required([x.shape[0], x.shape[1], tile.height, tile.width])
        free = comfy.model_management.get_free_memory(x.device)
        return max(1, min(count, int(free // max(1.5 * one, 1.0))))  # ComfyUI's own 1.5x margin

    def align(self, executor) -> int:
        if self.dit is not None:
            return self.dit.patch_size
        unet = executor.class_obj
        return 2 ** (len(getattr(unet, "channel_mult", (1, 1, 1, 1))) - 1)  # the UNet's total downsampling

    def tile_options(self, options: dict, group: list[Tile], batch: int) -> dict:
        """transformer_options of one call on `group`: per-row lists and tensors repeated per tile; on diffusion
        transformers MasaCtrl's call re-derived and (Flux) the tiles' position offsets."""
        chunks = list(options.get("cond_or_uncond") or [0]) * len(group)
        tiled = {**options, "cond_or_uncond": chunks, "uuids": list(options.get("uuids") or []) * len(group)}
        sigmas = options.get("sigmas")
        if torch.is_tensor(sigmas) and sigmas.ndim == 1 and sigmas.shape[0] == batch:
            tiled["sigmas"] = sigmas.repeat(len(group))  # one per row of the tiled batch, as per-row patches expect
        if self.dit is None:
            return tiled
        tiled = tiled_call_options(tiled, batch * len(group), chunks, (group[0].height, group[0].width))
        if self.dit.position_ids:
            patch = self.dit.patch_size
            offsets = torch.tensor([[tile.top // patch, tile.left // patch] for tile in group for _ in range(batch)])
            patches = options.get("patches", {})
            tokens = _token_tile(group[0], patch)
            positions = TilePositions(offsets, tokens.height * tokens.width)
            tiled["patches"] = {**patches, "post_input": [positions, *patches.get("post_input", [])]}
        return tiled

    def __call__(self, executor, *args, **kwargs):
        # positional, as both levels pass them: their names differ (UNet: timesteps, context, y; APPLY_MODEL: t,
        # c_concat, c_crossattn) and APPLY_MODEL's keyword arguments may hold a `y` of their own
        x, *inputs, control, transformer_options = args
        transformer_options = transformer_options or {}
        if transformer_options.get(MASKS_KEY) is not None:
            raise ValueError(f"{NODE}: Masks (MasaCtrl) takes its masks from cross-attention maps of the whole "
                             "image, which tiles cannot provide. Use MasaCtrl without Masks (MasaCtrl) on a grid, or "
                             "sample at the model's native size.")
        batch, height, width = x.shape[0], x.shape[-2], x.shape[-1]
        tiles, weights = tiling(height, width, self.tile_height, self.tile_width, self.overlap, self.align(executor),
                                self.blend)
        if self.dit is not None:
            _check_patch_grid(tiles, height, width, self.dit)
        per_call = self.batch_size(x, tiles[0], len(tiles))
        out = None
        for first in range(0, len(tiles), per_call):
            comfy.model_management.throw_exception_if_processing_interrupted()
            group = tiles[first:first + per_call]
            args = [_tiled(a, group, batch, height, width) for a in (x, *inputs)]
            extra = {k: _tiled(v, group, batch, height, width) for k, v in kwargs.items()}
            result = executor(*args, _tiled_control(control, group, batch, height, self.dit),
                              self.tile_options(transformer_options, group, batch), **extra)
            if out is None:
                out = result.new_zeros(batch, result.shape[1], height, width)
            for tile, prediction, weight in zip(group, result.split(batch), weights[first:first + per_call]):
                blend_into(out, tile, prediction, weight)
        return out


def grid_sampling(model, tile_width: int, tile_height: int, overlap: int, blend: str, tiles_per_batch: int):
    """A clone of `model` that samples on tiles (sizes in pixels)."""
    dit = dit_layout(model.get_model_object("diffusion_model"))
    patched = model.clone()
    denoiser = GridDenoiser(tile_height // 8, tile_width // 8, overlap // 8, blend, tiles_per_batch,
                            model.model.memory_required, dit)
    level = comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL if dit is None else \
        comfy.patcher_extension.WrappersMP.APPLY_MODEL
    patched.add_wrapper_with_key(level, WRAPPER_KEY, denoiser)
    return patched
