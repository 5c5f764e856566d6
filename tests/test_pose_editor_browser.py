"""The pose editor in a real headless Chromium (Debian's chromium driven by playwright).

1. On a plain page served from a temporary folder by Python's http.server (no ComfyUI): the editor
   component (web/pose_editor_ui.js with pose_model.js and pose_draw.js) mounted in a div; real mouse
   drags and key presses; the serialised pose checked after each edit. Runs in CI.
2. In the real ComfyUI (ComfyServer, a subprocess; skipped without a checkout): the example workflow
   masactrl_pose_repair loaded in the front end, a person added and a joint dragged in the node's widget,
   the graph run, and the rendered pose image checked for the edit; the editor's keys (Ctrl+Z, Ctrl+Y, Del,
   arrows, letters) kept from the front end's own undo, shortcuts and canvas, and the edits saved and reloaded.
Skipped, with the reason, without /usr/bin/chromium or the playwright package.
"""
from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from conftest import COMFYUI_PATH, PACK_DIR, comfyui_missing_reason
from pose_editor_page import (PACK_FOLDER, WORKFLOW, add_person_and_edit, editor_node, focus_editor, load_workflow,
                              press_in_editor, run_and_wait)

W, H = 256, 384
BODY = [(128, 60), (128, 100), (100, 100), (92, 150), (88, 200), (156, 100), (164, 150), (168, 200), (112, 200),
        (110, 270), (108, 340), (144, 200), (146, 270), (148, 340), (122, 52), (134, 52), (116, 56), None]
KNEE = 12  # left knee, drawn in COLORS[12] = blue
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>pose editor</title><link rel="icon" href="data:,"></head>
<body style="margin: 0; background: #222">
<div id="host" style="width: 640px; height: 600px"></div>
<script type="module">
import { PoseEditorUI } from "./web/pose_editor_ui.js";
import * as poseModel from "./web/pose_model.js";
window.changes = [];
window.leaked = [];  // keys that reached the window: the editor must keep the ones it handles
window.addEventListener("keydown", (e) => window.leaked.push(e.key));
window.poseModel = poseModel;
window.editor = new PoseEditorUI(document.getElementById("host"), { onChange: (v) => window.changes.push(v) });
window.ready = true;
</script>
</body></html>
"""


def pose_text(body=BODY):
    person = {"pose_keypoints_2d": [v for p in body for v in ((*p, 1.0) if p else (0.0, 0.0, 0.0))],
              "face_keypoints_2d": None, "hand_left_keypoints_2d": None, "hand_right_keypoints_2d": None}
    return json.dumps([{"people": [person], "canvas_width": W, "canvas_height": H}])


def browser_missing_reason() -> str | None:
    from comfy_harness import CHROMIUM_PATH

    if not os.access(CHROMIUM_PATH, os.X_OK):
        return f"no chromium at {CHROMIUM_PATH} (apt-get install chromium) for the browser tests"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright; no `playwright install`)"
    return None


@pytest.fixture(scope="module")
def browser():
    reason = browser_missing_reason()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    from comfy_harness import CHROMIUM_FLAGS, CHROMIUM_PATH

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM_PATH, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def site():
    """The page and the pack's web/ folder, served over HTTP on 127.0.0.1 (ES modules need it)."""
    root = Path(tempfile.mkdtemp(prefix="masactrl-pose-page-"))
    (root / "web").symlink_to(PACK_DIR / "web", target_is_directory=True)
    (root / "index.html").write_text(PAGE)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    server.shutdown()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def page(browser, site):
    tab = browser.new_page(viewport={"width": 800, "height": 700})
    tab.errors = []
    tab.on("pageerror", lambda error: tab.errors.append(str(error)))
    tab.on("console", lambda m: m.type == "error" and tab.errors.append(m.text))
    tab.goto(site)
    tab.wait_for_function("() => window.ready === true", timeout=10_000)
    yield tab
    tab.close()


