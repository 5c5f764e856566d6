"""Mask-guided mutual self-attention (MasaCtrl's MutualSelfAttentionControlMask and ...MaskAuto).

A target query attends to the source's keys twice: once with the softmax restricted to the source's
foreground tokens and once to its background tokens; the two results are blended by the target's own
mask: out = out_fg * m_t + out_bg * (1 - m_t). Restriction is the reference's additive mask (0 or the
dtype's most negative finite value), so even degenerate masks give the reference's numbers.

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

from .mutual import split_heads


class MaskError(ValueError):
    """A mask input that cannot be used; the message names the input and the fix."""


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


def masked_mutual_attention(q, k, v, heads: int, source_rows: torch.Tensor, source_fg: torch.Tensor,
                            target_weight: torch.Tensor, masked_rows: torch.Tensor, upcast: bool = False):
    """Mutual self-attention where the rows in `masked_rows` use the source's foreground/background split.

    q, k, v: [R, N, heads*d]; source_rows[i]: the row whose keys row i reads.
    source_fg: [M, N] bool, the foreground of the source keys for each masked row;
    target_weight: [M, N] blend weight of the fg result for each masked row's queries.
    Other rows get plain mutual self-attention. One fused attention call does all of it."""
    dtype = q.dtype
    if upcast:
        q, k, v = q.float(), k.float(), v.float()
    k, v = k.index_select(0, source_rows), v.index_select(0, source_rows)
    masked_rows = masked_rows.to(q.device)
    unmasked = torch.ones(q.shape[0], dtype=torch.bool, device=q.device)
    unmasked[masked_rows] = False
    plain_rows = unmasked.nonzero().flatten()  # sources (and targets without masks): one plain pass each
    p, m = len(plain_rows), len(masked_rows)
    fg = source_fg.to(q.device)
    zero, low = (torch.full((), value, dtype=q.dtype, device=q.device) for value in (0.0, torch.finfo(q.dtype).min))
    plain_bias = torch.zeros(p, k.shape[1], dtype=q.dtype, device=q.device)
    bias = torch.cat([plain_bias, torch.where(fg, zero, low), torch.where(fg, low, zero)])[:, None, None, :]
    rows = torch.cat([plain_rows, masked_rows, masked_rows])
    qh, kh, vh = (split_heads(t.index_select(0, rows), heads) for t in (q, k, v))
    out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=bias)  # bias broadcasts over heads and queries
    b, _, n, d = out.shape
    out = out.transpose(1, 2).reshape(b, n, heads * d)
    out_plain, out_fg, out_bg = out[:p], out[p:p + m], out[p + m:]
    weight = target_weight.to(out)[..., None]
    blended = out_fg * weight + out_bg * (1 - weight)
    result = torch.empty(q.shape[0], n, heads * d, dtype=out.dtype, device=out.device)
    return result.index_copy(0, plain_rows, out_plain).index_copy(0, masked_rows, blended).to(dtype)
