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

    def attend(self, q, k, v, heads: int, chunks: int, upcast: bool = False):
        """Mutual self-attention over a UNet batch of `chunks` stacked copies of the image batch."""
        if q.shape[0] % chunks:
            raise ValueError(f"MasaCtrl: a UNet batch of {q.shape[0]} rows cannot hold {chunks} equal chunks.")
        rows = self.layout.gather_index(q.shape[0] // chunks, chunks, q.device)
        return mutual_self_attention(q, k, v, heads, rows, upcast=upcast)
