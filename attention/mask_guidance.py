"""Mask-guided MasaCtrl in one self-attention call: where the masks come from, per layer (the user's MASK
inputs, or the subject words' cross-attention maps of the current evaluation: MaskAuto), and the masked
call itself, shared by the ComfyUI and diffusers glue, which only read the call's facts from their framework."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .control import MutualSelfAttentionControl
from .equations import masked_mutual_attention
from .subject_maps import CapturedMaps, normalise, resize_nearest
from .subject_words import Subject


class MaskError(ValueError):
    """A mask input that cannot be used; the message names the input and the fix."""


def _check_user_mask(mask, name):
    if mask is None:
        return None
    if mask.dim() == 2:
        mask = mask[None]
    if mask.dim() != 3:
        raise MaskError(f"Masks (MasaCtrl): {name} has shape {list(mask.shape)}; connect a MASK ([batch, height, "
                        "width]).")
    empty = [i for i in range(mask.shape[0]) if not bool((mask[i] >= 0.5).any())]
    if empty:
        raise MaskError(f"Masks (MasaCtrl): {name} {empty} is empty (no pixel >= 0.5); paint the subject white, "
                        "or leave the input unconnected to use the subject words instead.")
    return mask.detach().float().cpu()


@dataclass(frozen=True, eq=False)
class MaskGuidance:
    threshold: float = 0.1  # the reference's `thres` for automatic masks
    subject: Subject | None = None
    source_mask: torch.Tensor | None = None  # [1 or number of sources, H, W]; binarised at 0.5
    target_mask: torch.Tensor | None = None  # [1 or number of targets, H, W]; blend weight
    capture_layers: frozenset = frozenset()  # layer numbers whose cross-attention maps are captured

    def __post_init__(self):
        if not 0.0 < self.threshold < 1.0:
            raise MaskError(f"Masks (MasaCtrl): threshold {self.threshold} is out of range; use a value between 0 "
                            "and 1 (paper: 0.1). Maps are normalised to 0..1 per image before thresholding.")
        object.__setattr__(self, "source_mask", _check_user_mask(self.source_mask, "source_mask"))
        object.__setattr__(self, "target_mask", _check_user_mask(self.target_mask, "target_mask"))
        if self.subject is None and (self.source_mask is None or self.target_mask is None):
            side = "source_mask" if self.source_mask is None else "target_mask"
            raise MaskError(f"Masks (MasaCtrl): no {side} and no subject words; connect {side} or a SUBJECT "
                            "(Subject Prompts node) so the mask can be made from the cross-attention maps.")
        if self.needs_maps and not self.capture_layers:
            raise MaskError("Masks (MasaCtrl): no cross-attention layer matches map_resolution/map_layers, so no "
                            "maps can be captured; choose another resolution or 'all' layers.")

    @property
    def needs_maps(self) -> bool:
        return self.source_mask is None or self.target_mask is None

    # -- token selection for the capture ---------------------------------------------------------
    def words_of(self, owner: list[int]) -> list[tuple[str, ...]]:
        return [(self.subject.source if owner[b] == b else self.subject.target).words for b in range(len(owner))]

    def token_selection(self, owner: list[int], context_length: int) -> torch.Tensor:
        """[B, T, W]: 1 where token t of image b's prompt belongs to its w-th subject word."""
        words = max(len(self.subject.source.words), len(self.subject.target.words))
        selection = torch.zeros(len(owner), context_length, words)
        for b, src in enumerate(owner):
            prompt = self.subject.source if src == b else self.subject.target
            for w in range(len(prompt.words)):
                selection[b, prompt.positions_in_context(context_length, w), w] = 1.0
        return selection

    # -- masks for one self-attention layer -------------------------------------------------------
    def masks_for_layer(self, layer: int, owner: list[int], h: int, w: int, maps: CapturedMaps | None):
        """(source_fg [B, h*w] bool, target_weight [B, h*w]) per image (used for target images), or None
        where automatic masks are needed but no map was captured before this layer (the reference then
        runs plain mutual self-attention)."""
        sources = sorted(set(owner))
        targets = [b for b in range(len(owner)) if owner[b] != b]
        auto = None
        if self.needs_maps:
            found = maps.aggregate(layer) if maps is not None else None
            if found is None:
                return None
            agg, hc, wc = found
            combined = normalise(agg.sum(-1))  # [B, hc*wc]: words summed, then min-max per image
            auto = resize_nearest(combined.view(-1, hc, wc), h, w) >= self.threshold
        if self.source_mask is not None:
            user = resize_nearest(self.source_mask, h, w) >= 0.5
            pick = _batch_picker(self.source_mask, len(sources), "source_mask", "source image(s)")
            source_fg = torch.stack([user[pick(sources.index(owner[b]))] for b in range(len(owner))])
        else:
            source_fg = auto[owner]
        if self.target_mask is not None:
            user = resize_nearest(self.target_mask, h, w)
            pick = _batch_picker(self.target_mask, len(targets), "target_mask", "target image(s)")
            target_weight = torch.stack([user[pick(targets.index(b))] if b in targets else user[0]
                                         for b in range(len(owner))])
        else:
            target_weight = auto.float()
        return source_fg, target_weight


def _batch_picker(mask, count, name, what):
    if mask.shape[0] not in (1, count):
        raise MaskError(f"Masks (MasaCtrl): {name} has {mask.shape[0]} masks but the batch has {count} {what}; "
                        f"give one mask for all, or exactly one per {what.split()[0]} image.")
    return (lambda i: 0) if mask.shape[0] == 1 else (lambda i: i)


def masked_attention(control: MutualSelfAttentionControl, guidance: MaskGuidance, q, k, v, heads: int, chunks: int,
                     layer: int, size: tuple[int, int], maps: CapturedMaps | None, upcast: bool = False,
                     attention=None):
    """Mask-guided mutual self-attention over a batch of `chunks` stacked copies of the image batch, at a layer
    of `size` (h, w), on `attention` (see equations.mutual_self_attention); None where automatic masks have no
    map yet (the reference then runs the plain kind)."""
    batch = q.shape[0] // chunks
    owner = control.layout.source_of(batch)
    masks = guidance.masks_for_layer(layer, owner, *size, maps)
    if masks is None:
        return None
    source_fg, target_weight = masks
    targets = [b for b in range(batch) if owner[b] != b]
    rows = control.source_rows(q.shape[0], chunks, q.device)
    masked_rows = torch.tensor([c * batch + b for c in range(chunks) for b in targets])  # CPU: read as a list
    return masked_mutual_attention(q, k, v, heads, rows, source_fg[targets].repeat(chunks, 1),
                                   target_weight[targets].repeat(chunks, 1), masked_rows, upcast=upcast,
                                   group_size=control.layout.group_size(batch), attention=attention)
