"""The paper's two equations (MasaCtrl, Cao et al., ICCV 2023), each next to its code, on torch's fused attention.

Mutual self-attention (MutualSelfAttentionControl.forward of TencentARC/MasaCtrl). In an active step and
layer every image (source included) queries its SOURCE image's keys and values, per head, separately for
the cond and the uncond half of classifier-free guidance:

    out_i = softmax(q_i k_src(i)^T / sqrt(d)) v_src(i)

Mask-guided mutual self-attention (MutualSelfAttentionControlMask / ...MaskAuto). A target query reads the
source twice, with the softmax restricted once to the source's foreground tokens M_s and once to its
background, and the two are blended by the target's own mask M_t:

    out_fg = softmax(q k_src^T / sqrt(d) + log M_s) v_src
    out_bg = softmax(q k_src^T / sqrt(d) + log (1 - M_s)) v_src
    out    = out_fg * M_t + out_bg * (1 - M_t)

"log 0" is the reference's additive mask: the dtype's most negative finite value, so even an empty
foreground gives the reference's numbers. The source rows k_src(i) are gathered per row, so one fused call
does a whole UNet batch, any number of groups and targets, without materialising the attention matrix.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, N, heads*d] -> [B, heads, N, d]."""
    b, n, _ = x.shape
    return x.view(b, n, heads, -1).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[B, heads, N, d] -> [B, N, heads*d]."""
    b, heads, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, heads * d)


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
    return merge_heads(out).to(dtype)


def masked_mutual_attention(q, k, v, heads: int, source_rows: torch.Tensor, source_fg: torch.Tensor,
                            target_weight: torch.Tensor, masked_rows: torch.Tensor, upcast: bool = False):
    """Mutual self-attention where the rows in `masked_rows` use the source's foreground/background split.

    q, k, v: [R, N, heads*d]; source_rows[i]: the row whose keys row i reads.
    source_fg: [M, N] bool, M_s of the source keys for each masked row;
    target_weight: [M, N] M_t, the blend weight of the fg result for each masked row's queries.
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
    out = merge_heads(F.scaled_dot_product_attention(qh, kh, vh, attn_mask=bias))  # bias broadcasts over heads, queries
    out_plain, out_fg, out_bg = out[:p], out[p:p + m], out[p + m:]
    weight = target_weight.to(out)[..., None]
    blended = out_fg * weight + out_bg * (1 - weight)
    result = out.new_empty(q.shape[0], *out.shape[1:])
    return result.index_copy(0, plain_rows, out_plain).index_copy(0, masked_rows, blended).to(dtype)
