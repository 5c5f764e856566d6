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


def _integer(parameter: str, token: str, low: int, high: int | None, why: str) -> int:
    try:
        value = int(token)
    except ValueError:
        raise SweepError(f"{parameter}: '{token}' is not a whole number; {why}.") from None
    if value < low or (high is not None and value > high):
        raise SweepError(f"{parameter}: {value} is out of range; {why}.")
    return value


def _layers(token: str, layers: int | None) -> tuple[tuple[str, ...], int, int]:
    """'encoder', 'decoder+middle', 'all': (those parts, every layer); 'a-b': (every part, layers a..b).
    layers: the model's layer count (None: not known yet, no upper bound)."""
    have = f" (this model has layers 0-{layers - 1})" if layers is not None else ""
    why = f"write part names joined by + ({', '.join(PARTS)}), 'all', or a layer range such as 10-15{have}"
    token = token.replace(" ", "")  # "encoder + decoder" as "encoder+decoder"
    if token == "all" or all(part in PARTS for part in token.split("+")):
        return (PARTS if token == "all" else tuple(p for p in PARTS if p in token.split("+"))), 0, -1
    first, dash, last = token.partition("-")
    if not dash:
        raise SweepError(f"layers: '{token}' is neither parts nor a range; {why}.")
    top = None if layers is None else layers - 1
    start, end = _integer("layers", first, 0, top, why), _integer("layers", last, 0, top, why)
    if end < start:
        raise SweepError(f"layers: '{token}' runs backwards; write the smaller layer first: {end}-{start}.")
    return PARTS, start, end


def _value(parameter: str, token: str, steps: int, layers: int | None, start_step: int | None):
    """One value of `parameter`, checked against the run's steps and, where known, the model's layer count
    and MasaCtrl's start_step."""
    last = steps - 1
    if parameter == "end_step":
        since = f"{start_step} (start_step)" if start_step is not None else "start_step"
        return _integer(parameter, token, -1, last, f"use -1 (the final step) or a step from {since} to {last} "
                                                    f"(the last of {steps} steps)")
    if parameter == "start_step":
        return _integer(parameter, token, 0, last, f"use a step from 0 to {last}")
    if parameter == "step_interval":
        return _integer(parameter, token, 1, steps, f"use 1 to {steps}")
    if parameter == "start_layer":
        top = None if layers is None else layers - 1
        why = f"this model's layers are 0 to {top}" if top is not None else "use a layer number, 0 or more"
        return _integer(parameter, token, 0, top, why)
    return _layers(token, layers)


def _tokens(parameter: str, values: str) -> list[str]:
    if parameter not in PARAMETERS:
        raise SweepError(f"parameter '{parameter}' is not sweepable; choose one of {', '.join(PARAMETERS)}.")
    tokens = [t.strip().lower() for t in values.split(",") if t.strip()]
    if not tokens:
        raise SweepError(f"values is empty; list the {parameter} values to try, separated by commas, e.g. "
                         f"'{EXAMPLES[parameter]}'.")
    repeated = sorted({t for t in tokens if tokens.count(t) > 1})
    if repeated:
        raise SweepError(f"values lists {', '.join(repeated)} more than once; each value runs once.")
    return tokens


def values_problem(parameter: str, values: str, steps: int) -> str | None:
    """What is wrong with a sweep's values as far as it shows without the model (its layers, MasaCtrl's
    settings): for ComfyUI's validation, before anything loads."""
    try:
        for token in _tokens(parameter, values):
            if token != OFF:
                _value(parameter, token, steps, None, None)
    except SweepError as error:
        return str(error)
    return None


def _schedule(parameter: str, token: str, base: MutualAttentionSchedule, steps: int, layers: int):
    value = _value(parameter, token, steps, layers, base.start_step)
    if parameter == "layers":
        parts, start, end = value
        return replace(base, start_layer=start, end_layer=end, parts=parts)
    return replace(base, **{parameter: value})


def sweep_settings(base: MutualAttentionSchedule, parameter: str, values: str, steps: int,
                   layer_map: UNetLayerMap) -> list[SweepSetting]:
    """One setting per comma-separated value ('off' runs without MasaCtrl), each a complete, valid schedule
    that acts on some step of a `steps`-step run."""
    if parameter in STEP_PARAMETERS and base.sigma_range is not None:
        raise SweepError(f"{parameter} counts steps, but the MasaCtrl node schedules by percent; set its "
                         "schedule_by to steps.")
    settings = []
    for token in _tokens(parameter, values):
        if token == OFF:
            settings.append(SweepSetting(OFF, None))
            continue
        try:
            schedule = _schedule(parameter, token, base, steps, len(layer_map))
            layer_map.active_sites(schedule)
        except ScheduleError as error:  # e.g. an end_step before start_step, or parts outside the layer range
            raise SweepError(f"{parameter}={token}: {error}") from None
        if schedule.sigma_range is None and schedule.start_step > steps - 1:
            raise SweepError(f"{parameter}={token}: MasaCtrl's start_step {schedule.start_step} is past the last of "
                             f"{steps} steps, so this run would sample without MasaCtrl; lower start_step in the "
                             "MasaCtrl node, or raise steps.")
        settings.append(SweepSetting(f"{parameter}={token}", schedule))
    return settings
