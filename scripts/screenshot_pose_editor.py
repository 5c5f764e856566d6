"""Screenshots of the pose editor for the README, taken in the real ComfyUI front end (headless chromium):
the example workflow masactrl_pose_repair loaded, run once, a person added and the legs edited.

    python scripts/screenshot_pose_editor.py      # needs ComfyUI at $COMFYUI_PATH (~/ComfyUI)

Writes docs/images/pose_editor.png (the node) and docs/images/pose_repair_workflow.png (the graph).
Random-weight models (SD1.5, openpose ControlNet, OpenPose body) are made in a temporary --base-directory;
the page is driven by tests/pose_editor_page.py, as in tests/test_pose_editor_browser.py.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PACK_DIR / "tests"))

from comfy_harness import CHROMIUM_FLAGS, CHROMIUM_PATH  # noqa: E402
from pose_editor_page import (PACK_FOLDER, add_person_and_edit, editor_node, focus_editor,  # noqa: E402
                              load_workflow, prepare_base, run_and_wait)

OUT = PACK_DIR / "docs" / "images"


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


def main():
    from playwright.sync_api import sync_playwright

    from comfy_harness import ComfyServer, start_comfy

    comfy_path = Path(os.environ.get("COMFYUI_PATH", "~/ComfyUI")).expanduser()
    if not (comfy_path / "main.py").is_file():
        sys.exit(f"no ComfyUI checkout at {comfy_path}; set COMFYUI_PATH")
    start_comfy(comfy_path, PACK_DIR)
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
