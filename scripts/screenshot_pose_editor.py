"""Screenshots of the pose editor for the README, taken in the real ComfyUI front end (headless chromium):
the example workflow masactrl_pose_repair loaded, run once, a person added and the legs edited.

    python scripts/screenshot_pose_editor.py      # needs ComfyUI at $COMFYUI_PATH (~/ComfyUI)
    python scripts/screenshot_pose_editor.py --prepare DIR   # only the models and photo, into DIR

Writes docs/images/pose_editor.png (the node) and docs/images/pose_repair_workflow.png (the graph).
Random-weight models (SD1.5, openpose ControlNet, OpenPose body) are made in a temporary --base-directory;
the same helpers drive tests/test_pose_editor_browser.py.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PACK_DIR / "tests"))
sys.path.insert(0, str(PACK_DIR / "scripts"))

from comfy_harness import CHROMIUM_FLAGS, CHROMIUM_PATH  # noqa: E402
from example_graphs_pose import OPENPOSE_CONTROLNET, POSE_PHOTO  # noqa: E402

WORKFLOW = "masactrl_pose_repair"
PACK_FOLDER = "any-folder-name"  # the editor must not depend on what the pack's folder is called
OUT = PACK_DIR / "docs" / "images"


def save_openpose_body(folder: Path):
    """Random weights in controlnet_aux's body network, saved as lllyasviel's body_pose_model.pth."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from controlnet_aux.open_pose.model import bodypose_model
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    state = bodypose_model().state_dict()
    torch.save({k.split(".", 1)[1]: v for k, v in state.items()}, folder / "body_pose_model.pth")


def draw_photo(path: Path, size=(128, 96)):
    """A stand-in photo: sky, ground and a person cut off above the knees (drawn for a 128 x 96 frame)."""
    from PIL import Image, ImageDraw

    k = size[0] / 128
    image = Image.new("RGB", size, (150, 190, 230))
    draw = ImageDraw.Draw(image)
    box = lambda *xy: [v * k for v in xy]  # noqa: E731
    draw.rectangle(box(0, 72, 128, 96), fill=(110, 140, 90))
    draw.ellipse(box(56, 6, 72, 24), fill=(225, 185, 150))
    for rect in ((51, 25, 77, 96), (43, 27, 50, 66), (78, 27, 85, 66)):
        draw.rectangle(box(*rect), fill=(60, 80, 140))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def prepare_base(base: Path, photo_size=(128, 96)):
    """Models and the photo under the names the workflow uses; ComfyUI must be importable (start_comfy)."""
    from comfy_harness import save_sd15_checkpoint, save_sd15_controlnet
    from example_graphs_masks import CHECKPOINT

    save_sd15_checkpoint(base / "models" / "checkpoints" / CHECKPOINT)
    save_sd15_controlnet(base / "models" / "controlnet" / OPENPOSE_CONTROLNET)
    save_openpose_body(base / "models" / "openpose")
    draw_photo(base / "input" / POSE_PHOTO, photo_size)


