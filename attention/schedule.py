"""When and where mutual self-attention is active: a value object checked once, up front.

Steps count the steps of the schedule the sampler is running (step 0 is its first step), so the
paper's "start step 4" means the same thing for 10 or 50 steps and for denoise < 1. A sigma range
(what ComfyUI's percent inputs become) is the alternative for split samplers such as two
KSamplerAdvanced nodes, where the step position inside the full schedule is not known.
"""
from __future__ import annotations

from dataclasses import dataclass

PARTS = ("encoder", "middle", "decoder")


class ScheduleError(ValueError):
    """An impossible MasaCtrl schedule; the message names the field and the fix."""


@dataclass(frozen=True)
class MutualAttentionSchedule:
    start_step: int = 4
    end_step: int = -1  # last active step, inclusive; -1 means through the final step
    step_interval: int = 1  # every n-th step from start_step
    start_layer: int = 10
    end_layer: int = -1  # last active layer, inclusive; -1 means through the model's last layer
    parts: tuple[str, ...] = PARTS
    # (high, low) sigma bounds; when set they replace start_step/end_step.
    sigma_range: tuple[float, float] | None = None

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
        unknown = [p for p in self.parts if p not in PARTS]
        if unknown:
            fail("parts", f"has unknown part(s) {unknown}; choose from {list(PARTS)}.")
        if not self.parts:
            fail("parts", "is empty; enable at least one of encoder, middle, decoder.")
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
        return (part in self.parts and layer >= self.start_layer
                and (self.end_layer == -1 or layer <= self.end_layer))