@pytest.fixture
def editor(page):
    """The editor with a fresh document holding one person (as a saved workflow would)."""
    page.evaluate("(text) => { editor.load(text); window.changes = []; window.leaked = []; }", pose_text())
    yield page
    assert not page.errors, page.errors


def saved(page, person=0):
    return json.loads(page.evaluate("editor.value"))[0]["people"][person]["pose_keypoints_2d"]


def point(page, index, person=0):
    return page.evaluate(f"editor.screenPoint({person}, 'body', {index})")


def pixel(page, x, y):
    """The canvas colour at client position (x, y)."""
    return page.evaluate("""([x, y]) => {
      const c = editor.canvas, r = c.getBoundingClientRect(), k = c.width / r.width;
      return [...c.getContext('2d').getImageData(Math.round((x - r.left) * k), Math.round((y - r.top) * k), 1, 1).data];
    }""", [x, y])


def drag(page, start, dx, dy):
    page.mouse.move(start["x"], start["y"])
    page.mouse.down()
    page.mouse.move(start["x"] + dx, start["y"] + dy, steps=6)
    page.mouse.up()


def test_drag_a_joint(editor):
    scale = editor.evaluate("editor.view.scale")
    knee = point(editor, KNEE)
    assert pixel(editor, knee["x"], knee["y"])[:3] == [0, 0, 255]  # drawn in its OpenPose colour
    drag(editor, knee, 30, 24)
    x, y, c = saved(editor)[3 * KNEE:3 * KNEE + 3]
    assert (x, y, c) == pytest.approx((146 + 30 / scale, 270 + 24 / scale, 1), abs=0.01)
    assert saved(editor)[:3] == [128, 60, 1]  # nothing else moved
    assert len(editor.evaluate("window.changes")) == 1  # one change per drag, not per mouse move
    moved = point(editor, KNEE)
    assert pixel(editor, moved["x"], moved["y"])[:3] == [0, 0, 255]


def test_delete_a_point_with_the_key_and_undo_redo(editor):
    ankle = point(editor, 13)
    editor.mouse.click(ankle["x"], ankle["y"])
    editor.keyboard.press("Delete")
    assert saved(editor)[39:42] == [0, 0, 0]
    assert "Delete" not in editor.evaluate("window.leaked")  # ComfyUI would delete the node
    drag(editor, point(editor, KNEE), -20, 0)
    editor.keyboard.press("Control+z")
    assert saved(editor)[36:39] == [146, 270, 1] and saved(editor)[39:42] == [0, 0, 0]
    editor.keyboard.press("Control+z")
    assert saved(editor)[39:42] == [148, 340, 1]
    editor.keyboard.press("Control+y")
    assert saved(editor)[39:42] == [0, 0, 0]
    assert set(editor.evaluate("window.leaked")) <= {"Control"}  # a bare modifier does nothing in ComfyUI


def test_hide_and_restore_a_single_point(editor):
    wrist = point(editor, 4)
    editor.mouse.click(wrist["x"], wrist["y"])
    editor.keyboard.press("h")
    assert saved(editor)[12:15] == [88, 200, 0]  # hidden: place kept, confidence 0 (missing to every consumer)
    assert pixel(editor, wrist["x"], wrist["y"])[:3] != [170, 255, 0]
    editor.keyboard.press("r")
    assert saved(editor)[12:15] == [88, 200, 1]
    # a deleted point comes back through the list of the person's missing points
    editor.keyboard.press("Delete")
    assert editor.evaluate("[...editor.restoreChoice.options].map((o) => o.textContent)") == ["right wrist",
                                                                                              "left ear"]
    editor.select_option("select[title^='Missing']", label="left ear")
    editor.click("[data-action=restorePoint]")
    x, y, c = saved(editor)[51:54]
    assert c == 1 and 128 < x < 200 and 0 < y < 150  # by the head, on the left side


