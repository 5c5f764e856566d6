"""When and where mutual self-attention is active, derived from what each call is told, never counted.

When: `MutualAttentionSchedule`, a value object checked once, up front, and `step_index`, the step a call
belongs to, read from its sigma (a UNet's sigmas or a flow model's, alike). Where: a layer map, MasaCtrl's
layer index of a call's site: `UNetLayerMap` for UNets, `DiTLayerMap` for diffusion transformers.

Steps count the steps of the schedule the sampler is running (step 0 is its first step), so the
paper's "start step 4" means the same thing for 10 or 50 steps and for denoise < 1. A sigma range
(what ComfyUI's percent inputs become) is the alternative for split samplers such as two
KSamplerAdvanced nodes, where the step position inside the full schedule is not known.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

PARTS = ("encoder", "middle", "decoder")  # a UNet's
DIT_PARTS = ("double", "single")  # a diffusion transformer's: double-stream (joint) and single-stream blocks
ALL_PARTS = PARTS + DIT_PARTS


class ScheduleError(ValueError):
    """An impossible MasaCtrl schedule; the message names the field and the fix."""


@dataclass(frozen=True)
class MutualAttentionSchedule:
    start_step: int = 4
    end_step: int = -1  # last active step, inclusive; -1 means through the final step
    step_interval: int = 1  # every n-th step from start_step
    start_layer: int = 10
    end_layer: int = -1  # last active layer, inclusive; -1 means through the model's last layer
    parts: tuple[str, ...] = ALL_PARTS  # each model's layer map uses the parts it has
    # (high, low) sigma bounds; when set they replace start_step/end_step.
    sigma_range: tuple[float, float] | None = None
    # an explicit layer list (e.g. Vital Layers' selection); when set it replaces start_layer/end_layer.
    layers: tuple[int, ...] | None = None

    def __post_init__(self):
        def fail(field, msg):
            raise ScheduleError(f"MasaCtrl schedule: {field} {msg}")

        if self.start_step < 0:
            fail("start_step", f"is {self.start_step}; it must be 0 or more.")
        if self.end_step != -1 and self.end_step < self.start_step:
            fail("end_step", f"({self.end_step}) is before start_step ({self.start_step}); "
                 "raise end_step or use -1 for 'through the final step'.")
        if self.step_interval < 1:
            fail("step_interval", f"is {self.step_interval}; use 1 for every step, 2 for every other step.")
        if self.start_layer < 0:
            fail("start_layer", f"is {self.start_layer}; it must be 0 or more.")
        if self.end_layer != -1 and self.end_layer < self.start_layer:
            fail("end_layer", f"({self.end_layer}) is before start_layer ({self.start_layer}); "
                 "raise end_layer or use -1 for 'through the last layer'.")
        unknown = [p for p in self.parts if p not in ALL_PARTS]
        if unknown:
            fail("parts", f"has unknown part(s) {unknown}; choose from {list(ALL_PARTS)}.")
        if not self.parts:
            fail("parts", "is empty; enable at least one part (UNets: encoder, middle, decoder; diffusion "
                 "transformers: double, single).")
        if self.layers is not None and (not self.layers or min(self.layers) < 0):
            fail("layers", f"{list(self.layers)} must list at least one layer, each 0 or more.")
        if self.sigma_range is not None:
            high, low = self.sigma_range
            if low > high:
                fail("start_percent/end_percent", "are reversed: the start must come before the end "
                     "(a smaller percent).")

    def step_is_active(self, step: int, sigma: float) -> bool:
        if self.sigma_range is not None:
            high, low = self.sigma_range
            # ComfyUI evaluates sigmas in float32: allow the same small relative slack.
            in_range = low * (1 - 1e-5) <= sigma <= high * (1 + 1e-5)
            return in_range and step % self.step_interval == 0
        in_range = step >= self.start_step and (self.end_step == -1 or step <= self.end_step)
        return in_range and (step - self.start_step) % self.step_interval == 0

    def layer_is_active(self, layer: int, part: str) -> bool:
        if self.layers is not None:
            return part in self.parts and layer in self.layers
        return (part in self.parts and layer >= self.start_layer
                and (self.end_layer == -1 or layer <= self.end_layer))


def parse_layers(text: str) -> tuple[int, ...] | None:
    """'0, 1, 17-18' -> (0, 1, 17, 18); an empty text -> None (no explicit list)."""
    items = [item for item in text.replace(" ", "").split(",") if item]
    if not items:
        return None
    layers = set()
    for item in items:
        first, dash, last = item.partition("-")
        if not first.isdigit() or (dash and not last.isdigit()) or (dash and int(last) < int(first)):
            raise ScheduleError(f"MasaCtrl layers '{text}': '{item}' is not a layer or a range; write layer numbers "
                                "and ranges separated by commas, e.g. '0,1,17-18'.")
        layers.update(range(int(first), int(last or first) + 1))
    return tuple(sorted(layers))


# -- when: the step of a call ------------------------------------------------------------------------

def step_index(sigma: float, sample_sigmas: torch.Tensor, rtol: float = 1e-4) -> int:
    """The step of the running schedule that a model call at `sigma` belongs to.

    Step i spans sigmas (s[i+1], s[i]]: a call at exactly s[i] is step i, and the extra
    evaluations of heun, dpm_2 and the *_sde samplers at sigmas between s[i] and s[i+1] stay in
    step i. Derived from the sigma alone, so it holds for any sampler, however often it calls the
    model, and for truncated schedules (denoise < 1, a KSamplerAdvanced end step)."""
    schedule = sample_sigmas.detach().float().cpu()
    above = int((schedule > sigma * (1 + rtol)).sum())
    last_step = max(len(schedule) - 2, 0)
    if above < len(schedule) and abs(float(schedule[above]) - sigma) <= rtol * max(sigma, 1e-8):
        return min(above, last_step)
    return min(max(above - 1, 0), last_step)


# -- where: the layer of a call ------------------------------------------------------------------------
# MasaCtrl numbers a model's attention layers in execution order. UNet (SD1.x/SD2.x: 16 layers, SDXL: 70): the
# self-attention layers of the encoder blocks, the middle block, the decoder blocks, and inside a block its
# transformer blocks in order; a site is (part, block id, transformer index) with ComfyUI's block ids
# (input_blocks / middle_block / output_blocks numbering); the diffusers adapter maps its own modules onto the
# same numbering. Diffusion transformer: its blocks, double-stream ones first, then single-stream ones (Flux.1:
# double 0-18 = layers 0-18, single 0-37 = layers 19-56); a site is ComfyUI's ("double_block" | "single_block", i).

PART_OF_BLOCK = {"input": "encoder", "middle": "middle", "output": "decoder",
                 "double_block": "double", "single_block": "single"}


@dataclass(frozen=True)
class LayerMap:
    """The sites of a model's attention layers in MasaCtrl's order; subclasses say what a site looks like."""
    sites: tuple[tuple, ...]

    kind = "attention"  # how messages name a layer

    def __len__(self):
        return len(self.sites)

    def index_of(self, site) -> int:
        return self._index[tuple(site)]

    @cached_property
    def _index(self) -> dict:
        return {site: i for i, site in enumerate(self.sites)}

    @staticmethod
    def part_of(site) -> str:
        return PART_OF_BLOCK[site[0]]

    def active_sites(self, schedule: MutualAttentionSchedule) -> list[tuple]:
        """Sites the schedule patches; an empty selection is an error, not a silent no-op."""
        n = len(self.sites)
        if schedule.layers is not None and max(schedule.layers) >= n:
            raise ScheduleError(f"MasaCtrl schedule: layers lists {max(schedule.layers)}, past this model's last "
                                f"{self.kind} layer ({n - 1}); list layers below {n} ({self.describe()}).")
        if schedule.layers is None and schedule.start_layer >= n:
            raise ScheduleError(f"MasaCtrl schedule: start_layer ({schedule.start_layer}) is past this "
                                f"model's last {self.kind} layer ({n - 1}); use a value below {n}.")
        if schedule.layers is None and schedule.end_layer >= n:
            raise ScheduleError(f"MasaCtrl schedule: end_layer ({schedule.end_layer}) is past this "
                                f"model's last {self.kind} layer ({n - 1}); use -1 or a value below {n}.")
        active = [s for i, s in enumerate(self.sites) if schedule.layer_is_active(i, self.part_of(s))]
        if not active:
            chosen = (list(schedule.layers) if schedule.layers is not None
                      else f"{schedule.start_layer}..{schedule.end_layer}")
            raise ScheduleError(
                f"MasaCtrl schedule: layers {chosen} contain no layer of "
                f"the selected parts {list(schedule.parts)}; this model's layers by part: {self.describe()}.")
        return active

    def describe(self) -> str:
        spans = {}
        for i, site in enumerate(self.sites):
            spans.setdefault(self.part_of(site), []).append(i)
        return ", ".join(f"{part} {ix[0]}-{ix[-1]}" for part, ix in spans.items())


@dataclass(frozen=True)
class UNetLayerMap(LayerMap):
    sites: tuple[tuple[str, int, int], ...]  # ("input"|"middle"|"output", block id, transformer index)

    kind = "self-attention"

    @classmethod
    def from_depths(cls, input_depths: dict[int, int], middle_depth: int, output_depths: dict[int, int]):
        """Build from the transformer depth of every block that has attention, keyed by block id."""
        sites = [("input", b, t) for b in sorted(input_depths) for t in range(input_depths[b])]
        sites += [("middle", 0, t) for t in range(middle_depth)]
        sites += [("output", b, t) for b in sorted(output_depths) for t in range(output_depths[b])]
        return cls(tuple(sites))

    @property
    def auto_start_layer(self) -> int:
        """The published start layer: the paper's 10 on SD1.x/SD2.x (16 layers: the decoder's last six), the
        official SDXL script's 44 (70 layers); on other layouts the decoder's first layer."""
        published = {16: 10, 70: 44}
        if len(self) in published:
            return published[len(self)]
        return next(i for i, site in enumerate(self.sites) if site[0] == "output")


@dataclass(frozen=True)
class DiTLayerMap(LayerMap):
    sites: tuple[tuple[str, int], ...]  # ("double_block"|"single_block", block index)
    family: str = "Flux"  # for messages and the help page's per-family defaults

    kind = "transformer block"

    @classmethod
    def from_depths(cls, double: int, single: int, family: str):
        return cls(tuple([("double_block", i) for i in range(double)] + [("single_block", i) for i in range(single)]),
                   family)

    @property
    def auto_start_layer(self) -> int:
        """Flux-family (double then single blocks): the first single-stream block, where text and image share
        one stream and, as in MasaCtrl's UNet decoder, later layers refine appearance rather than layout.
        SD3.x and Qwen-Image (joint blocks only): the second half of their blocks. Both leave the early blocks,
        which set the layout, to the target's own prompt (the help page has the reasons)."""
        singles = [i for i, site in enumerate(self.sites) if site[0] == "single_block"]
        return singles[0] if singles else len(self) // 2


# The published layouts (ComfyUI block numbering), used by tests and documentation; the adapters
# read the real model's structure instead, so fine-tunes with other depths work too.
SD1_LAYERS = UNetLayerMap.from_depths({1: 1, 2: 1, 4: 1, 5: 1, 7: 1, 8: 1}, 1,
                                      {b: 1 for b in range(3, 12)})
SDXL_LAYERS = UNetLayerMap.from_depths({4: 2, 5: 2, 7: 10, 8: 10}, 10,
                                       {0: 10, 1: 10, 2: 10, 3: 2, 4: 2, 5: 2})
