"""One MasaCtrl setting: which images are sources (BatchLayout), the schedule and the model's layer map.

The adapters ask it two questions per self-attention call, both answered from what the call is
told (the site, the sigma, the batch shape), so the same object is safe to share between runs,
between cond and uncond calls, and between two graphs. ComfyUI stacks the image batch once per
cond/uncond chunk in whatever order and number the sampler put in a call (`cond_or_uncond`), and may
run cond and uncond in separate calls: source rows are found per chunk, never with a blind chunk(2).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from .equations import mutual_self_attention
from .schedule import MutualAttentionSchedule, UNetLayerMap, step_index


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

    def group_size(self, batch_size: int) -> int | None:
        """S when a batch of `batch_size` images is runs of S images, each a source followed by its S-1
        targets (sources 0, S, 2S, ...); None for any other layout."""
        size = self.sources[1] if len(self.sources) > 1 else batch_size
        return size if batch_size % size == 0 and self.sources == tuple(range(0, batch_size, size)) else None

    def gather_index(self, batch_size: int, chunks: int, device) -> torch.Tensor:
        """Source index for every row of a UNet batch made of `chunks` stacked copies of the batch
        (cond and uncond, in whatever order and number the sampler put in this call)."""
        return _gather_index(self.sources, batch_size, chunks, str(device))


@lru_cache(maxsize=64)
def _gather_index(sources, batch_size, chunks, device):
    owner = BatchLayout(sources).source_of(batch_size)
    rows = [c * batch_size + s for c in range(chunks) for s in owner]
    return torch.tensor(rows, dtype=torch.long, device=device)


@dataclass(frozen=True)
class MutualSelfAttentionControl:
    schedule: MutualAttentionSchedule
    layout: BatchLayout
    layer_map: UNetLayerMap

    def __post_init__(self):
        self.layer_map.active_sites(self.schedule)  # reject an empty or out-of-range selection now

    @property
    def active_sites(self):
        return self.layer_map.active_sites(self.schedule)

    def step_is_active(self, sigma: float, sample_sigmas: torch.Tensor) -> bool:
        return self.schedule.step_is_active(step_index(sigma, sample_sigmas), sigma)

    def source_rows(self, rows: int, chunks: int, device) -> torch.Tensor:
        """The source row of every row of a UNet batch of `chunks` stacked copies of the image batch;
        raises, naming the fix, when the batch does not fit the layout."""
        if rows % chunks:
            raise ValueError(f"MasaCtrl: a UNet batch of {rows} rows cannot hold {chunks} equal chunks.")
        return self.layout.gather_index(rows // chunks, chunks, device)

    def attend(self, q, k, v, heads: int, chunks: int, upcast: bool = False):
        """Mutual self-attention over a UNet batch of `chunks` stacked copies of the image batch."""
        return mutual_self_attention(q, k, v, heads, self.source_rows(q.shape[0], chunks, q.device), upcast=upcast,
                                     group_size=self.layout.group_size(q.shape[0] // chunks))