def test_add_mirror_and_remove_people(editor):
    editor.click("[data-action=addPerson]")
    people = json.loads(editor.evaluate("editor.value"))[0]["people"]
    assert len(people) == 2 and all(v == 1 for v in people[1]["pose_keypoints_2d"][2::3])
    editor.keyboard.press("Escape")
    shoulder = point(editor, 2)  # right shoulder of person 0
    editor.mouse.click(shoulder["x"], shoulder["y"])
    editor.keyboard.press("m")
    mirrored = saved(editor)
    # about the person's centre x (88 + 168) / 2 = 128; the right shoulder is now the old left one, flipped
    assert mirrored[6:9] == [256 - 156, 100, 1] and mirrored[15:18] == [256 - 100, 100, 1]
    editor.keyboard.press("x")
    assert len(json.loads(editor.evaluate("editor.value"))[0]["people"]) == 1
    editor.keyboard.press("n")
    assert len(json.loads(editor.evaluate("editor.value"))[0]["people"]) == 2


def test_keyboard_focus_is_always_on_an_input(editor):
    """ComfyUI's front end leaves keys alone only when an <input> has the focus (see pose_editor_ui.js): after a
    click on the canvas, a button, the status line or a list, and on every button, the focus is on one."""
    focused = "document.activeElement.tagName + '.' + document.activeElement.className"
    editor.mouse.click(*point(editor, KNEE).values())
    assert editor.evaluate(focused) == "INPUT.mpe-keys"
    editor.click("[data-action=addPerson]")
    assert editor.evaluate(focused) == "INPUT.mpe-keys"
    editor.click(".mpe-status")
    assert editor.evaluate(focused) == "INPUT.mpe-keys"
    editor.keyboard.press("Escape")
    editor.mouse.click(*point(editor, 4).values())
    editor.keyboard.press("Delete")
    editor.select_option("select[title^='Missing']", label="right wrist")
    assert editor.evaluate(focused) == "INPUT.mpe-keys"
    tab_stops = editor.evaluate("[...document.querySelectorAll('#host *')].filter((e) => e.tabIndex >= 0)"
                                ".map((e) => e.tagName)")
    assert sorted(tab_stops) == ["INPUT"] * 10 + ["SELECT"] * 2  # the key box, 9 buttons; the lists (see above)
    editor.keyboard.press("q")  # not the editor's: nothing happens, nothing is typed into the key box
    assert editor.evaluate("editor.keys.value") == "" and editor.evaluate("editor.keys.readOnly")


def test_nudge_with_arrow_keys(editor):
    knee = point(editor, KNEE)
    editor.mouse.click(knee["x"], knee["y"])
    editor.keyboard.press("ArrowRight")
    editor.keyboard.press("Shift+ArrowUp")
    assert saved(editor)[36:39] == [147, 260, 1]


def test_malformed_saved_pose_shows_a_message_and_an_empty_pose(editor):
    for text in ("{not json", json.dumps([{"people": [{"pose_keypoints_2d": [1, 2, 3]}], "canvas_width": 64,
                                                      "canvas_height": 64}]), json.dumps({"people": []})):
        editor.evaluate("(t) => editor.load(t)", text)
        status = editor.inner_text(".mpe-status")
        assert status.startswith("The saved pose could not be read") and "empty pose" in status
        assert json.loads(editor.evaluate("editor.value")) == [{"people": [], "canvas_width": 512,
                                                                "canvas_height": 512}]
    editor.keyboard.press("n")  # still editable
    assert len(json.loads(editor.evaluate("editor.value"))[0]["people"]) == 1
    assert "could not be read" not in editor.inner_text(".mpe-status")


