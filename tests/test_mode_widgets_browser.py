"""Mode widgets (web/mode_widgets.js) in the real ComfyUI front end, in headless Chromium: Extend Canvas and
MasaCtrl added to the graph, their mode switched by clicking the combo's arrow on the canvas as a user does. Only
the chosen option's widgets are drawn and the node's height fits them; hidden widgets keep their values in the
saved workflow and in the prompt, and a saved workflow (also one saved before the widgets were hidden) loads
with its values and the widgets of its mode. Skipped, with the reason, without ComfyUI, chromium or playwright.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from conftest import COMFYUI_PATH, PACK_DIR, comfyui_missing_reason

CANVAS, MASACTRL = "MasaCtrlExtendCanvas", "MasaCtrlMutualSelfAttention"
PIXELS, SIZE, ASPECT = ["left", "top", "right", "bottom"], ["target_width", "target_height"], ["aspect"]
ANCHOR, SEED = ["anchor"], ["seed"]


@pytest.fixture(scope="module")
def page():
    from test_pose_editor_browser import browser_missing_reason  # one definition of what the browser tests need

    reason = comfyui_missing_reason() or browser_missing_reason()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    from comfy_harness import CHROMIUM_FLAGS, CHROMIUM_PATH, ComfyServer

    base = Path(tempfile.mkdtemp(prefix="masactrl-mode-widgets-"))
    try:
        with ComfyServer(COMFYUI_PATH, PACK_DIR, base) as server, sync_playwright() as playwright:
            server.post("/settings/Comfy.TutorialCompleted", True)
            browser = playwright.chromium.launch(executable_path=CHROMIUM_PATH, args=CHROMIUM_FLAGS)
            tab = browser.new_page(viewport={"width": 1400, "height": 900})
            tab.errors = []
            tab.goto(server.url)
            tab.wait_for_function("() => !!(window.app?.graph && window.app.canvas && window.app.vueAppReady"
                                  f" && window.LiteGraph?.registered_node_types?.{CANVAS})", timeout=90_000)
            tab.on("pageerror", lambda error: tab.errors.append(str(error)))  # after the front end's own start
            yield tab
            browser.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def add_node(page, node_type) -> int:
    """A new node at a fixed place on an empty graph, zoom 1, as the search box adds one."""
    return page.evaluate("""(type) => {
      app.graph.clear();
      const node = LiteGraph.createNode(type);
      node.pos = [80, 80];
      app.graph.add(node);
      app.canvas.ds.scale = 1;
      app.canvas.ds.offset = [0, 0];
      app.canvas.setDirty(true, true);
      return node.id;
    }""", node_type)


def node_js(node_type) -> str:
    return f"app.graph.nodes.find((n) => n.type === '{node_type}')"


def shown(page, node_type) -> list[str]:
    """The widgets the front end draws (its own isWidgetVisible), in order."""
    return page.evaluate(f"{node_js(node_type)}.widgets.filter((w) => {node_js(node_type)}.isWidgetVisible(w))"
                         ".map((w) => w.name)")


def frames(page, count=2):
    page.evaluate("(count) => new Promise((done) => { const step = (n) => n ? requestAnimationFrame(() => step(n - 1))"
                  " : done(); step(count); })", count)


def fits(page, node_type) -> bool:
    """The node's height is what its shown widgets need, also after the canvas has laid them out and drawn them
    (the front end grows a node whose widgets do not fit)."""
    frames(page)
    return page.evaluate(f"(() => {{ const n = {node_js(node_type)}; return n.size[1] === n.computeSize()[1]; }})()")


def values(page, node_type) -> dict:
    return page.evaluate(f"Object.fromEntries({node_js(node_type)}.widgets.map((w) => [w.name, w.value]))")


def next_option(page, node_type, combo):
    """Click the right arrow of the combo widget on the canvas (the next option), as a user does."""
    frames(page)
    x, y = page.evaluate(f"""(combo) => {{
      const node = {node_js(node_type)}, widget = node.widgets.find((w) => w.name === combo);
      const [x, y] = app.canvas.ds.convertOffsetToCanvas(
        [node.pos[0] + node.size[0] - 25, node.pos[1] + widget.y + LiteGraph.NODE_WIDGET_HEIGHT / 2]);
      const box = app.canvas.canvas.getBoundingClientRect();
      return [box.left + x, box.top + y];
    }}""", combo)
    page.mouse.click(x, y)
    page.wait_for_timeout(100)


def visible(*groups, always=("mode", "fill", "feather", "seam_band")):
    return {*always, *(name for group in groups for name in group)}


def test_extend_canvas_shows_the_widgets_of_its_mode(page):
    add_node(page, CANVAS)
    assert set(shown(page, CANVAS)) == visible(PIXELS) and fits(page, CANVAS)
    page.evaluate(f"{node_js(CANVAS)}.widgets.find((w) => w.name === 'target_width').value = 640")  # while hidden
    heights = [page.evaluate(f"{node_js(CANVAS)}.size[1]")]
    for mode, groups in (("target size", (SIZE, ANCHOR)), ("target aspect", (ASPECT, ANCHOR))):
        next_option(page, CANVAS, "mode")
        assert values(page, CANVAS)["mode"] == mode
        assert set(shown(page, CANVAS)) == visible(*groups) and fits(page, CANVAS)
        heights.append(page.evaluate(f"{node_js(CANVAS)}.size[1]"))
    assert heights[0] > heights[1] > heights[2]  # 4, 3, then 2 mode widgets shown
    next_option(page, CANVAS, "fill")  # blur -> noise, the only fill that uses the seed
    assert values(page, CANVAS)["fill"] == "noise" and set(shown(page, CANVAS)) == visible(ASPECT, ANCHOR, SEED)
    assert fits(page, CANVAS)
    assert not page.errors, page.errors


def test_hidden_values_are_saved_sent_and_loaded(page):
    """After the previous test: mode target aspect, fill noise, target_width 640 set while hidden."""
    before = values(page, CANVAS)
    assert before["mode"] == "target aspect" and before["target_width"] == 640
    saved = page.evaluate("JSON.stringify(app.graph.serialize())")
    node = next(n for n in json.loads(saved)["nodes"] if n["type"] == CANVAS)
    assert node["widgets_values"] == list(before.values())  # every widget, hidden or not, in order
    prompt = page.evaluate(f"(async () => (await app.graphToPrompt()).output[{node_js(CANVAS)}.id].inputs)()")
    assert {k: v for k, v in prompt.items() if k != "image"} == {k: v for k, v in before.items() if k != "image"}
    page.evaluate("(text) => app.loadGraphData(JSON.parse(text))", saved)
    assert values(page, CANVAS) == before
    assert set(shown(page, CANVAS)) == visible(ASPECT, ANCHOR, SEED) and fits(page, CANVAS)
    # a workflow saved before widgets were hidden: every widget shown, the node tall; it opens fitted to its mode
    node["widgets_values"][list(before).index("mode")], node["size"] = "target size", [400, 900]
    page.evaluate("(text) => app.loadGraphData(JSON.parse(text))", json.dumps({**json.loads(saved), "nodes": [node]}))
    assert values(page, CANVAS)["target_width"] == 640
    assert set(shown(page, CANVAS)) == visible(SIZE, ANCHOR, SEED) and fits(page, CANVAS)
    assert not page.errors, page.errors


def test_a_linked_widget_stays_shown(page):
    """A hidden widget whose socket gets a link is shown (its link must end on something), and hides again
    when the link goes."""
    add_node(page, CANVAS)
    assert "target_width" not in shown(page, CANVAS)
    page.evaluate(f"""() => {{
      const node = {node_js(CANVAS)}, primitive = LiteGraph.createNode("PrimitiveInt");
      primitive.pos = [-200, 80];
      app.graph.add(primitive);
      primitive.connect(0, node, node.inputs.findIndex((i) => i.widget?.name === "target_width"));
    }}""")
    assert "target_width" in shown(page, CANVAS) and "target_height" not in shown(page, CANVAS)
    page.evaluate(f"{node_js(CANVAS)}.disconnectInput({node_js(CANVAS)}.inputs.findIndex("
                  "(i) => i.widget?.name === 'target_width'))")
    assert "target_width" not in shown(page, CANVAS) and fits(page, CANVAS)
    assert not page.errors, page.errors


def test_masactrl_shows_steps_or_percents(page):
    add_node(page, MASACTRL)
    steps, percents = {"start_step", "end_step"}, {"start_percent", "end_percent"}
    names = set(shown(page, MASACTRL))
    assert steps <= names and not percents & names and {"step_interval", "start_layer"} <= names
    next_option(page, MASACTRL, "schedule_by")
    names = set(shown(page, MASACTRL))
    assert values(page, MASACTRL)["schedule_by"] == "percent"
    assert percents <= names and not steps & names and {"step_interval", "start_layer"} <= names
    assert fits(page, MASACTRL)
    assert not page.errors, page.errors
