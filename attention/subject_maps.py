"""Subject maps: the cross-attention of the subject's words, captured while sampling, for MaskAuto's masks.

Automatic masks come from cross-attention maps captured during the same denoising evaluation: the
probabilities of the subject's tokens, averaged over heads and over the captured layers seen so far,
summed over the tokens, min-max normalised per image and thresholded. The reference hard-codes square
16x16 maps; here every map keeps its call's own (h, w) and masks are resized (nearest, as the
reference) to each self-attention layer's (h, w), so any aspect ratio works.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .equations import split_heads
from .schedule import PART_OF_BLOCK


def resize_nearest(masks: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """[B, H, W] -> [B, h*w], nearest neighbour like the reference's F.interpolate default."""
    return F.interpolate(masks[:, None].float(), size=(h, w), mode="nearest").flatten(1)


def normalise(maps: torch.Tensor) -> torch.Tensor:
    """Min-max per image over the last dimension; a constant map becomes all zeros (the reference
    would divide by zero)."""
    low = maps.amin(-1, keepdim=True)
    span = maps.amax(-1, keepdim=True) - low
    return torch.where(span > 0, (maps - low) / span.clamp_min(torch.finfo(maps.dtype).tiny), torch.zeros_like(maps))


def cross_attention_probs(q, k, heads: int, token_selection: torch.Tensor) -> torch.Tensor:
    """Head-averaged cross-attention probabilities summed over selected tokens.
    q: [B, N, heads*d], k: [B, T, heads*d], token_selection: [B, T, W] (1 where token t belongs to word w).
    Returns [B, N, W] in float32."""
    q, k = split_heads(q.float(), heads), split_heads(k.float(), heads)
    probs = (q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5).softmax(-1).mean(1)  # [B, N, T]
    return probs @ token_selection.to(probs)


@dataclass
class CapturedMaps:
    """The cross-attention maps of one denoising evaluation (one sampler call of the model, cond and
    uncond together), for the cond branch. Keyed by layer number, so a self-attention layer can use
    exactly the maps of the layers before it, as the reference does, whether cond and uncond run in one
    UNet call or in two."""
    layers: dict = field(default_factory=dict)  # layer -> ([B, h*w, W] float32, h, w)

    def add(self, layer: int, maps: torch.Tensor, h: int, w: int):
        self.layers[layer] = (maps, h, w)

    def before(self, layer: int):
        return [self.layers[i] for i in sorted(self.layers) if i < layer]

    def aggregate(self, layer: int | None = None):
        """Mean over the captured layers before `layer` (all when None): ([B, h*w, W], h, w) or None."""
        found = self.before(layer) if layer is not None else [self.layers[i] for i in sorted(self.layers)]
        if not found:
            return None
        _, h, w = found[-1]
        return torch.stack([m for m, _, _ in found]).mean(0), h, w


def record_maps(maps: CapturedMaps, layer: int, q_cond, k_cond, heads: int, selection: torch.Tensor,
                size: tuple[int, int]):
    """Add the cond branch's subject-word probabilities of one cross-attention layer to `maps`."""
    maps.add(layer, cross_attention_probs(q_cond, k_cond, heads, selection), *size)


def sites_at_level(site_levels: list[tuple[tuple, int]], level: int, parts) -> dict:
    """layer -> site of the cross-attention layers at resolution `level` (0: the latent's size, 1: half, ...)
    in `parts`; site_levels lists (site, level) in MasaCtrl's layer order."""
    return {i: site for i, (site, at) in enumerate(site_levels) if at == level and PART_OF_BLOCK[site[0]] in parts}


@dataclass
class MapRecorder:
    """The subject maps of the latest sampling run, one entry per step (the full-step aggregate over the
    captured layers, which is what the decoder layers use), for the preview node."""
    steps: dict = field(default_factory=dict)  # step -> ([B, W, h, w] per-word maps, words per image)

    def reset(self):
        self.steps = {}

    def record(self, step: int, maps: CapturedMaps, words: list[tuple[str, ...]]):
        found = maps.aggregate()
        if found is None:
            return
        agg, h, w = found  # [B, h*w, W]
        self.steps[step] = (agg.transpose(1, 2).reshape(agg.shape[0], agg.shape[2], h, w).cpu(), words)

    def last_step(self) -> int | None:
        return max(self.steps) if self.steps else None


def heat(maps: torch.Tensor) -> torch.Tensor:
    """[N, H, W] in 0..1 -> [N, H, W, 3], a blue-to-red colour ramp that reads at a glance."""
    x = maps.clamp(0, 1)[..., None]
    centres = torch.tensor([0.75, 0.5, 0.25])
    return (1.5 - (4 * x - 4 * centres).abs()).clamp(0, 1)


def preview(maps: torch.Tensor, words: list[tuple[str, ...]], height: int, width: int, threshold: float,
            images: torch.Tensor | None = None):
    """What the Mask Preview shows of one recorded step: maps [B, W, h, w] of the words of each image ->
    (heat maps [N, height, width, 3] over `images` where given, masks [N, height, width], picked (image, word))
    with one entry per image and word. Each map is min-max normalised on its own; masks use the threshold."""
    picked = [(b, w) for b in range(maps.shape[0]) for w in range(len(words[b]))]
    per_word = torch.stack([maps[b, w] for b, w in picked])
    flat = normalise(per_word.flatten(1)).view_as(per_word)[:, None]
    smooth = F.interpolate(flat, size=(height, width), mode="bilinear", align_corners=False)[:, 0]
    masks = (F.interpolate(flat, size=(height, width), mode="nearest")[:, 0] >= threshold).float()
    shown = heat(smooth)
    if images is not None:
        base = F.interpolate(images.movedim(-1, 1), size=(height, width), mode="bilinear").movedim(1, -1)
        shown = 0.5 * base[[b % base.shape[0] for b, _ in picked]].cpu() + 0.5 * shown
    return shown, masks, picked
