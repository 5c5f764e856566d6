"""ComfyUI glue for grid sampling: a DIFFUSION_MODEL wrapper that runs the UNet on overlapping tiles of the
model's native size and blends their predictions (completion/tiles.py) at every step. The tiling sits at
ComfyUI's diffusion-model level, inside everything else: KSampler's noise mask, ControlNet (its residuals
are cropped per tile), inpainting models' extra channels and the MasaCtrl patch all see what they would see
untiled."""
from __future__ import annotations

import functools

import comfy.model_management
import comfy.patcher_extension
import torch

from ..attention.comfyui_patches import MASKS_KEY
from .tiles import Tile, blend_into, normalised_weights, plan_tiles

WRAPPER_KEY = "masactrl_grid_sampling"
NODE = "Grid Sampling (MasaCtrl)"


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


def _tiled_control(control, tiles: list[Tile], batch: int, height: int):
    """ControlNet / T2I-Adapter residuals, computed once on the whole latent, cropped to each tile at
    their own UNet level. New lists: the UNet pops from them."""
    if control is None:
        return None

    def crop(residual):
        if residual is None:
            return None
        residual = residual.expand(batch, *residual.shape[1:]) if residual.shape[0] == 1 else residual
        scale = max(1, round(height / residual.shape[-2]))
        return torch.cat([tile.crop(residual, scale) for tile in tiles])
    return {key: [crop(r) for r in value] if isinstance(value, list) else value for key, value in control.items()}


class GridDenoiser:
    """DIFFUSION_MODEL wrapper. Tiles of one call are batched (up to `tiles_per_batch`, or as many as free
    memory allows), repeating cond_or_uncond per tile so per-chunk patches such as MasaCtrl index each
    (tile, cond/uncond) chunk on its own."""

    def __init__(self, tile_height: int, tile_width: int, overlap: int, blend: str, tiles_per_batch: int,
                 memory_required):
        self.tile_height, self.tile_width, self.overlap, self.blend = tile_height, tile_width, overlap, blend
        self.tiles_per_batch, self.memory_required = tiles_per_batch, memory_required

    def batch_size(self, x: torch.Tensor, tile: Tile, count: int) -> int:
        if self.tiles_per_batch > 0:
            return min(self.tiles_per_batch, count)
        one = self.memory_required([x.shape[0], x.shape[1], tile.height, tile.width])
        free = comfy.model_management.get_free_memory(x.device)
        return max(1, min(count, int(free // max(1.5 * one, 1.0))))  # ComfyUI's own 1.5x margin

    def __call__(self, executor, x, timesteps=None, context=None, y=None, control=None, transformer_options={},
                 **kwargs):
        if transformer_options.get(MASKS_KEY) is not None:
            raise ValueError(f"{NODE}: Masks (MasaCtrl) takes its masks from cross-attention maps of the whole "
                             "image, which tiles cannot provide. Use MasaCtrl without Masks (MasaCtrl) on a grid, or "
                             "sample at the model's native size.")
        batch, height, width = x.shape[0], x.shape[-2], x.shape[-1]
        unet = executor.class_obj
        align = 2 ** (len(getattr(unet, "channel_mult", (1, 1, 1, 1))) - 1)  # the UNet's total downsampling
        tiles, weights = tiling(height, width, self.tile_height, self.tile_width, self.overlap, align, self.blend)
        per_call = self.batch_size(x, tiles[0], len(tiles))
        chunks = transformer_options.get("cond_or_uncond") or [0]
        out = None
        for first in range(0, len(tiles), per_call):
            comfy.model_management.throw_exception_if_processing_interrupted()
            group = tiles[first:first + per_call]
            options = {**transformer_options, "cond_or_uncond": list(chunks) * len(group),
                       "uuids": list(transformer_options.get("uuids") or []) * len(group)}
            args = [_tiled(a, group, batch, height, width) for a in (x, timesteps, context, y)]
            extra = {k: _tiled(v, group, batch, height, width) for k, v in kwargs.items()}
            result = executor(*args, _tiled_control(control, group, batch, height), options, **extra)
            if out is None:
                out = result.new_zeros(batch, result.shape[1], height, width)
            for tile, prediction, weight in zip(group, result.split(batch), weights[first:first + per_call]):
                blend_into(out, tile, prediction, weight)
        return out


def grid_sampling(model, tile_width: int, tile_height: int, overlap: int, blend: str, tiles_per_batch: int):
    """A clone of `model` that samples on tiles (sizes in pixels)."""
    patched = model.clone()
    denoiser = GridDenoiser(tile_height // 8, tile_width // 8, overlap // 8, blend, tiles_per_batch,
                            model.model.memory_required)
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY, denoiser)
    return patched