def test_input_pose_edits_and_reset(editor):
    """No edits: the value is "" (the node passes its input on); edits survive a new input until Reset."""
    detected = json.loads(pose_text())
    editor.evaluate("""(frames) => { editor.load(''); editor.setInput(poseModel.parsePose(frames),
                                                                     { canvas: [512, 768] }); }""", detected)
    assert editor.evaluate("editor.value") == ""
    assert editor.evaluate("editor.doc.frame.people[0].body[12]") == [292, 540, 1]  # scaled to the image canvas
    drag(editor, point(editor, KNEE), 10, 0)
    assert json.loads(editor.evaluate("editor.value"))[0]["canvas_width"] == 512
    detected[0]["people"] = []
    editor.evaluate("(f) => editor.setInput(poseModel.parsePose(f), { canvas: [512, 768] })", detected)
    assert "input changed" in editor.inner_text(".mpe-status") and editor.evaluate("editor.value") != ""
    editor.click("[data-action=reset]")
    assert editor.evaluate("editor.value") == "" and editor.evaluate("editor.doc.frame.people.length") == 0


def test_model_reads_and_writes_what_python_does(page):
    """Normalised comfyui_controlnet_aux JSON -> pixels, the same numbers as completion/pose_format.py."""
    normalised = [{"people": [{"pose_keypoints_2d": [v for p in BODY for v in ((p[0] / W, p[1] / H, 1.0) if p
                                                                              else (0.0, 0.0, 0.0))]}],
                   "canvas_width": W, "canvas_height": H}]
    written = page.evaluate("(v) => poseModel.serialisePose(poseModel.parsePose(v))", normalised)
    from masactrl_suite.completion import pose_format as fmt

    ours = fmt.parse_pose_keypoint(normalised)[0]["people"][0]["pose_keypoints_2d"]
    assert written[0]["people"][0]["pose_keypoints_2d"] == pytest.approx(ours)
    assert written[0]["people"][0]["hand_left_keypoints_2d"] is None
    assert fmt.parse_pose_keypoint(written) == fmt.parse_pose_keypoint(normalised)
    error = page.evaluate("() => { try { poseModel.parsePose('[]'); } catch (e) { return e.message; } }")
    assert "empty list" in error


# ----------------------------------------------------------------------------------------------------
# Inside the real ComfyUI: the example workflow, edited through the widget, run


