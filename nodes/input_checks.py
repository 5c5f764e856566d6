"""One validation path for every node of the pack: each value against the node's own schema (combo options,
min, max, finite numbers), each connected input against its type, then the node's rules across inputs. Every
problem names the input, the value and the fix; the message starts with the node's display name.

How a node uses it, and why (ComfyUI 0.3.64, execution.validate_inputs):
- ComfyUI never compares a V3 combo with its options (its input type is the string "COMBO"; only list types
  are compared), skips its own min/max checks for every input named in validate_inputs' signature (all of
  them with **kwargs), passes linked inputs as None, and repeats a returned message once per named input.
  So `validate_inputs` names only what must be checked before anything runs (combos, text that is parsed,
  the widgets of a rule) and returns `report(cls, locals())`; the rest keeps ComfyUI's own min/max checks.
  (A float of "nan" passes ComfyUI's conversion and min/max: execute's check refuses it.)
- `execute` starts with `require(cls, locals())`: the same checks on every input, now that linked values
  are known, plus the types of connected inputs (an API client can send a literal where a MODEL belongs).
- Rules are the node's `RULES`: functions made with `@rule(...)`, run once every input they read is known.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import comfy.model_patcher
import comfy.samplers
import comfy.sd
import torch
from comfy_api.v0_0_2 import io
from comfy_execution.graph_utils import ExecutionBlocker

# What ComfyUI itself does to a value of the wrong type before any node sees it, so a node cannot refuse it:
# the documented acceptances every node shares (the schema-driven test reads this).
COMFYUI_CONVERSIONS = {
    "BOOLEAN": "ComfyUI converts any value with Python's bool() ('no' is True) before the node sees it.",
    "STRING": "ComfyUI converts any value to text with str(); the node then checks that text like typed text.",
}


class InputError(ValueError):
    """An input the node cannot use; the message names the node, the input, the value and the fix."""


@dataclass(frozen=True)
class Rule:
    """A check across inputs: check(**values) returns the problem, or None. It runs once every input in
    `inputs` is known (not None: at validation a linked input is None); `optional` inputs are passed as they
    are (None when unconnected), so a rule reading any connected input runs only in execute."""
    inputs: tuple[str, ...]
    check: Callable[..., str | None]
    optional: tuple[str, ...] = ()
    own_options: bool = False  # the rule, not the schema's list, decides which values of its combo exist


def rule(*inputs: str, optional: tuple[str, ...] = (), own_options: bool = False):
    def make(check) -> Rule:
        return Rule(inputs, check, optional, own_options)
    return make


# -- connected inputs: what a value of each type must be ------------------------------------------------

@dataclass(frozen=True)
class SocketType:
    accepts: Callable[[object], bool]
    fix: str


def _is_conditioning(value) -> bool:
    return isinstance(value, list) and all(  # ComfyUI's own code allows an entry without a tensor (None)
        isinstance(c, (list, tuple)) and len(c) == 2 and isinstance(c[0], (torch.Tensor, type(None)))
        and isinstance(c[1], dict) for c in value)


SOCKET_TYPES: dict[str, SocketType] = {
    "MODEL": SocketType(lambda v: isinstance(v, comfy.model_patcher.ModelPatcher),
                        "connect a MODEL output (e.g. Load Checkpoint's)"),
    "CLIP": SocketType(lambda v: isinstance(v, comfy.sd.CLIP), "connect a CLIP output (e.g. Load Checkpoint's)"),
    "VAE": SocketType(lambda v: isinstance(v, comfy.sd.VAE), "connect a VAE output (e.g. Load Checkpoint's)"),
    "CONDITIONING": SocketType(_is_conditioning, "connect a CONDITIONING output (e.g. CLIP Text Encode's)"),
    "LATENT": SocketType(lambda v: isinstance(v, dict) and isinstance(v.get("samples"), torch.Tensor),
                         "connect a LATENT output (e.g. Empty Latent Image's or a sampler's)"),
    "IMAGE": SocketType(lambda v: isinstance(v, torch.Tensor) and v.ndim == 4 and v.shape[0] > 0,
                        "connect an IMAGE batch [B, H, W, C]"),
    "MASK": SocketType(lambda v: isinstance(v, torch.Tensor) and v.ndim in (2, 3) and v.numel() > 0,
                       "connect a MASK ([batch, height, width])"),
    "SAMPLER": SocketType(lambda v: isinstance(v, comfy.samplers.Sampler), "connect a SAMPLER output"),
}


def custom_type(name: str, python_type: type, fix: str):
    """io.Custom(name), registered so that require() checks a connected value is a `python_type`."""
    SOCKET_TYPES[name] = SocketType(lambda v: isinstance(v, python_type), fix)
    return io.Custom(name)


def _described(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"has shape {list(value.shape)}"
    return f"is a {type(value).__name__}"


def _shown(value) -> str:
    """The value itself where it is short text or a number (a literal sent where a connection belongs)."""
    if isinstance(value, (str, int, float)) and len(repr(value)) <= 60:
        return f" (got {value!r})"
    return ""


def _socket_problem(spec, name: str, value) -> str | None:
    expected = SOCKET_TYPES.get(str(spec.get_io_type()))
    if expected is None or expected.accepts(value):
        return None
    return f"{name} {_described(value)}; {expected.fix}{_shown(value)}."


# -- widgets: the node's own schema ---------------------------------------------------------------------

def _number(value) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return text if len(text) <= 24 else f"{text[:8]}... ({len(text)} digits)"


def _range_problem(spec, name: str, value, whole: bool) -> str | None:
    low, high = spec.min, spec.max
    span = (f"from {_number(low)} to {_number(high)}" if low is not None and high is not None
            else f"of at least {_number(low)}" if low is not None
            else f"of at most {_number(high)}" if high is not None else "")
    kind = "a whole number" if whole else "a number"
    # No float() of an int: a 400-digit value would overflow before it is compared.
    fraction = isinstance(value, float) and whole and math.isfinite(value) and not value.is_integer()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or fraction:
        return f"{name} {_described(value)}; use {kind} {span}{_shown(value)}."
    if isinstance(value, float) and not math.isfinite(value):
        return f"{name} is {value}; use {kind} {span}."
    if low is not None and value < low:
        return f"{name} is {_number(value)}, below its minimum {_number(low)}; use {kind} {span}."
    if high is not None and value > high:
        return f"{name} is {_number(value)}, above its maximum {_number(high)}; use {kind} {span}."
    return None


def _widget_problem(spec, name: str, value, check_options: bool) -> str | None:
    if isinstance(spec, io.Combo.Input):
        if not check_options or value in spec.options:
            return None
        return f"{name} {value!r} is not one of its options; choose one of: {', '.join(map(str, spec.options))}."
    if isinstance(spec, (io.Int.Input, io.Float.Input)):
        return _range_problem(spec, name, value, whole=isinstance(spec, io.Int.Input))
    if isinstance(spec, io.String.Input) and not isinstance(value, str):
        return f"{name} {_described(value)}; connect a STRING or type the text{_shown(value)}."
    if isinstance(spec, io.Boolean.Input) and not isinstance(value, bool):
        return f"{name} {_described(value)}; connect a BOOLEAN or switch it on or off{_shown(value)}."
    return None


# -- the checks ---------------------------------------------------------------------------------------

def _inputs(values: dict) -> dict:
    """A validate_inputs' or execute's locals() as input values: without `cls`."""
    return {k: v for k, v in values.items() if k != "cls"}


def problems(node_class, values: dict) -> list[str]:
    """Every problem of the known values (None: not known yet), schema first; a rule runs only on values
    that passed it, so rules can trust types and ranges."""
    specs = {spec.id: spec for spec in node_class.define_schema().inputs}
    rules: tuple[Rule, ...] = getattr(node_class, "RULES", ())
    own_options = {r.inputs[0] for r in rules if r.own_options}
    found, failed = [], set()
    for name, value in values.items():
        spec = specs.get(name)
        if value is None or spec is None:
            continue
        if isinstance(spec, io.WidgetInput):
            problem = _widget_problem(spec, name, value, check_options=name not in own_options)
        else:
            problem = _socket_problem(spec, name, value)
        if problem:
            found.append(problem)
            failed.add(name)
    for r in rules:
        if any(values.get(n) is None for n in r.inputs) or failed & {*r.inputs, *r.optional}:
            continue
        problem = r.check(**{n: values.get(n) for n in (*r.inputs, *r.optional)})
        if problem:
            found.append(problem)
    return found


def _message(node_class, found: list[str]) -> str:
    return f"{node_class.define_schema().display_name}: " + " ".join(found)


def report(node_class, values: dict) -> bool | str:
    """For validate_inputs: True, or every problem in one message (ComfyUI shows it for each named input)."""
    found = problems(node_class, _inputs(values))
    return True if not found else _message(node_class, found)


def require(node_class, values: dict) -> None:
    """For the start of execute: raise InputError with every problem."""
    found = problems(node_class, _inputs(values))
    if found:
        raise InputError(_message(node_class, found))


# -- outputs that cannot be produced --------------------------------------------------------------------

def linked_outputs(node_class) -> set[int]:
    """The output slots of the running node that another node of the prompt takes as input. Needs
    io.Hidden.prompt and io.Hidden.unique_id in the schema; empty when the prompt is unknown (a direct call)."""
    hidden = getattr(node_class, "hidden", None)
    prompt, node_id = getattr(hidden, "prompt", None), getattr(hidden, "unique_id", None)
    if not prompt or node_id is None:
        return set()
    return {link[1] for node in prompt.values() for link in node.get("inputs", {}).values()
            if isinstance(link, list) and len(link) == 2 and str(link[0]) == str(node_id)}


def unproducible(node_class, slot: int, problem: str) -> ExecutionBlocker:
    """For output `slot`, which this run cannot produce. Connected: raise InputError, because ComfyUI 0.3.64
    sends an ExecutionBlocker's message over the websocket only and /history would report success. Unconnected:
    the ExecutionBlocker to return; the node also shows its message as UI output (`unavailable_ui`), which
    /history keeps, also where a later prompt connects the output and ComfyUI reuses this cached result."""
    message = f"{node_class.define_schema().display_name}: {problem}"
    if slot in linked_outputs(node_class):
        raise InputError(message)
    return ExecutionBlocker(message)


def unavailable_ui(*blocked) -> dict | None:
    """The UI output listing the messages of the ExecutionBlockers among `blocked` (None: nothing blocked)."""
    messages = [b.message for b in blocked if isinstance(b, ExecutionBlocker)]
    return {"unavailable_outputs": messages} if messages else None
