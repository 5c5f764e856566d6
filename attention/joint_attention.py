"""MasaCtrl's mutual self-attention on a diffusion transformer's joint attention (Flux.1, Chroma, SD3.x,
Qwen-Image).

A DiT block has no separate self- and cross-attention: text and image tokens attend together, one softmax over
the sequence [text ; image] (Flux's double- and single-stream blocks, SD3's and Qwen-Image's joint blocks).
MasaCtrl's rule (a target reads its source's keys and values, cond and uncond alike) is applied to the image
tokens' keys and values; every query of the target, text and image, attends to the result:

    K'_t = [K_t^text ; R_delta K_s^img]      V'_t = [V_t^text ; V_s^img]
    out_t = softmax(Q_t K'_t^T / sqrt(d)) V'_t

Sources keep their own keys and values, so a source is computed exactly as unpatched.

text_tokens: "target" (default) keeps the target's own text keys/values, as above. The paper's rule taken
literally ("source": K'_t = [K_s^text ; R_delta K_s^img]) would hand the target the source's text as well, and a
DiT has no other route for the prompt into the image tokens: in every active block the target's prompt would be
muted (ConsistEdit, 2025, likewise controls the vision tokens only). "source" is offered for a target that
should follow the source's prompt in those blocks too, e.g. a real photo whose inversion prompt is the edit's.

positions (models with rotary position embeddings: Flux.1, Chroma, Qwen-Image): by the time keys reach the
attention call RoPE has rotated them to their coordinates, and RoPE makes q . k depend on the offset between
positions, so a target query at (h, w) favours the source keys at the same (h, w): the source is pasted at the
same coordinates ("ghosting", Personalize Anything, 2025) and the target cannot take another layout.
"beside" (default) moves the source's image keys one canvas width to the right, as if the source were a panel
next to the target (the side-by-side layout in which Flux keeps a subject consistent on its own): R_delta is
RoPE's rotation for delta = (0, 0, width), and since RoPE's rotations compose, R_delta R_p k = R_(p + delta) k
exactly. "same" keeps the coordinates: the target follows the source's layout too (an edit that keeps the
composition). SD3.x adds absolute position embeddings at the input, so its keys carry their positions in their
features and the setting does not apply there.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

TEXT_TOKENS = ("target", "source")
POSITIONS = ("beside", "same")


@dataclass(frozen=True)
class JointAttentionSettings:
    text_tokens: str = "target"
    positions: str = "beside"

    def __post_init__(self):
        if self.text_tokens not in TEXT_TOKENS:
            raise ValueError(f"MasaCtrl text_tokens '{self.text_tokens}': choose one of {list(TEXT_TOKENS)}.")
        if self.positions not in POSITIONS:
            raise ValueError(f"MasaCtrl positions '{self.positions}': choose one of {list(POSITIONS)}.")


def rotate_pairs(x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """RoPE's rotation (Flux's layout): x [..., tokens, d] as d/2 pairs, rotation [..., tokens or 1, d/2, 2, 2];
    computed in the rotation's dtype (float32), returned in x's."""
    pairs = x.to(rotation.dtype).reshape(*x.shape[:-1], -1, 1, 2)
    return (rotation[..., 0] * pairs[..., 0] + rotation[..., 1] * pairs[..., 1]).reshape(x.shape).to(x.dtype)


def mutual_keys_values(k: torch.Tensor, v: torch.Tensor, source_rows: torch.Tensor, image: slice,
                       settings: JointAttentionSettings, rotation: torch.Tensor | None = None, token_dim: int = 2,
                       heads: int = 1):
    """K'/V' of the module docstring, written into the targets' rows of k and v IN PLACE (sources' rows keep
    their own); returns (k, v). In place because a block builds k and v for its one attention call and drops
    them after it: a copy of the batch's keys and values would be most of MasaCtrl's memory.

    k, v: [batch, heads, tokens, d] (token_dim 2: Flux, Chroma) or [batch, tokens, heads*d] (token_dim 1: SD3,
    Qwen-Image; SD3 hands v over as [batch, tokens, heads, d]); source_rows[i]: the row whose image keys row i
    reads (itself for a source); image: the image tokens' span; rotation: R_delta for "beside"
    ([1, 1, 1, d/2, 2, 2], RoPE's pairs of each head's d); None leaves positions."""
    targets = (source_rows != torch.arange(len(source_rows), device=source_rows.device)).nonzero().flatten()
    if not len(targets):
        return k, v
    span = slice(None) if settings.text_tokens == "source" else image  # what a target takes from its source
    lead = (slice(None),) * (token_dim - 1)
    for t in (k, v):
        t[(targets, *lead, span)] = t[(source_rows[targets], *lead, span)]  # the right side is gathered first
    if rotation is not None and settings.positions == "beside":
        keys = k if token_dim == 2 else k.view(k.shape[0], k.shape[1], heads, -1)  # RoPE turns each head's pairs
        for row in targets.tolist():  # one row at a time: the rotation's temporaries stay one row's size
            at = (row, *lead, image)
            keys[at] = rotate_pairs(keys[at], rotation)
    return k, v


def token_spans(tokens: int, text: int, image: int, text_first: bool = True) -> slice:
    """The image tokens' span in one attention call of a block with `text` text and `image` image tokens:
    a joint call holds both (text first in Flux and SD3); SD3.5's extra image-only attention holds the image
    alone. Any other length means the model put tokens there that MasaCtrl does not know."""
    if tokens == image:
        return slice(0, image)
    if tokens == text + image:
        return slice(text, tokens) if text_first else slice(0, image)
    raise ValueError(f"MasaCtrl: an attention call of {tokens} tokens in a block of {text} text and {image} image "
                     "tokens; this model adds tokens MasaCtrl does not know how to treat.")


def masked_joint_attention(kernel, q, k, v, source_rows, image: slice, token_dim: int, out_dim: int,
                           source_fg: torch.Tensor, target_weight: torch.Tensor, layout, chunks: int):
    """Mask-guided MasaCtrl (the paper's MaskAuto / user masks) on joint attention: k, v are K'/V' (after
    mutual_keys_values). Each target's image queries read the source twice, once restricted to the source's
    foreground image tokens M_s and once to its background, the text tokens both times, blended by the
    target's own mask M_t:

        out_fg = softmax(q [K^text ; K_src^img[M_s]]^T / sqrt(d)) [V^text ; V_src^img[M_s]]
        out_bg = the same over the background tokens (1 - M_s)
        out    = out_fg * M_t + out_bg * (1 - M_t)

    Text queries and sources get plain mutual attention. The restriction is a gather of the kept keys (not an
    additive mask), so each pass runs on the kernel ComfyUI chose, at the cost of fewer keys.
    kernel(q, k, v, **overrides) -> output with tokens on `out_dim`; source_fg [batch, image tokens] bool and
    target_weight [batch, image tokens] per image of one chunk (read for targets); layout: the BatchLayout."""
    out = kernel(q, k, v)
    batch, tokens = q.shape[0] // chunks, q.shape[token_dim]
    owner = layout.source_of(batch)
    text = torch.cat([torch.arange(0, image.start), torch.arange(image.stop, tokens)]).to(q.device)
    for source in sorted(set(owner)):
        targets = [b for b in range(batch) if owner[b] == source and b != source]
        if not targets:
            continue
        rows = torch.tensor([c * batch + b for c in range(chunks) for b in targets], device=q.device)
        weight = target_weight[targets].repeat(chunks, 1).to(out)  # [rows, image tokens]
        weight = weight[:, :, None] if out_dim == 1 else weight[:, None, :, None]
        fg = source_fg[targets[0]].to(q.device)  # one source: one mask for all its targets
        q_rows, k_rows, v_rows = (t.index_select(0, rows) for t in (q, k, v))
        passes = []
        for part in (fg, ~fg):
            keep = torch.cat([text, image.start + part.nonzero().flatten()])
            if not len(keep):  # an image-only call and an empty part: nothing to read but the plain keys
                passes.append(out.index_select(0, rows))
                continue
            passes.append(kernel(q_rows, k_rows.index_select(token_dim, keep), v_rows.index_select(token_dim, keep),
                                 keys=keep, rows=rows))
        out_fg, out_bg = (p.narrow(out_dim, image.start, image.stop - image.start) for p in passes)
        blended = out.index_select(0, rows)
        blended.narrow(out_dim, image.start, image.stop - image.start).copy_(torch.lerp(out_bg, out_fg, weight))
        out = out.index_copy(0, rows, blended)
    return out
