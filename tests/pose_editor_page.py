"""The pose editor in the real ComfyUI front end, driven through playwright: the example workflow
masactrl_pose_repair loaded, run, a person added and a knee dragged in the node's widget; and the random-weight
models and stand-in photo it needs. Shared by tests/test_pose_editor_browser.py and
scripts/screenshot_pose_editor.py.

    python tests/pose_editor_page.py --prepare DIR   # the models and photo into DIR (ComfyUI at $COMFYUI_PATH)

The test prepares in this subprocess because ComfyUI's start-up runs asyncio, which playwright's loop forbids.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from comfy_harness import save_sd15_checkpoint, save_sd15_controlnet, start_comfy

PACK_DIR = Path(__file__).resolve().parents[1]
WORKFLOW = "masactrl_pose_repair"
PACK_FOLDER = "any-folder-name"  # the editor must not depend on what the pack's folder is called


def workflow_file_names() -> dict:
    """The checkpoint, ControlNet and photo the example workflow picks, by the type of the node picking it."""
    graph = json.loads((PACK_DIR / "example_workflows" / f"{WORKFLOW}.json").read_text())
    loaders = ("CheckpointLoaderSimple", "ControlNetLoader", "LoadImage")
    return {n["type"]: n["widgets_values"][0] for n in graph["nodes"] if n["type"] in loaders}


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
    names = workflow_file_names()
    save_sd15_checkpoint(base / "models" / "checkpoints" / names["CheckpointLoaderSimple"])
    save_sd15_controlnet(base / "models" / "controlnet" / names["ControlNetLoader"])
    save_openpose_body(base / "models" / "openpose")
    draw_photo(base / "input" / names["LoadImage"], photo_size)


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
    """+ Person in the widget, then drag the new person's left knee 40 screen px right."""
    page.locator(".masactrl-pose-editor [data-action=addPerson]").click()
    knee = page.evaluate(f"{editor_node(page)}.masactrlPoseEditor.screenPoint(0, 'body', 12)")
    page.mouse.move(knee["x"], knee["y"])
    page.mouse.down()
    page.mouse.move(knee["x"] + 40, knee["y"], steps=8)
    page.mouse.up()


def press_in_editor(page, point, *keys):
    """Click a point of the pose ((person, part, index); None: no click) to focus and select it, then press the keys
    one by one, each followed by two frames: the front end's change tracker acts on keys in an animation frame."""
    if point is not None:
        at = page.evaluate(f"{editor_node(page)}.masactrlPoseEditor.screenPoint(...{json.dumps(list(point))})")
        page.mouse.click(at["x"], at["y"])
    for key in keys:
        page.keyboard.press(key)
        page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
        page.wait_for_timeout(50)


if __name__ == "__main__":
    if sys.argv[1:2] != ["--prepare"] or len(sys.argv) != 3:
        sys.exit(f"usage: python {sys.argv[0]} --prepare DIR")
    start_comfy(Path(os.environ.get("COMFYUI_PATH", "~/ComfyUI")).expanduser(), PACK_DIR)
    prepare_base(Path(sys.argv[2]))