@pytest.fixture(scope="module")
def comfy_page(browser):
    """A ComfyUI server (subprocess) with random-weight models under the workflow's names and the pack in a
    folder of another name; its front end open in the module's chromium."""
    reason = comfyui_missing_reason()
    if reason:
        pytest.skip(reason)
    from comfy_harness import ComfyServer

    base = Path(tempfile.mkdtemp(prefix="masactrl-pose-comfy-"))
    try:
        # in a subprocess: ComfyUI's start-up runs asyncio, which playwright's running loop forbids here
        prepare = [sys.executable, Path(__file__).with_name("pose_editor_page.py"), "--prepare", str(base)]
        subprocess.run(prepare, check=True, env={**os.environ, "COMFYUI_PATH": str(COMFYUI_PATH)}, timeout=300)
        with ComfyServer(COMFYUI_PATH, PACK_DIR, base, pack_name=PACK_FOLDER) as server:
            server.post("/settings/Comfy.TutorialCompleted", True)
            tab = browser.new_page(viewport={"width": 1600, "height": 1000})
            tab.errors = []
            tab.goto(server.url)
            tab.wait_for_function("() => !!(window.app?.graph && window.app.canvas && window.app.vueAppReady"
                                  " && window.LiteGraph?.registered_node_types?.MasaCtrlPoseEditor)", timeout=90_000)
            tab.on("pageerror", lambda error: tab.errors.append(str(error)))  # after the front end's own start
            tab.on("dialog", lambda dialog: (tab.errors.append(f"dialog: {dialog.message}"), dialog.dismiss()))
            yield tab, server
            tab.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_example_workflow_edited_in_comfyui_renders_the_edit(comfy_page):
    page, server = comfy_page
    editor = f"{editor_node(page)}.masactrlPoseEditor"
    assert load_workflow(page) == 17
    page.wait_for_timeout(500)
    assert not page.locator(".p-toast-message").all_inner_texts()  # e.g. "Invalid workflow against zod schema"
    first = run_and_wait(page, server)
    assert first["status"]["status_str"] == "success", f"{first['status']}\n{server.log_tail()}"
    # the node received the detection (random weights: nobody) and the extended photo behind it
    page.wait_for_function(f"{editor}.background !== null && {editor}.input !== null")
    assert page.evaluate(f"{editor}.doc.frame.width") == 128 and page.evaluate(f"{editor}.doc.frame.height") == 128
    focus_editor(page)
    add_person_and_edit(page)
    knee = page.evaluate(f"{editor}.doc.frame.people[0].body[12]")
    assert knee[0] > 64 + 0.07 * 77 + 5  # moved right of the template's place (canvas centre + 0.07 * size)
    # the edit is the node's saved value: in the workflow, and in the prompt
    workflow = json.loads(page.evaluate("JSON.stringify(app.graph.serialize())"))
    node = next(n for n in workflow["nodes"] if n["type"] == "MasaCtrlPoseEditor")
    assert json.loads(node["widgets_values"][0]) == json.loads(page.evaluate(f"{editor}.value"))
    second = run_and_wait(page, server)
    assert second["status"]["status_str"] == "success", f"{second['status']}\n{server.log_tail()}"
    preview = next(i for i, n in second["prompt"][2].items() if n["class_type"] == "PreviewImage")
    image = second["outputs"][preview]["images"][0]
    from PIL import Image

    with Image.open(server.base / image["type"] / image["subfolder"] / image["filename"]) as png:
        rendered = png.convert("RGB")
    assert rendered.size == (128, 128)
    assert rendered.getpixel((int(knee[0]), int(knee[1]))) == (0, 0, 255)  # the left knee where it was dragged
    saved = next(i for i, n in second["prompt"][2].items() if n["class_type"] == "SaveImage")
    assert second["outputs"][saved]["images"]  # ControlNet inpainting ran to the end
    # Ctrl+Z on the canvas is the front end's own undo: the drag was one step of it. The graph reloads (a new
    # node), the pose is the one before the drag, and the editor shows the last run's input and image again.
    page.evaluate(f"window.previousEditor = {editor}")
    page.locator("#graph-canvas").focus()
    page.keyboard.press("Control+z")
    page.wait_for_function(f"{editor} !== window.previousEditor && {editor}.background !== null", timeout=10_000)
    assert page.evaluate(f"{editor}.input") == [{"people": [], "width": 128, "height": 128}]
    assert page.evaluate(f"{editor}.doc.frame.people[0].body[12]")[0] == pytest.approx(64 + 0.07 * 77, abs=0.5)
    assert not page.errors, page.errors


def test_malformed_saved_pose_in_comfyui_keeps_the_graph(comfy_page):
    page, _ = comfy_page
    workflow = json.loads((PACK_DIR / "example_workflows" / f"{WORKFLOW}.json").read_text())
    node = next(n for n in workflow["nodes"] if n["type"] == "MasaCtrlPoseEditor")
    node["widgets_values"] = ['[{"people": [{"pose_keypoints_2d": [1, 2]}]}']
    assert load_workflow(page, json.dumps(workflow)) == 17
    status = page.locator(".masactrl-pose-editor .mpe-status").inner_text()
    assert status.startswith("The saved pose could not be read")
    assert json.loads(page.evaluate(f"{editor_node(page)}.widgets[0].value"))[0]["people"] == []
    assert not page.errors, page.errors


