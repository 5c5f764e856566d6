"""Widgets that matter only with some options of a combo (Extend Canvas's mode and fill, MasaCtrl's schedule_by),
declared with the node's schema so that web/mode_widgets.js can hide the widgets of the options not chosen,
knowing no node by name.

Why a key of our own: ComfyUI 0.3.64's V3 API has nothing declarative for it (io.ComboDynamic is an empty stub,
and an input's `advanced` flag only puts a widget behind the node's "Show Advanced" menu, whatever the mode).
Every input's as_dict() merges its extra_dict into the input's options, so the table reaches /object_info and
the front end, whose node-definition schema (1.27) passes unknown option keys through."""
from __future__ import annotations

from comfy_api.v0_0_2 import io

MODE_WIDGETS = "masactrl_mode_widgets"  # the option key web/mode_widgets.js reads


def mode_widgets(schema: io.Schema, **tables: dict[str, tuple[str, ...]]) -> io.Schema:
    """`schema`, with each combo named in `tables` declaring {option: widgets}: a widget named there is shown only
    while an option listing it is chosen. Widgets no table names are always shown; hidden widgets keep their
    values and are still saved and sent with the prompt."""
    inputs = {i.id: i for i in schema.inputs}
    for combo_id, table in tables.items():
        combo = inputs.get(combo_id)
        # a typo here would hide widgets for good or never: fail when the pack loads
        if not isinstance(combo, io.Combo.Input):
            raise TypeError(f"{schema.node_id}: {combo_id} is not a combo input of the node.")
        unknown = (set(table) - set(combo.options)) | {w for names in table.values() for w in names if w not in inputs}
        if unknown:
            raise ValueError(f"{schema.node_id}: {combo_id}'s table names {sorted(unknown)}, which are not options "
                             "of the combo or inputs of the node.")
        combo.extra_dict[MODE_WIDGETS] = {option: list(names) for option, names in table.items()}
    return schema
