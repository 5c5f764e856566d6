"""Alignment scores for a MasaCtrl batch, from embeddings: how close each target stays to its source
(image-image cosine: CLIP, and DINO where available) and how well it follows its prompt (text-image cosine:
CLIP), as in MasaCtrl's and DreamBooth's evaluations. Pure torch: the embedding models live in the nodes."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

METRICS = ("image_alignment", "text_alignment", "dino_alignment")


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity of two [N, D] embedding batches, in float32."""
    return torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=-1)


@dataclass(frozen=True)
class ImageScores:
    index: int  # in the image batch
    source: int  # the batch index of its source (itself for a source)
    prompt: str | None
    image_alignment: float | None  # CLIP image-image cosine to the source; None for a source
    text_alignment: float | None  # CLIP text-image cosine to its prompt; None without a prompt
    dino_alignment: float | None  # DINO image-image cosine to the source; None for a source or without DINO

    @property
    def is_source(self) -> bool:
        return self.source == self.index


@dataclass(frozen=True)
class AlignmentScores:
    images: tuple[ImageScores, ...]

    @property
    def targets(self) -> list[ImageScores]:
        return [s for s in self.images if not s.is_source]

    def mean(self, metric: str) -> float | None:
        """The metric's mean over the targets; None where no target has it."""
        values = [getattr(s, metric) for s in self.targets if getattr(s, metric) is not None]
        return sum(values) / len(values) if values else None

    def summary(self) -> dict:
        return {metric: self.mean(metric) for metric in METRICS}

    def as_dict(self) -> dict:
        return {"mean_over_targets": self.summary(), "images": [asdict(s) for s in self.images]}


def alignment_scores(owner: list[int], prompts: list[str | None], clip_images: torch.Tensor,
                     clip_texts: torch.Tensor | None, dino_images: torch.Tensor | None = None) -> AlignmentScores:
    """owner[i]: the source of image i (BatchLayout.source_of). clip_texts holds one row per image with a prompt,
    in batch order; clip_images and dino_images one row per image."""
    index = torch.tensor(owner)
    image = cosine(clip_images, clip_images[index]).tolist()
    dino = cosine(dino_images, dino_images[index]).tolist() if dino_images is not None else [None] * len(owner)
    prompted = [i for i, p in enumerate(prompts) if p is not None]
    text = [None] * len(owner)
    if prompted:
        for i, value in zip(prompted, cosine(clip_images[prompted], clip_texts).tolist()):
            text[i] = value
    return AlignmentScores(tuple(
        ImageScores(i, s, prompts[i], None if s == i else image[i], text[i], None if s == i else dino[i])
        for i, s in enumerate(owner)))


def prompts_per_image(text: str, owner: list[int], node: str) -> list[str | None]:
    """The prompt of each image of the batch (None for a source whose prompt was not given)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    targets = [i for i, s in enumerate(owner) if s != i]
    if len(lines) == len(owner):
        return lines
    if len(lines) in (1, len(targets)):
        given = iter(lines * len(targets) if len(lines) == 1 else lines)
        return [next(given) if s != i else None for i, s in enumerate(owner)]
    have = f"has {len(lines)} lines" if lines else "is empty"
    raise ValueError(f"{node}: prompts {have}, but the batch has {len(owner)} images of which {len(targets)} are "
                     f"targets: write {len(owner)} lines (one per image, sources included), {len(targets)} (one "
                     "per target) or 1 (the same prompt for every target).")
