"""(Re)generate example_workflows/*.json in ComfyUI's UI format, exactly as the browser's Export writes it.

The graphs are built inside the real ComfyUI front end (LiteGraph.createNode, node.connect), then
exported the way the "Export" menu does: `app.graphToPrompt()`, the view (`extra.ds`) added, and
`JSON.stringify(workflow, null, 2)` run INSIDE the page, so no `undefined` is turned into `null` on
the way out (the front end rejects such files with a zod-schema alert on every load).
The thumbnails (<name>.jpg) are diagrams drawn by scripts/draw_template_thumbnails.py.

    python scripts/export_example_workflows.py            # needs ComfyUI at $COMFYUI_PATH (~/ComfyUI)

Needs Debian's chromium (/usr/bin/chromium) and `pip install playwright` (never `playwright install`).
The server runs isolated under a temporary --base-directory with this pack symlinked into its
custom_nodes; nothing is written into the ComfyUI checkout.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PACK_DIR / "tests"))
sys.path.insert(0, str(PACK_DIR / "scripts"))

from example_graphs_dit import flux_consistent_synthesis, sd35_consistent_synthesis
from example_graphs_eval import CLIP_MODEL, schedule_sweep
from example_graphs_flux_photo import flux_fill_complete_cropped_photo, flux_real_photo_editing
from example_graphs_masks import PHOTO, mask_guided_synthesis, real_photo_editing
from example_graphs_photo import (
    BLIP_MODEL,
    CROPPED_PHOTO,
    MASKED_PHOTO,
    blip_caption,
    complete_cropped_photo,
    extend_canvas,
    grid_outpaint,
    repaint_harmonise,
)
from example_graphs_pose import POSE_PHOTO, pose_repair
from workflow_graph import CHECKPOINT, MODEL_DOWNLOADS, NEGATIVE, NOTE, OPENPOSE_CONTROLNET, POSITIVE, node

from comfy_harness import CHROMIUM_FLAGS, CHROMIUM_PATH, ComfyServer

OUT_DIR = PACK_DIR / "example_workflows"
SOURCE_POSE = "masactrl_source_pose.png"
TARGET_POSE = "masactrl_target_pose.png"
SOURCE_PROMPT = "a photo of a corgi"
TARGET_PROMPT = "a photo of a corgi jumping"

# Columns of the layout (compact: the whole graph fits a 1280x800 window at a readable zoom).
C0, C1, C2, C3, C4 = 0, 400, 780, 1120, 1430

NOTE_SYNTHESIS = f"""MasaCtrl: consistent synthesis (Cao et al., ICCV 2023)

One batch of two images: image 0 is the source ("{SOURCE_PROMPT}"), image 1 the target ("{TARGET_PROMPT}").

- Batch Conditioning (MasaCtrl) stacks the two prompts along the batch.
- Latent Batch Seed Behavior = fixed starts both images from the same noise.
- MasaCtrl: from step 4 on, the target's self-attention in the decoder (layers 10-15) reads keys and values from the source, so the target keeps the source's corgi (identity, fur, colours) while its own prompt changes the action.

Paper settings: any SD1.5 checkpoint, DDIM 50 steps, CFG 7.5. Change the seed to get another pair.
Model: {CHECKPOINT} in models/checkpoints (the Missing Models dialog offers it)."""

NOTE_POSE = f"""MasaCtrl + ControlNet OpenPose: same subject, new pose

As the consistent-synthesis example (image 0 = source, image 1 = target, same noise, MasaCtrl from step 4), plus pose control:

- {SOURCE_POSE} (standing) and {TARGET_POSE} (jumping) are OpenPose skeletons that the pack puts in ComfyUI/input; replace them with your own poses, the same size as the output.
- Image Batch stacks them, so ControlNet hint 0 guides image 0 and hint 1 guides image 1.
- Apply ControlNet works on the batched positive and on the negative; model: {OPENPOSE_CONTROLNET} in models/controlnet.

MasaCtrl keeps the target's look consistent with the source while ControlNet moves it into the target pose."""


