"""One MasaCtrl setting: the schedule, the batch layout and the model's layer map together.

The adapters ask it two questions per self-attention call, both answered from what the call is
told (the site, the sigma, the batch shape), so the same object is safe to share between runs,
between cond and uncond calls, and between two graphs.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .layers import UNetLayerMap
from .mutual import BatchLayout, mutual_self_attention, step_index
from .schedule import MutualAttentionSchedule


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
        return mutual_self_attention(q, k, v, heads, self.source_rows(q.shape[0], chunks, q.device), upcast=upcast)
