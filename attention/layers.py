"""MasaCtrl's layer index, derived from where a call sits in the UNet, never from call counts.

MasaCtrl numbers the UNet's self-attention layers in execution order: encoder blocks, the middle
block, decoder blocks, and inside a block its transformer blocks in order (SD1.x/SD2.x: 16 layers,
SDXL: 70). A site is (part, block id, transformer index inside that block) with ComfyUI's block
ids (input_blocks / middle_block / output_blocks numbering); the diffusers adapter maps its own
modules onto the same numbering.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from .schedule import MutualAttentionSchedule, ScheduleError

PART_OF_BLOCK = {"input": "encoder", "middle": "middle", "output": "decoder"}


@dataclass(frozen=True)
class UNetLayerMap:
    sites: tuple[tuple[str, int, int], ...]  # ("input"|"middle"|"output", block id, transformer index)

    @classmethod
    def from_depths(cls, input_depths: dict[int, int], middle_depth: int, output_depths: dict[int, int]):
        """Build from the transformer depth of every block that has attention, keyed by block id."""
        sites = [("input", b, t) for b in sorted(input_depths) for t in range(input_depths[b])]
        sites += [("middle", 0, t) for t in range(middle_depth)]
        sites += [("output", b, t) for b in sorted(output_depths) for t in range(output_depths[b])]
        return cls(tuple(sites))

    def __len__(self):
        return len(self.sites)

    def index_of(self, site) -> int:
        return self._index[tuple(site)]

    @cached_property
    def _index(self) -> dict:
        return {site: i for i, site in enumerate(self.sites)}

    def active_sites(self, schedule: MutualAttentionSchedule) -> list[tuple[str, int, int]]:
        """Sites the schedule patches; an empty selection is an error, not a silent no-op."""
        n = len(self.sites)
        if schedule.start_layer >= n:
            raise ScheduleError(f"MasaCtrl schedule: start_layer ({schedule.start_layer}) is past this "
                                f"model's last self-attention layer ({n - 1}); use a value below {n}.")
        if schedule.end_layer >= n:
            raise ScheduleError(f"MasaCtrl schedule: end_layer ({schedule.end_layer}) is past this "
                                f"model's last self-attention layer ({n - 1}); use -1 or a value below {n}.")
        active = [s for i, s in enumerate(self.sites)
                  if schedule.layer_is_active(i, PART_OF_BLOCK[s[0]])]
        if not active:
            raise ScheduleError(
                f"MasaCtrl schedule: layers {schedule.start_layer}..{schedule.end_layer} contain no layer of "
                f"the selected parts {list(schedule.parts)}; this model's layers by part: {self.describe()}.")
        return active

    def describe(self) -> str:
        spans = {}
        for i, (block, _, _) in enumerate(self.sites):
            spans.setdefault(PART_OF_BLOCK[block], []).append(i)
        return ", ".join(f"{part} {ix[0]}-{ix[-1]}" for part, ix in spans.items())


# The published layouts (ComfyUI block numbering), used by tests and documentation; the adapters
# read the real model's structure instead, so fine-tunes with other depths work too.
SD1_LAYERS = UNetLayerMap.from_depths({1: 1, 2: 1, 4: 1, 5: 1, 7: 1, 8: 1}, 1,
                                      {b: 1 for b in range(3, 12)})
SDXL_LAYERS = UNetLayerMap.from_depths({4: 2, 5: 2, 7: 10, 8: 10}, 10,
                                       {0: 10, 1: 10, 2: 10, 3: 2, 4: 2, 5: 2})