def consistent_synthesis(pose=False):
    """The node and link list of one example; `pose` adds the ControlNet OpenPose branch."""
    nodes = [
        node("note", "Note", [C0, 0], {"text": NOTE_POSE if pose else NOTE_SYNTHESIS}, "About this workflow",
              [360, 300 if pose else 330], **NOTE),
        node("ckpt", "CheckpointLoaderSimple", [C0, 380 if pose else 410], {"ckpt_name": CHECKPOINT},
              size=[315, 98]),
        node("latent", "EmptyLatentImage", [C0, 530 if pose else 560], {"width": 512, "height": 512, "batch_size": 2}),
        node("source", "CLIPTextEncode", [C1, 0], {"text": SOURCE_PROMPT}, "Source prompt (image 0)",
              [340, 110], **POSITIVE),
        node("target", "CLIPTextEncode", [C1, 150], {"text": TARGET_PROMPT}, "Target prompt (image 1)",
              [340, 110], **POSITIVE),
        node("negative", "CLIPTextEncode", [C1, 300], {"text": ""}, "Negative prompt", [340, 110], **NEGATIVE),
        node("seed_behavior", "LatentBatchSeedBehavior", [C1, 450], {"seed_behavior": "fixed"},
              "Same noise for source and target", [315, 58]),
        node("masactrl", "MasaCtrlMutualSelfAttention", [C2, 0], size=[300, 322]),
        node("batch", "MasaCtrlBatchConditioning", [C2, 370], size=[260, 46]),
        node("sampler", "KSampler", [C3, 260 if pose else 0],
              {"seed": 42, "control_after_generate": "fixed", "steps": 50, "cfg": 7.5, "sampler_name": "ddim",
               "scheduler": "ddim_uniform", "denoise": 1.0}, size=[270, 262]),
        node("decode", "VAEDecode", [C4, 0] if pose else [C3, 310]),
        node("save", "SaveImage", [C4, 90] if pose else [C4, 0], {"filename_prefix": "MasaCtrl"}, size=[300, 320]),
    ]
    links = [
        ("ckpt", "MODEL", "masactrl", "model"),
        ("ckpt", "CLIP", "source", "clip"),
        ("ckpt", "CLIP", "target", "clip"),
        ("ckpt", "CLIP", "negative", "clip"),
        ("source", "CONDITIONING", "batch", "source"),
        ("target", "CONDITIONING", "batch", "target"),
        ("latent", "LATENT", "seed_behavior", "samples"),
        ("masactrl", "MODEL", "sampler", "model"),
        ("seed_behavior", "LATENT", "sampler", "latent_image"),
        ("sampler", "LATENT", "decode", "samples"),
        ("ckpt", "VAE", "decode", "vae"),
        ("decode", "IMAGE", "save", "images"),
    ]
    if not pose:
        links += [("batch", "CONDITIONING", "sampler", "positive"), ("negative", "CONDITIONING", "sampler", "negative")]
        return {"nodes": nodes, "links": links}
    nodes += [
        node("controlnet", "ControlNetLoader", [C2, 470], {"control_net_name": OPENPOSE_CONTROLNET}, size=[315, 58]),
        node("source_pose", "LoadImage", [C0, 690], {"image": SOURCE_POSE}, "Source pose (image 0)", [300, 300]),
        node("target_pose", "LoadImage", [C1, 560], {"image": TARGET_POSE}, "Target pose (image 1)", [300, 300]),
        node("poses", "ImageBatch", [C2, 580], title="Pose batch: source, target", size=[240, 46]),
        node("apply", "ControlNetApplyAdvanced", [C3, 0],
              {"strength": 1.0, "start_percent": 0.0, "end_percent": 1.0}, size=[270, 186]),
    ]
    links += [
        ("source_pose", "IMAGE", "poses", "image1"),
        ("target_pose", "IMAGE", "poses", "image2"),
        ("batch", "CONDITIONING", "apply", "positive"),
        ("negative", "CONDITIONING", "apply", "negative"),
        ("controlnet", "CONTROL_NET", "apply", "control_net"),
        ("poses", "IMAGE", "apply", "image"),
        ("apply", "positive", "sampler", "positive"),
        ("apply", "negative", "sampler", "negative"),
    ]
    return {"nodes": nodes, "links": links}


