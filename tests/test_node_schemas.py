"""Every node of the pack as the front end receives it (GET_NODE_INFO_V1, what /object_info sends), read from
the real ComfyUI: display names in the pack's one scheme, a tooltip on every input and output that says more
than the name, SAMPLER nodes where ComfyUI lists its own, and mode-widget tables that name real widgets and
real options. A new node is covered by being in the pack."""
from __future__ import annotations

import re
from collections import Counter

import pytest

MAIN_NODE = "MasaCtrlMutualSelfAttention"
SUFFIX = " (MasaCtrl)"
MODE_WIDGETS = "masactrl_mode_widgets"


@pytest.fixture(scope="module")
def infos(comfy):
    from masactrl_suite.nodes import NODES

    loaded = {node_id: cls for node_id, cls in comfy.nodes.NODE_CLASS_MAPPINGS.items()
              if cls.__module__.startswith("masactrl_suite.")}
    assert sorted(loaded) == sorted(cls.define_schema().node_id for cls in NODES)  # ComfyUI loaded all of them
    return {node_id: cls.GET_NODE_INFO_V1() for node_id, cls in loaded.items()}


def inputs_of(info) -> dict:
    return {**info["input"].get("required", {}), **info["input"].get("optional", {})}


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower().replace("_", " ")))


def says_more_than(tooltip, name) -> bool:
    return bool(tooltip and tooltip.strip()) and not words(tooltip) <= words(name)


def test_display_names_follow_one_scheme(infos):
    """The method's own node is "MasaCtrl"; every other node says what it does and ends in " (MasaCtrl)", the
    pack named once. (The front end's search matches node ids too, which all start with MasaCtrl.)"""
    wrong = {}
    for node_id, info in infos.items():
        name = info["display_name"]
        if node_id == MAIN_NODE:
            ok = name == "MasaCtrl"
        else:
            ok = name.endswith(SUFFIX) and "masactrl" not in name[:-len(SUFFIX)].lower() and len(name) > len(SUFFIX)
        if not ok:
            wrong[node_id] = name
    assert not wrong, f"display names outside the scheme: {wrong}"
    names = [info["display_name"] for info in infos.values()]
    assert len(set(names)) == len(names)


def test_every_input_and_output_has_a_useful_tooltip(infos):
    missing = []
    for node_id, info in infos.items():
        for name, spec in inputs_of(info).items():
            options = spec[1] if len(spec) > 1 else {}
            if not says_more_than(options.get("tooltip"), name):
                missing.append(f"{node_id} input {name}")
        for name, tooltip in zip(info["output_name"], info["output_tooltips"]):
            if not says_more_than(tooltip, name):
                missing.append(f"{node_id} output {name}")
    assert not missing, f"{len(missing)} without a tooltip that says more than the name: {missing}"


def test_sampler_nodes_sit_where_comfyui_lists_its_own(comfy, infos):
    """A node making a SAMPLER (for SamplerCustom) belongs where ComfyUI's own SAMPLER nodes are listed."""
    core = Counter(cls.GET_NODE_INFO_V1()["category"] if hasattr(cls, "GET_NODE_INFO_V1") else cls.CATEGORY
                   for cls in comfy.nodes.NODE_CLASS_MAPPINGS.values()
                   if not cls.__module__.startswith(("masactrl_suite", "custom_nodes"))
                   and tuple(getattr(cls, "RETURN_TYPES", None) or ()) == ("SAMPLER",))
    (sampler_category, _), = core.most_common(1)
    assert sampler_category == "sampling/custom_sampling/samplers"
    ours = {node_id: info["category"] for node_id, info in infos.items() if "SAMPLER" in info["output"]}
    assert ours and set(ours.values()) == {sampler_category}, ours


def test_mode_widget_tables_name_real_options_and_widgets(infos):
    """Each table is on a combo, lists options of that combo and widgets of the node; no widget is governed by
    two combos (the front end would not know which one wins), and every table hides something."""
    tables = 0
    for node_id, info in infos.items():
        inputs = inputs_of(info)
        governed = Counter()
        for combo, spec in inputs.items():
            table = spec[1].get(MODE_WIDGETS) if len(spec) > 1 else None
            if table is None:
                continue
            tables += 1
            options = spec[1]["options"]
            assert set(table) <= set(options), (node_id, combo)
            widgets = set().union(*map(set, table.values()))
            assert widgets <= set(inputs) - {combo}, (node_id, combo, widgets - set(inputs))
            assert any(widgets - set(table.get(option, ())) for option in options), (node_id, combo)
            governed.update(widgets)
        assert not [w for w, n in governed.items() if n > 1], node_id
    assert tables >= 3  # MasaCtrl's schedule_by, Extend Canvas's mode and fill


def test_widgets_hidden_with_an_option_change_nothing_with_it(comfy, infos):
    """Extend Canvas run in-process: with each option of mode and fill, changing any widget hidden with that
    option leaves all three outputs unchanged, so hiding it hides nothing the node reads."""
    import torch

    from comfy_harness import schema_defaults

    node = comfy.nodes.NODE_CLASS_MAPPINGS["MasaCtrlExtendCanvas"]
    inputs = inputs_of(infos["MasaCtrlExtendCanvas"])
    image = torch.rand(1, 80, 96, 3, generator=torch.Generator().manual_seed(0))
    other = {"left": 16, "top": 8, "right": 24, "bottom": 0, "target_width": 128, "target_height": 160,
             "aspect": "16:9", "anchor": "bottom right", "seed": 7}
    checked = 0
    for combo in ("mode", "fill"):
        table = inputs[combo][1][MODE_WIDGETS]
        for option in inputs[combo][1]["options"]:
            values = {**schema_defaults(node), "image": image, combo: option}
            hidden = set().union(*map(set, table.values())) - set(table.get(option, ()))
            base = node.execute(**values).result
            for name in hidden:
                changed = node.execute(**{**values, name: other[name]}).result
                assert all(torch.equal(a, b) for a, b in zip(base, changed)), (combo, option, name)
                checked += 1
    assert checked >= 12
