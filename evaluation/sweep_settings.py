"""A schedule sweep: one MasaCtrl schedule, varied in one parameter over a list of values, every value checked
against the run (its step count, the model's layers) before anything is sampled."""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..attention.schedule import PARTS, MutualAttentionSchedule, ScheduleError, UNetLayerMap

OFF = "off"  # a run without MasaCtrl: the plain-synthesis end of the trade-off
STEP_PARAMETERS = ("end_step", "start_step", "step_interval")
PARAMETERS = ("end_step", "step_interval", "start_step", "start_layer", "layers")
EXAMPLES = {"end_step": "off, 5, 8, 12, 16, -1", "step_interval": "1, 2, 3, 4", "start_step": "0, 2, 4, 8",
            "start_layer": "0, 5, 10, 13", "layers": "encoder, decoder, encoder+decoder, 10-15"}


class SweepError(ValueError):
    """A sweep that cannot run; the message names the value and the fix."""


@dataclass(frozen=True)
class SweepSetting:
    label: str  # e.g. "end_step=12", or "off"
    schedule: MutualAttentionSchedule | None  # None: MasaCtrl off


def _integer(parameter: str, token: str, low: int, high: int, why: str) -> int:
    try:
        value = int(token)
    except ValueError:
        raise SweepError(f"{parameter}: '{token}' is not a whole number; {why}.") from None
    if not low <= value <= high:
        raise SweepError(f"{parameter}: {value} is out of range; {why}.")
    return value


def _layers(token: str, base: MutualAttentionSchedule, layers: int) -> MutualAttentionSchedule:
    """'encoder', 'decoder+middle', 'all': every layer of those parts; 'a-b': layers a..b of every part."""
    why = (f"write part names joined by + ({', '.join(PARTS)}), 'all', or a layer range such as 10-15 "
           f"(this model has layers 0-{layers - 1})")
    token = token.replace(" ", "")  # "encoder + decoder" as "encoder+decoder"
    if token == "all" or all(part in PARTS for part in token.split("+")):
        parts = PARTS if token == "all" else tuple(p for p in PARTS if p in token.split("+"))
        return replace(base, start_layer=0, end_layer=-1, parts=parts)
    first, dash, last = token.partition("-")
    if not dash:
        raise SweepError(f"layers: '{token}' is neither parts nor a range; {why}.")
    start = _integer("layers", first, 0, layers - 1, why)
    return replace(base, start_layer=start, end_layer=_integer("layers", last, start, layers - 1, why), parts=PARTS)


def _schedule(parameter: str, token: str, base: MutualAttentionSchedule, steps: int, layers: int):
    last = steps - 1
    if parameter == "end_step":
        value = _integer(parameter, token, -1, last, f"use -1 (the final step) or a step from {base.start_step} "
                                                     f"(start_step) to {last} (the last of {steps} steps)")
        return replace(base, end_step=value)
    if parameter == "start_step":
        return replace(base, start_step=_integer(parameter, token, 0, last, f"use a step from 0 to {last}"))
    if parameter == "step_interval":
        return replace(base, step_interval=_integer(parameter, token, 1, steps, f"use 1 to {steps}"))
    if parameter == "start_layer":
        return replace(base, start_layer=_integer(parameter, token, 0, layers - 1,
                                                  f"this model's layers are 0 to {layers - 1}"))
    return _layers(token, base, layers)


def sweep_settings(base: MutualAttentionSchedule, parameter: str, values: str, steps: int,
                   layer_map: UNetLayerMap) -> list[SweepSetting]:
    """One setting per comma-separated value ('off' runs without MasaCtrl), each a complete, valid schedule."""
    if parameter not in PARAMETERS:
        raise SweepError(f"parameter '{parameter}' is not sweepable; choose one of {', '.join(PARAMETERS)}.")
    if parameter in STEP_PARAMETERS and base.sigma_range is not None:
        raise SweepError(f"{parameter} counts steps, but the MasaCtrl node schedules by percent; set its "
                         "schedule_by to steps.")
    tokens = [t.strip().lower() for t in values.split(",") if t.strip()]
    if not tokens:
        raise SweepError(f"values is empty; list the {parameter} values to try, separated by commas, e.g. "
                         f"'{EXAMPLES[parameter]}'.")
    repeated = sorted({t for t in tokens if tokens.count(t) > 1})
    if repeated:
        raise SweepError(f"values lists {', '.join(repeated)} more than once; each value runs once.")
    settings = []
    for token in tokens:
        if token == OFF:
            settings.append(SweepSetting(OFF, None))
            continue
        try:
            schedule = _schedule(parameter, token, base, steps, len(layer_map))
            layer_map.active_sites(schedule)
        except ScheduleError as error:  # e.g. an end_step before start_step, or parts outside the layer range
            raise SweepError(f"{parameter}={token}: {error}") from None
        settings.append(SweepSetting(f"{parameter}={token}", schedule))
    return settings
