"""Where the masks of mask-guided MasaCtrl come from, per self-attention layer: the user's MASK inputs,
or the subject words' cross-attention maps of the current evaluation (MaskAuto). Also the recording of
those maps per step, for the preview node."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .masks import CapturedMaps, MaskError, normalise, resize_nearest
from .words import Subject


def _check_user_mask(mask, name):
    if mask is None:
        return None
    if mask.dim() == 2:
        mask = mask[None]
    if mask.dim() != 3:
        raise MaskError(f"MasaCtrl Masks: {name} has shape {list(mask.shape)}; connect a MASK ([batch, height, width]).")
    empty = [i for i in range(mask.shape[0]) if not bool((mask[i] >= 0.5).any())]
    if empty:
        raise MaskError(f"MasaCtrl Masks: {name} {empty} is empty (no pixel >= 0.5); paint the subject white, "
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
            raise MaskError(f"MasaCtrl Masks: threshold {self.threshold} is out of range; use a value between 0 "
                            "and 1 (paper: 0.1). Maps are normalised to 0..1 per image before thresholding.")
        object.__setattr__(self, "source_mask", _check_user_mask(self.source_mask, "source_mask"))
        object.__setattr__(self, "target_mask", _check_user_mask(self.target_mask, "target_mask"))
        if self.subject is None and (self.source_mask is None or self.target_mask is None):
            side = "source_mask" if self.source_mask is None else "target_mask"
            raise MaskError(f"MasaCtrl Masks: no {side} and no subject words; connect {side} or a SUBJECT "
                            "(Subject Prompts node) so the mask can be made from the cross-attention maps.")
        if self.needs_maps and not self.capture_layers:
            raise MaskError("MasaCtrl Masks: no cross-attention layer matches map_resolution/map_layers, so no "
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
        raise MaskError(f"MasaCtrl Masks: {name} has {mask.shape[0]} masks but the batch has {count} {what}; "
                        f"give one mask for all, or exactly one per {what.split()[0]} image.")
    return (lambda i: 0) if mask.shape[0] == 1 else (lambda i: i)


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