def test_editor_keys_never_reach_the_graph_in_comfyui(comfy_page):
    """With the editor focused, Ctrl+Z/Ctrl+Y undo and redo the pose, Del deletes a point and letters are the
    editor's: the front end neither reloads the graph (its change tracker's undo), nor deletes the selected node
    (Del), nor runs its shortcuts (Q, F); each edit is one step of the workflow's own history; the edits are
    saved with the workflow and come back when it is loaded."""
    page, _ = comfy_page
    node = editor_node(page)
    editor = f"{node}.masactrlPoseEditor"
    assert load_workflow(page) == 17
    focus_editor(page)
    # A change of another node that the change tracker recorded: a Ctrl+Z reaching it would reload the graph
    # without it. The editor node is selected, so a Del reaching the canvas would delete it.
    page.evaluate(f"""() => {{
      const seed = app.graph.nodes.find((n) => n.type === 'KSampler').widgets.find((w) => w.name === 'seed');
      app.canvas.emitBeforeChange(); seed.value = 4242; app.canvas.emitAfterChange();
      app.canvas.selectNode({node});
      window.before = {{ editor: {editor}, sidebar: app.extensionManager.sidebarTab.activeSidebarTabId }};
    }}""")
    unchanged = json.loads(page.evaluate(GRAPH_BUT_POSE_JS))
    add_person_and_edit(page)

    def knee(index=12):  # the left knee, or another body point, of the person added
        return page.evaluate(f"{editor}.doc.frame.people[0].body[{index}]")

    placed = knee()
    press_in_editor(page, (0, "body", 13), "Delete")
    assert knee(13) == [0, 0, 0]  # the left ankle
    press_in_editor(page, None, "Control+z")
    assert knee(13)[2] == 1
    press_in_editor(page, None, "Control+z")
    assert knee()[0] == pytest.approx(placed[0] - 40 / page.evaluate(f"{editor}.view.scale"), abs=0.5)
    press_in_editor(page, None, "Control+y")
    assert knee() == placed
    press_in_editor(page, (0, "body", 12), "ArrowRight", "Shift+ArrowDown", "h")
    assert knee() == [placed[0] + 1, placed[1] + 10, 0]  # nudged, hidden
    press_in_editor(page, None, "r", "n", "m", "x", "q", "f")  # restore; add, mirror, remove a person; not ours
    assert knee()[2] == 1 and page.evaluate(f"{editor}.doc.frame.people.length") == 1
    # no node deleted, no widget value, mode or flag changed, no graph undo
    assert json.loads(page.evaluate(GRAPH_BUT_POSE_JS)) == unchanged
    assert page.evaluate(f"{editor} === window.before.editor")  # the node was not recreated by a graph reload
    assert page.evaluate("app.extensionManager.sidebarTab.activeSidebarTabId === window.before.sidebar")
    assert not page.evaluate("app.extensionManager.focusMode")
    value = page.evaluate(f"{editor}.value")
    assert json.loads(value)[0]["people"][0]["pose_keypoints_2d"][36:39] == [placed[0] + 1, placed[1] + 10, 1]
    # every edit went into the front end's own history: the state it would restore or keep holds the pose
    tracker = "app.extensionManager.workflow.activeWorkflow.changeTracker"
    recorded = page.evaluate(f"{tracker}.activeState.nodes.find((n) => n.type === 'MasaCtrlPoseEditor')"
                             ".widgets_values[0]")
    assert recorded == value and page.evaluate("app.extensionManager.workflow.activeWorkflow.isModified")
    reloaded = page.evaluate(f"""async () => {{
      const saved = JSON.stringify(app.graph.serialize());
      await app.loadGraphData(JSON.parse(saved));
      return [{editor} !== window.before.editor, {editor}.value, {node}.widgets[0].value];
    }}""")
    assert reloaded == [True, value, value]
    assert json.loads(page.evaluate(GRAPH_BUT_POSE_JS)) == unchanged
    assert not page.errors, page.errors


# The graph as saved, less the pose editor's value and the view: nodes by id (a click brings a node to the front
# of the list), their widget values, modes (bypass), flags (collapsed, pinned) and links.
GRAPH_BUT_POSE_JS = """() => {
  const graph = app.graph.serialize();
  return JSON.stringify([graph.links, graph.nodes.sort((a, b) => a.id - b.id).map((n) => [n.id, n.type, n.mode,
    n.flags, n.type === 'MasaCtrlPoseEditor' ? null : n.widgets_values])]);
}"""
