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
foreground gives the reference's numbers.

How it runs at the cost of plain attention: where the batch is runs of equal size, each a source followed by
its targets (the default layout, cond and uncond alike), the queries of a run are concatenated along the
tokens and attend to the source's k/v in place: one call of exactly the plain call's cost, no copy of k/v,
on whichever attention function the caller passes (ComfyUI's own kernel) or torch's fused attention. A key
the reference masks adds exp(finfo.min - max) = 0 to its softmax, so the masked passes attend to the kept
(fg or bg) keys only. Other layouts gather the source rows k_src(i) per row into one fused call.
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


def sdpa_attention(q, k, v, heads: int, upcast: bool = False):
    """torch's fused attention on [batch, tokens, heads*dim] tensors (k/v may have another token count);
    with upcast, in float32 (models that need fp32 attention, e.g. SD2.x in fp16), returning q's dtype."""
    dtype = q.dtype
    if upcast:
        q, k, v = q.float(), k.float(), v.float()
    return merge_heads(F.scaled_dot_product_attention(split_heads(q, heads), split_heads(k, heads),
                                                      split_heads(v, heads))).to(dtype)


def source_runs(x: torch.Tensor, group_size: int):
    """[R, N, C] -> (the runs' sources [R/S, N, C], their targets [R/S, (S-1)*N, C]), both views, no copy."""
    runs = x.unflatten(0, (x.shape[0] // group_size, group_size))
    return runs[:, 0], runs[:, 1:].flatten(1, 2)


def mutual_self_attention(q, k, v, heads: int, source_rows: torch.Tensor, upcast: bool = False,
                          group_size: int | None = None, attention=None):
    """q, k, v: [batch, tokens, heads*dim] after the projections (heads not split).
    source_rows[i] is the row whose keys/values row i attends to (itself for a source).
    group_size: S when the rows are runs of S (a source, then its targets), as BatchLayout.group_size says;
    then every run is one query sequence against its source's k/v, read in place.
    attention(q, k, v, heads) -> [batch, tokens, heads*dim]: the kernel (default: sdpa_attention, upcast
    as asked). Returns [batch, tokens, heads*dim], before the output projection."""
    attend = attention or (lambda q_, k_, v_, h: sdpa_attention(q_, k_, v_, h, upcast=upcast))
    if group_size:
        rows, tokens, width = q.shape
        queries = q.reshape(rows // group_size, group_size * tokens, width)  # a view: runs are consecutive rows
        out = attend(queries, source_runs(k, group_size)[0], source_runs(v, group_size)[0], heads)
        return out.reshape(rows, tokens, -1)
    return attend(q, k.index_select(0, source_rows), v.index_select(0, source_rows), heads)


def masked_mutual_attention(q, k, v, heads: int, source_rows: torch.Tensor, source_fg: torch.Tensor,
                            target_weight: torch.Tensor, masked_rows: torch.Tensor, upcast: bool = False,
                            group_size: int | None = None, attention=None):
    """Mutual self-attention where the rows in `masked_rows` use the source's foreground/background split.

    q, k, v: [R, N, heads*d]; source_rows[i]: the row whose keys row i reads.
    source_fg: [M, N] bool, M_s of the source keys for each masked row;
    target_weight: [M, N] M_t, the blend weight of the fg result for each masked row's queries.
    Other rows get plain mutual self-attention.

    group_size/attention as for mutual_self_attention: where the rows are runs of a source and its targets,
    every target is masked and no source's mask is empty or full, the fg and bg passes read only the
    source's fg and bg keys (plus one pass of the sources on their own keys): the plain call's cost, on the
    given kernel. Otherwise one fused call with the reference's additive mask does all of it."""
    if group_size:
        out = _masked_by_key_subsets(q, k, v, heads, source_fg, target_weight, masked_rows, group_size,
                                     attention or (lambda q_, k_, v_, h: sdpa_attention(q_, k_, v_, h, upcast=upcast)))
        if out is not None:
            return out
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


def _masked_by_key_subsets(q, k, v, heads, source_fg, target_weight, masked_rows, group_size, attend):
    """The fast form of masked_mutual_attention, or None where it does not apply."""
    rows, tokens, width = q.shape
    runs, targets = rows // group_size, group_size - 1
    if not targets or masked_rows.tolist() != [r * group_size + t for r in range(runs) for t in range(1, group_size)]:
        return None
    fg = source_fg.detach().to("cpu", torch.bool).view(runs, targets, tokens)  # key subsets' sizes are data
    if not bool((fg == fg[:, :1]).all()):  # targets of one source given different source masks
        return None
    fg = fg[:, 0]
    kept = fg.sum(-1)
    if bool(((kept == 0) | (kept == tokens)).any()):  # empty or full: the reference's uniform softmax
        return None
    q_src, q_tgt = source_runs(q, group_size)
    weight = target_weight.reshape(runs, targets * tokens, 1).to(q.device)
    out = torch.empty(runs, group_size, tokens, width, dtype=q.dtype, device=q.device)
    out[:, 0] = attend(q_src, source_runs(k, group_size)[0], source_runs(v, group_size)[0], heads)
    flat_k, flat_v = k.reshape(rows * tokens, width), v.reshape(rows * tokens, width)  # views: rows are contiguous
    # cond and uncond of one source share its mask: one fg and one bg pass for all runs then
    shared = bool((fg == fg[:1]).all())
    for first, count in ([(0, runs)] if shared else [(r, 1) for r in range(runs)]):
        starts = torch.arange(first, first + count)[:, None] * (group_size * tokens)  # each run's source row
        passes = []
        for keys in (fg[first].nonzero(), (~fg[first]).nonzero()):
            index = (starts + keys.flatten()[None]).flatten().to(q.device)  # one gather of the kept keys
            passes.append(attend(q_tgt[first:first + count], flat_k.index_select(0, index).view(count, -1, width),
                                 flat_v.index_select(0, index).view(count, -1, width), heads))
        out_fg, out_bg = passes
        # out_fg * w + out_bg * (1 - w) in one pass, written in place; exact where w is 0 or 1
        torch.lerp(out_bg, out_fg, weight[first:first + count].to(out_fg),
                   out=out[first:first + count, 1:].flatten(1, 2))
    return out.flatten(0, 1)