WORKFLOWS = {
    "masactrl_consistent_synthesis": lambda: consistent_synthesis(pose=False),
    "masactrl_pose_controlnet": lambda: consistent_synthesis(pose=True),
    "masactrl_flux_consistent_synthesis": flux_consistent_synthesis,
    "masactrl_sd35_consistent_synthesis": sd35_consistent_synthesis,
    "masactrl_mask_guided_synthesis": mask_guided_synthesis,
    "masactrl_real_photo_editing": real_photo_editing,
    "masactrl_flux_real_photo_editing": flux_real_photo_editing,
    "masactrl_flux_fill_complete_cropped_photo": flux_fill_complete_cropped_photo,
    "masactrl_pose_repair": pose_repair,
    "masactrl_complete_cropped_photo": complete_cropped_photo,
    "masactrl_blip_caption": blip_caption,
    "masactrl_grid_outpaint": grid_outpaint,
    "masactrl_extend_canvas": extend_canvas,
    "masactrl_repaint_harmonise": repaint_harmonise,
    "masactrl_schedule_sweep": schedule_sweep,
}
# What covers the canvas in a corner of front end 1.27: the minimap and the zoom/fit buttons.
OVERLAYS = ".litegraph-minimap, .p-buttongroup-vertical"
# The window the view is fitted to (the smallest common laptop screen).
FIT_VIEWPORT = {"width": 1280, "height": 800}

# Runs in the page: build the graph with LiteGraph, then export it the way the Export menu does.
BUILD_AND_EXPORT_JS = """
async (spec) => {
  const OVERLAYS = spec.overlays;
  await app.loadGraphData(window.comfyAPI.defaultGraph.blankGraph);  // what "New" does in the UI
  const graph = app.graph;
  const byKey = {};
  for (const n of spec.nodes) {
    const node = LiteGraph.createNode(n.type);
    if (!node) throw new Error(`node type ${n.type} is not registered`);
    graph.add(node);
    node.pos = n.pos;
    if (n.title) node.title = n.title;
    for (const [name, value] of Object.entries(n.widgets)) {
      const widget = (node.widgets ?? []).find((w) => w.name === name);
      if (!widget) throw new Error(`${n.type} has no widget ${name}`);
      widget.value = value;
    }
    const auto = node.computeSize();
    node.setSize(n.size ?? [Math.ceil(Math.max(node.size[0], auto[0])), Math.ceil(Math.max(node.size[1], auto[1]))]);
    if (n.color) node.color = n.color;
    if (n.bgcolor) node.bgcolor = n.bgcolor;
    if (n.models.length) node.properties.models = n.models;
    byKey[n.key] = node;
  }
  for (const [from, output, to, input] of spec.links) {
    const src = byKey[from], dst = byKey[to];
    const o = src.findOutputSlot(output), i = dst.findInputSlot(input);
    if (o < 0 || i < 0) throw new Error(`no slot ${from}.${output} -> ${to}.${input}`);
    if (!src.connect(o, dst, i)) throw new Error(`could not link ${from}.${output} -> ${to}.${input}`);
  }
  // Open the file with the whole graph in view at 1280x800 (and so at any larger window): the largest scale
  // at which every node lies inside the canvas and clear of the minimap and zoom buttons in its corner.
  const margin = 16;
  const rect = app.canvas.canvas.getBoundingClientRect();
  const covers = [...document.querySelectorAll(OVERLAYS)].map((e) => e.getBoundingClientRect())
    .filter((r) => r.width > 0 && r.height > 0);
  const boxes = graph.nodes.map((n) => [n.pos[0], n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT,
                                        n.pos[0] + n.size[0], n.pos[1] + n.size[1]]);
  const x0 = Math.min(...boxes.map((b) => b[0])), y0 = Math.min(...boxes.map((b) => b[1]));
  const fits = (scale) => boxes.every(([a, b, c, d]) => {
    const [l, t] = [rect.left + margin + (a - x0) * scale, rect.top + margin + (b - y0) * scale];
    const [r, u] = [rect.left + margin + (c - x0) * scale, rect.top + margin + (d - y0) * scale];
    return r <= rect.right - margin && u <= rect.bottom - margin
      && covers.every((o) => r <= o.left || l >= o.right || u <= o.top || t >= o.bottom);
  });
  let scale = 1;
  while (scale > 0.3 && !fits(scale)) scale = Math.round((scale - 0.005) * 1000) / 1000;
  app.canvas.ds.scale = scale;
  app.canvas.ds.offset = [Math.round(-x0 + margin / scale), Math.round(-y0 + margin / scale)];
  graph.setDirtyCanvas(true, true);
  // = workflowService.exportWorkflow(filename, "workflow") of the Export menu.
  const p = await app.graphToPrompt();
  p.workflow.extra ??= {};
  p.workflow.extra.ds = { scale: app.canvas.ds.scale, offset: [...app.canvas.ds.offset] };
  return JSON.stringify(p.workflow, null, 2);
}
"""


