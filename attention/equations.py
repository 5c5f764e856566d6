"""Mutual self-attention (MasaCtrl, Cao et al., ICCV 2023), on torch's fused attention.

In an active step and layer every image of a group (source included) queries the SOURCE image's
keys and values: out_i = softmax(q_i k_src^T / sqrt(d)) v_src, per head, separately for the cond
and the uncond half of classifier-free guidance. This is MutualSelfAttentionControl.forward of
TencentARC/MasaCtrl; here the source's k/v are gathered per item, so one fused
scaled_dot_product_attention call does it without materialising the attention matrix, for any
number of groups and targets.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F


class BatchLayoutError(ValueError):
    """The batch does not fit the source/target layout; the message names the fix."""


@dataclass(frozen=True)
class BatchLayout:
    """Which images of the latent batch are sources; every other image follows the nearest source
    before it. Default: image 0 is the source, all others are its targets."""
    sources: tuple[int, ...] = (0,)

    def __post_init__(self):
        if not self.sources or self.sources[0] != 0 or list(self.sources) != sorted(set(self.sources)):
            raise BatchLayoutError(
                f"MasaCtrl source_indices {list(self.sources)}: list batch indices in increasing order, "
                "starting with 0 (every image needs a source at or before it), e.g. '0' or '0,3'.")

    @classmethod
    def parse(cls, text: str) -> "BatchLayout":
        try:
            sources = tuple(int(part) for part in text.replace(" ", "").split(",") if part != "")
        except ValueError:
            raise BatchLayoutError(f"MasaCtrl source_indices '{text}': write batch indices separated by "
                                   "commas, e.g. '0' or '0,3'.") from None
        return cls(sources)

    def source_of(self, batch_size: int) -> list[int]:
        """The source index of every item of one chunk of `batch_size` images."""
        if self.sources[-1] >= batch_size:
            raise BatchLayoutError(
                f"MasaCtrl source_indices {list(self.sources)} name image {self.sources[-1]}, but the latent "
                f"batch has {batch_size} image(s): lower the indices or raise the batch size.")
        owner = [max(s for s in self.sources if s <= i) for i in range(batch_size)]
        if all(owner[i] == i for i in range(batch_size)):
            raise BatchLayoutError(
                f"MasaCtrl needs at least one target image, but the latent batch has {batch_size} image(s) "
                f"and all are sources ({list(self.sources)}): raise the batch size (e.g. EmptyLatentImage "
                "batch_size 2) so that a target follows the source.")
        return owner

    def gather_index(self, batch_size: int, chunks: int, device) -> torch.Tensor:
        """Source index for every row of a UNet batch made of `chunks` stacked copies of the batch
        (cond and uncond, in whatever order and number the sampler put in this call)."""
        return _gather_index(self.sources, batch_size, chunks, str(device))


@lru_cache(maxsize=64)
def _gather_index(sources, batch_size, chunks, device):
    owner = BatchLayout(sources).source_of(batch_size)
    rows = [c * batch_size + s for c in range(chunks) for s in owner]
    return torch.tensor(rows, dtype=torch.long, device=device)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, _ = x.shape
    return x.view(b, n, heads, -1).transpose(1, 2)


def mutual_self_attention(q, k, v, heads: int, source_rows: torch.Tensor, upcast: bool = False):
    """q, k, v: [batch, tokens, heads*dim] after the projections (heads not split).
    source_rows[i] is the row whose keys/values row i attends to (itself for a source).
    Returns [batch, tokens, heads*dim], before the output projection."""
    k = k.index_select(0, source_rows)
    v = v.index_select(0, source_rows)
    dtype = q.dtype
    if upcast:  # models that need fp32 attention (e.g. SD2.x in fp16) keep it here too
        q, k, v = q.float(), k.float(), v.float()
    out = F.scaled_dot_product_attention(split_heads(q, heads), split_heads(k, heads), split_heads(v, heads))
    b, _, n, d = out.shape
    return out.transpose(1, 2).reshape(b, n, heads * d).to(dtype)


def step_index(sigma: float, sample_sigmas: torch.Tensor, rtol: float = 1e-4) -> int:
    """The step of the running schedule that a model call at `sigma` belongs to.

    Step i spans sigmas (s[i+1], s[i]]: a call at exactly s[i] is step i, and the extra
    evaluations of heun, dpm_2 and the *_sde samplers at sigmas between s[i] and s[i+1] stay in
    step i. Derived from the sigma alone, so it holds for any sampler, however often it calls the
    model, and for truncated schedules (denoise < 1, a KSamplerAdvanced end step)."""
    schedule = sample_sigmas.detach().float().cpu()
    above = int((schedule > sigma * (1 + rtol)).sum())
    last_step = max(len(schedule) - 2, 0)
    if above < len(schedule) and abs(float(schedule[above]) - sigma) <= rtol * max(sigma, 1e-8):
        return min(above, last_step)
    return min(max(above - 1, 0), last_step)
