"""Grid sampling core, pure torch: cover a latent larger than the model's native size with overlapping
tiles of that size, and blend the per-tile predictions of one denoising step back into one prediction.

Averaging every tile's prediction where tiles overlap is MultiDiffusion (Bar-Tal et al., ICML 2023);
weighting each tile by a Gaussian centred on it is Mixture of Diffusers (Jimenez, 2023). Because the
blend happens at every step, the tiles agree with each other as the image forms, instead of being
stitched once at the end.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

BLENDS = ("linear", "gaussian", "uniform")
# Mixture of Diffusers' Gaussian: variance 0.01 of the squared tile size, i.e. sigma = 0.1 tile.
GAUSSIAN_STD = 0.1


@dataclass(frozen=True)
class Tile:
    """A window of the latent, in latent pixels."""
    top: int
    left: int
    height: int
    width: int

    def crop(self, tensor: torch.Tensor, scale: int = 1) -> torch.Tensor:
        """This tile's part of `tensor` ([..., H, W]), which may be a feature map `scale` times smaller
        than the latent (a ControlNet residual of a deeper UNet level)."""
        if scale == 1:
            return tensor[..., self.top:self.top + self.height, self.left:self.left + self.width]
        height, width = -(-self.height // scale), -(-self.width // scale)  # a UNet rounds odd sizes up
        top = min(self.top // scale, tensor.shape[-2] - height)
        left = min(self.left // scale, tensor.shape[-1] - width)
        return tensor[..., top:top + height, left:left + width]


def axis_starts(length: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Where tiles start along one axis: as few tiles as give every neighbouring pair at least `overlap`
    pixels in common, spread evenly, starts on multiples of `align` (so a tile's feature maps line up
    with the whole latent's at every UNet level) except the last, which ends flush with the edge."""
    if tile >= length:
        return [0]
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap {overlap} must be at least 0 and smaller than the tile size {tile}")
    span = length - tile
    fewest = math.ceil((length - overlap) / (tile - overlap))
    while True:
        count = fewest
        # At most one tile more for the sake of alignment; at align 1 the loop always ends by then.
        while count <= fewest + 1:
            starts = sorted({align * round(i * span / ((count - 1) * align)) for i in range(count - 1)} | {span})
            if all(b - a <= tile - overlap for a, b in zip(starts, starts[1:])):
                return starts
            count += 1  # alignment pulled two tiles too far apart: spread one more
        align //= 2  # aligned starts would need more tiles: a finer grid


def plan_tiles(height: int, width: int, tile_height: int, tile_width: int, overlap: int,
               align: int = 1) -> list[Tile]:
    """Tiles covering a height x width latent, row by row. A tile never exceeds the latent: along an axis
    shorter than the tile, the tile shrinks to the latent, so one tile over a small latent is no tiling."""
    rows = axis_starts(height, tile_height, overlap, align)
    cols = axis_starts(width, tile_width, overlap, align)
    return [Tile(top, left, min(tile_height, height), min(tile_width, width)) for top in rows for left in cols]


def _ramp(size: int, overlap: int, start_shared: bool, end_shared: bool) -> torch.Tensor:
    """1 inside, falling linearly towards an edge the tile shares with a neighbour; never 0, so a pixel
    that only this tile covers keeps a weight."""
    position = torch.arange(size, dtype=torch.float64)
    ramp = torch.ones(size, dtype=torch.float64)
    if overlap > 0:
        if start_shared:
            ramp = torch.minimum(ramp, (position + 1) / (overlap + 1))
        if end_shared:
            ramp = torch.minimum(ramp, (size - position) / (overlap + 1))
    return ramp


def _gaussian(size: int) -> torch.Tensor:
    position = torch.arange(size, dtype=torch.float64)
    return torch.exp(-0.5 * ((position - (size - 1) / 2) / (GAUSSIAN_STD * size)) ** 2)


def tile_weight(tile: Tile, height: int, width: int, overlap: int, blend: str) -> torch.Tensor:
    """The [h, w] weight of one tile's prediction before normalisation over all tiles."""
    if blend == "uniform":
        return torch.ones(tile.height, tile.width, dtype=torch.float64)
    if blend == "gaussian":
        return _gaussian(tile.height)[:, None] * _gaussian(tile.width)[None, :]
    if blend == "linear":
        rows = _ramp(tile.height, overlap, tile.top > 0, tile.top + tile.height < height)
        cols = _ramp(tile.width, overlap, tile.left > 0, tile.left + tile.width < width)
        return rows[:, None] * cols[None, :]
    raise ValueError(f"unknown blend {blend!r}: use one of {', '.join(BLENDS)}")


def normalised_weights(tiles: list[Tile], height: int, width: int, overlap: int, blend: str) -> list[torch.Tensor]:
    """Per-tile weights that sum to 1 at every latent pixel. A pixel only one tile covers gets exactly
    1.0 (w / w), so one tile over the whole latent reproduces the untiled prediction bit for bit."""
    weights = [tile_weight(tile, height, width, overlap, blend) for tile in tiles]
    total = torch.zeros(height, width, dtype=torch.float64)
    for tile, weight in zip(tiles, weights):
        tile.crop(total).add_(weight)
    return [weight / tile.crop(total) for tile, weight in zip(tiles, weights)]


def blend_into(out: torch.Tensor, tile: Tile, prediction: torch.Tensor, weight: torch.Tensor):
    """Add one tile's weighted prediction into `out` ([B, C, H, W]) in place."""
    tile.crop(out).add_(prediction * weight.to(prediction))