def _placeholder_inputs(base: Path):
    """Empty model files and small images under the names the workflows pick, so the combos offer them."""
    from PIL import Image

    for folder in ("models/checkpoints", "models/controlnet", "input"):
        (base / folder).mkdir(parents=True, exist_ok=True)
    for name, download in MODEL_DOWNLOADS.items():  # every model file a template picks, empty
        (base / "models" / download["directory"]).mkdir(parents=True, exist_ok=True)
        (base / "models" / download["directory"] / name).touch()
    (base / "models" / "blip" / BLIP_MODEL).mkdir(parents=True)  # listed by Load BLIP Caption Model
    (base / "models" / "clip_vision" / CLIP_MODEL).mkdir(parents=True)  # and by Load Alignment Score Models

    for name in (SOURCE_POSE, TARGET_POSE, PHOTO, POSE_PHOTO, CROPPED_PHOTO, MASKED_PHOTO):
        Image.new("RGB", (64, 64)).save(base / "input" / name)


def titled(name: str, spec: dict) -> dict:
    """The note of the workflow titled with the template's title (web/example_templates.json): the one place the
    front end shows it once the template is open (its Templates browser shows only the file name)."""
    manifest = json.loads((PACK_DIR / "web" / "example_templates.json").read_text())["templates"]
    title = next(t["title"] for t in manifest if t["name"] == name)
    for item in spec["nodes"]:
        if item["key"] == "note":
            item["title"] = f"About: {title}"
    return spec


def open_comfy_page(playwright, server):
    """Headless chromium on the server's front end, canvas ready; returns (browser, page, page_errors)."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM_PATH, args=CHROMIUM_FLAGS)
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("dialog", lambda dialog: (errors.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    page.goto(server.url)
    page.wait_for_function("() => !!(window.app?.graph && window.app.canvas && window.app.vueAppReady"
                           " && window.LiteGraph?.registered_node_types?.MasaCtrlMutualSelfAttention)",
                           timeout=90_000)
    return browser, page, errors


def export_all(comfy_path: Path, out_dir: Path = OUT_DIR, names=None) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="masactrl-export-") as tmp:
        base = Path(tmp)
        _placeholder_inputs(base)
        with ComfyServer(comfy_path, PACK_DIR, base) as server:
            server.post("/settings/Comfy.TutorialCompleted", True)
            with sync_playwright() as playwright:
                browser, page, _ = open_comfy_page(playwright, server)
                page.set_viewport_size(FIT_VIEWPORT)
                try:
                    for name in names or WORKFLOWS:
                        spec = {**titled(name, WORKFLOWS[name]()), "overlays": OVERLAYS}
                        text = page.evaluate(BUILD_AND_EXPORT_JS, spec)
                        path = out_dir / f"{name}.json"
                        path.write_text(text + "\n")
                        written.append(path)
                        print(f"wrote {path}")
                finally:
                    browser.close()
    return written


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--comfyui", type=Path,
                        default=Path(os.environ.get("COMFYUI_PATH", "~/ComfyUI")).expanduser(),
                        help="ComfyUI checkout (default: $COMFYUI_PATH or ~/ComfyUI)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output folder (default: example_workflows/)")
    parser.add_argument("names", nargs="*", help=f"workflows to write (default: all of {', '.join(WORKFLOWS)})")
    args = parser.parse_args()
    unknown = set(args.names) - set(WORKFLOWS)
    if unknown:
        parser.error(f"unknown workflow(s) {sorted(unknown)}; choose from {list(WORKFLOWS)}")
    if not (args.comfyui / "main.py").is_file():
        sys.exit(f"no ComfyUI checkout at {args.comfyui}; pass --comfyui or set COMFYUI_PATH")
    export_all(args.comfyui, args.out, args.names or None)


if __name__ == "__main__":
    main()
