"""Widgets that matter only with some options of a combo (Extend Canvas's mode and fill, MasaCtrl's schedule_by),
declared on the combo in the node's schema so that web/mode_widgets.js can hide the widgets of the options not
chosen, knowing no node by name.

Why a key of our own: ComfyUI 0.3.64's V3 API has nothing declarative for it (io.ComboDynamic is an empty stub,
and an input's `advanced` flag only puts a widget behind the node's "Show Advanced" menu, whatever the mode).
Every input's as_dict() merges its extra_dict into the input's options, so the table reaches /object_info and
the front end, whose node-definition schema (1.27) passes unknown option keys through."""
from __future__ import annotations

from comfy_api.v0_0_2 import io

MODE_WIDGETS = "masactrl_mode_widgets"  # the option key web/mode_widgets.js reads


def mode_combo(combo: io.Combo.Input, widgets_by_option: dict[str, tuple[str, ...]]) -> io.Combo.Input:
    """`combo`, declaring that each widget named in `widgets_by_option` is shown only while one of the options
    listing it is chosen. Widgets it does not name are always shown; hidden widgets keep their values and are
    still saved and sent with the prompt."""
    unknown = set(widgets_by_option) - set(combo.options)
    if unknown:  # a typo here would hide widgets for good: fail when the pack loads
        raise ValueError(f"{combo.id}: {sorted(unknown)} are not options of the combo ({combo.options}).")
    combo.extra_dict[MODE_WIDGETS] = {option: list(names) for option, names in widgets_by_option.items()}
    return combo