def open_page(playwright, server, viewport=(1600, 1000)):
    browser = playwright.chromium.launch(executable_path=CHROMIUM_PATH, args=CHROMIUM_FLAGS)
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("dialog", lambda dialog: (page.errors.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    page.goto(server.url)
    page.wait_for_function("() => !!(window.app?.graph && window.app.canvas && window.app.vueAppReady"
                           " && window.LiteGraph?.registered_node_types?.MasaCtrlPoseEditor)", timeout=90_000)
    page.errors.clear()  # the front end itself logs one at start-up
    return browser, page


# Load the template as the Templates dialog does; small sizes and one step for the CPU.
LOAD_JS = """
async ({folder, name, text, bottom}) => {
  const json = text ? JSON.parse(text)
    : await fetch(app.api.apiURL(`/workflow_templates/${folder}/${name}.json`)).then((r) => r.json());
  await app.loadGraphData(json, true, true, name);
  const set = (type, values) => {
    for (const node of app.graph.nodes.filter((n) => n.type === type)) {
      for (const [name, value] of Object.entries(values)) node.widgets.find((w) => w.name === name).value = value;
    }
  };
  set("MasaCtrlExtendCanvas", {bottom});
  set("MasaCtrlOpenPoseDetect", {resolution: 128});
  set("KSampler", {steps: 1});
  return app.graph.nodes.length;
}
"""


def load_workflow(page, text=None, bottom=32):
    return page.evaluate(LOAD_JS, {"folder": PACK_FOLDER, "name": WORKFLOW, "text": text, "bottom": bottom})


def editor_node(page) -> str:
    return "app.graph.nodes.find((n) => n.type === 'MasaCtrlPoseEditor')"


def focus_editor(page, scale=1.0):
    """Zoom the canvas onto the Pose Editor node and wait for its widget to be laid out there."""
    page.evaluate(f"""(scale) => {{
      const node = {editor_node(page)};
      app.canvas.ds.scale = scale;
      app.canvas.ds.offset = [-node.pos[0] + 40 / scale, -node.pos[1] + 60 / scale];
      app.canvas.setDirty(true, true);
    }}""", scale)
    page.wait_for_timeout(600)


def run_and_wait(page, server, timeout=240.0) -> dict:
    """Queue the graph from the page (as the Run button does) and wait for its history entry."""
    before = set(server.get("/api/history"))
    page.evaluate("app.queuePrompt(0, 1)")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = set(server.get("/api/history")) - before
        if new:
            entry = server.get(f"/api/history/{new.pop()}")
            return next(iter(entry.values()))
        time.sleep(0.5)
    raise TimeoutError(f"the graph did not finish in {timeout:.0f} s:\n{server.log_tail()}")


def add_person_and_edit(page):
    """+ Person in the widget, then drag the new person's left knee 40 screen px right; returns the editor."""
    page.locator(".masactrl-pose-editor button[data-action=addPerson]").click()
    knee = page.evaluate(f"{editor_node(page)}.masactrlPoseEditor.screenPoint(0, 'body', 12)")
    page.mouse.move(knee["x"], knee["y"])
    page.mouse.down()
    page.mouse.move(knee["x"] + 40, knee["y"], steps=8)
    page.mouse.up()


def main():
    from playwright.sync_api import sync_playwright

    from comfy_harness import ComfyServer, start_comfy

    comfy_path = Path(os.environ.get("COMFYUI_PATH", "~/ComfyUI")).expanduser()
    if not (comfy_path / "main.py").is_file():
        sys.exit(f"no ComfyUI checkout at {comfy_path}; set COMFYUI_PATH")
    start_comfy(comfy_path, PACK_DIR)
    if sys.argv[1:2] == ["--prepare"]:  # for tests/test_pose_editor_browser.py, whose event loop is busy
        prepare_base(Path(sys.argv[2]))
        return
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="masactrl-pose-shots-") as tmp:
        base = Path(tmp)
        prepare_base(base, photo_size=(384, 288))
        with ComfyServer(comfy_path, PACK_DIR, base, pack_name=PACK_FOLDER) as server:
            server.post("/settings/Comfy.TutorialCompleted", True)
            with sync_playwright() as playwright:
                browser, page = open_page(playwright, server, viewport=(2200, 1000))
                try:
                    load_workflow(page, bottom=96)
                    run_and_wait(page, server)
                    page.wait_for_function(f"{editor_node(page)}.masactrlPoseEditor.background !== null")
                    focus_editor(page)
                    add_person_and_edit(page)
                    page.locator(".masactrl-pose-editor").click(position={"x": 5, "y": 60})
                    page.keyboard.press("Escape")
                    run_and_wait(page, server)
                    box = page.evaluate(f"""() => {{
                      const n = {editor_node(page)}, [x, y] = app.canvas.ds.convertOffsetToCanvas(n.pos);
                      return [x - 10, y - 40, n.size[0] * app.canvas.ds.scale + 360, n.size[1] + 60];
                    }}""")
                    page.wait_for_timeout(500)
                    page.screenshot(path=str(OUT / "pose_editor.png"),
                                    clip=dict(zip(("x", "y", "width", "height"), box)))
                    page.evaluate("app.canvas.ds.scale = 0.6; app.canvas.ds.offset = [80, 100]; "
                                  "app.canvas.setDirty(true, true)")
                    page.wait_for_timeout(800)
                    page.screenshot(path=str(OUT / "pose_repair_workflow.png"))
                    print(json.dumps({"wrote": [str(OUT / "pose_editor.png"), str(OUT / "pose_repair_workflow.png")],
                                      "page_errors": page.errors}))
                finally:
                    browser.close()


if __name__ == "__main__":
    main()
