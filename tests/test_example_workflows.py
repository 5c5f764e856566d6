"""The example workflows (example_workflows/*.json): well-formed UI-format files that a real ComfyUI
lists as this pack's templates, loads in its front end without missing nodes, and runs.

The first group needs nothing but the files. The second starts a real ComfyUI server (subprocess,
isolated under a temporary --base-directory) with random-weight SD1.5 models saved under the names
the workflows use, opens its front end in headless chromium, loads each template the way the
Templates dialog does, converts it with app.graphToPrompt() and runs it shrunk to 64 px and 2 steps.
It is skipped, with the reason, without ComfyUI ($COMFYUI_PATH, default ~/ComfyUI), /usr/bin/chromium
or the playwright package. Regenerate the files with scripts/export_example_workflows.py.
"""
from __future__ import annotations

import ast
import copy
import json
import os
import shutil
import tempfile
import time
import urllib.parse
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import COMFYUI_PATH, PACK_DIR, comfyui_missing_reason

WORKFLOW_DIR = PACK_DIR / "example_workflows"
WORKFLOW_FILES = sorted(WORKFLOW_DIR.glob("*.json"))
# name -> whether it is the ControlNet pose variant; every file must be listed here and vice versa.
SYNTHESIS = {"masactrl_consistent_synthesis": False, "masactrl_pose_controlnet": True}
MASKS, PHOTO = "masactrl_mask_guided_synthesis", "masactrl_real_photo_editing"
EXPECTED = {**SYNTHESIS, MASKS: False, PHOTO: False}
# Needs OpenPose weights and its widget edited: loaded, edited and run in tests/test_pose_editor_browser.py.
POSE_REPAIR = "masactrl_pose_repair"
EXPECTED[POSE_REPAIR] = False
# Issue 4, photo completion: run shrunk like the others (BLIP: a tiny random-weight model in models/blip).
COMPLETE, CAPTION = "masactrl_complete_cropped_photo", "masactrl_blip_caption"
GRID, REPAINT = "masactrl_grid_outpaint", "masactrl_repaint_harmonise"
CANVAS = "masactrl_extend_canvas"
EXPECTED.update({COMPLETE: False, CAPTION: False, GRID: False, REPAINT: False, CANVAS: False})
# Issue 6, evaluation: the sweep over end_step (CLIP: a tiny random-weight model in models/clip_vision).
SWEEP = "masactrl_schedule_sweep"
EXPECTED[SWEEP] = False
# Diffusion transformers: no random-weight Flux or SD3.5 file can be made that ComfyUI's loaders read (they detect
# the full widths), so these are checked to load and to validate with every model file missing, as a new user
# meets them; MasaCtrl on tiny Flux/SD3 built from ComfyUI's classes runs in tests/test_dit_masactrl.py.
DIT = {"masactrl_flux_consistent_synthesis": {"UNETLoader": ["unet_name"], "DualCLIPLoader": ["clip_name1",
                                                                                             "clip_name2"],
                                              "VAELoader": ["vae_name"]},
       "masactrl_sd35_consistent_synthesis": {"CheckpointLoaderSimple": ["ckpt_name"]}}
DIT_SYNTHESIS = list(DIT)
# Issue 17, real photos on Flux: flow inversion + MasaCtrl, and Flux Fill completion (checked the same way; the
# pieces run on tiny Flux in tests/test_flow_inversion.py, test_repaint_flow.py and test_grid_dit.py).
FLUX_PHOTO, FLUX_FILL = "masactrl_flux_real_photo_editing", "masactrl_flux_fill_complete_cropped_photo"
DIT[FLUX_PHOTO] = DIT[FLUX_FILL] = DIT["masactrl_flux_consistent_synthesis"]
EXPECTED.update({name: False for name in DIT})
# Every template has a <name>.jpg thumbnail (the Templates dialog shows it), drawn by draw_template_thumbnails.py.
THUMBNAILS = sorted(EXPECTED)
# Order, titles and descriptions of the templates (read by web/template_order.js, the thumbnails and the README).
MANIFEST = json.loads((PACK_DIR / "web" / "example_templates.json").read_text())["templates"]
MAIN_TEMPLATE = "masactrl_consistent_synthesis"
# What SaveImage writes when run shrunk: (images, (width, height)); the MasaCtrl examples save source + target.
SAVED = {COMPLETE: (1, (64, 80)), CAPTION: (1, (64, 64)), GRID: (1, (64, 128)), REPAINT: (1, (64, 64)),
         CANVAS: (1, (64, 80))}
# The sweep saves its grid: 3 rows of 256 px cells (64 px images scaled up) under a header, 4 px gaps; the width
# follows the row labels' font.
SAVED[SWEEP] = (1, (None, 36 + 4 + 3 * (256 + 4)))  # header strip, gap, three 256 px rows
SOURCE_PROMPT, TARGET_PROMPT = "a photo of a corgi", "a photo of a corgi jumping"
# The folder the pack is cloned into; the server lists the templates under this name.
PACK_FOLDER = "comfyui-masactrl-suite"

# Nodes that exist only in the front end (the server never sees them).
FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
# Core ComfyUI nodes an example may use. Checked against the real server's /object_info below.
CORE_NODES = {
    "CheckpointLoaderSimple", "CLIPTextEncode", "EmptyLatentImage", "LatentBatchSeedBehavior", "KSampler",
    "KSamplerAdvanced", "VAEDecode", "VAEEncode", "SaveImage", "PreviewImage", "LoadImage", "ImageBatch",
    "ImageScale", "ControlNetLoader", "ControlNetApplyAdvanced", "ConditioningCombine", "LatentFromBatch",
    "RepeatLatentBatch", "SetLatentNoiseMask", "LoadImageMask", "PreviewAny", "SamplerCustom", "BasicScheduler",
    "MaskToImage",
    # the diffusion-transformer examples: ComfyUI's own loaders and Flux/SD3 nodes (nodes.py, comfy_extras)
    "UNETLoader", "DualCLIPLoader", "VAELoader", "EmptySD3LatentImage", "FluxGuidance", "ConditioningZeroOut",
    # the Flux photo examples: flow inversion's noise starts SamplerCustomAdvanced; Flux Fill's conditioning
    "SamplerCustomAdvanced", "BasicGuider", "KSamplerSelect", "InpaintModelConditioning",
}
WIDGET_KINDS = {"Int", "Float", "String", "Boolean", "Combo"}


def _ids(paths):
    return [p.stem for p in paths]


NOT_LITERAL = object()  # a default computed in code (e.g. the first model file found)


def _literal(node):
    try:
        return ast.literal_eval(node)
    except ValueError:
        return NOT_LITERAL


def pack_schemas() -> dict[str, list[tuple[str, str, object]]]:
    """{node_id: [(input name, io kind, default), ...]} read from the io.Schema(...) calls in nodes/*.py,
    without importing ComfyUI. An input with control_after_generate is followed by a pseudo-input
    ("<name>:control_after_generate", "Combo", "randomize"): the front end saves that widget's value too."""
    schemas = {}
    for path in sorted((PACK_DIR / "nodes").glob("*.py")):
        for call in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "Schema"):
                continue
            kwargs = {k.arg: k.value for k in call.keywords}
            if not isinstance(kwargs.get("node_id"), ast.Constant):
                continue
            inputs = []
            for item in getattr(kwargs.get("inputs"), "elts", []):
                # io.<Kind>.Input("name", default=..., ...)
                kind = item.func.value.attr if isinstance(item.func.value, ast.Attribute) else None
                options = {k.arg: k.value for k in item.keywords}
                name = ast.literal_eval(item.args[0])
                inputs.append((name, kind, None if "default" not in options else _literal(options["default"])))
                # the front end adds the control to INT inputs named seed/noise_seed unless told otherwise
                control = _literal(options["control_after_generate"]) if "control_after_generate" in options \
                    else (kind == "Int" and name in ("seed", "noise_seed"))
                if control is True:
                    inputs.append((f"{name}:control_after_generate", "Combo", "randomize"))
            schemas[kwargs["node_id"].value] = inputs
    return schemas


def load(path: Path) -> dict:
    return json.loads(path.read_text())


class Graph:
    """Index of a UI-format workflow: nodes by id, and what feeds each input."""

    def __init__(self, workflow):
        self.nodes = {n["id"]: n for n in workflow["nodes"]}
        self.links = {link[0]: link for link in workflow["links"]}

    def of_type(self, type_):
        return [n for n in self.nodes.values() if n["type"] == type_]

    def one(self, type_):
        found = self.of_type(type_)
        assert len(found) == 1, f"expected one {type_} node, found {len(found)}"
        return found[0]

    def source(self, node, input_name):
        """(origin node, origin slot) linked into `input_name` of `node`."""
        slot = next((i for i in node.get("inputs", []) if i["name"] == input_name), None)
        assert slot is not None and slot.get("link") is not None, f"{node['type']}.{input_name} is not linked"
        link = self.links[slot["link"]]
        return self.nodes[link[1]], link[2]


# ----------------------------------------------------------------------------------------------------
# The files alone


def test_expected_workflows_present():
    assert sorted(_ids(WORKFLOW_FILES)) == sorted(EXPECTED)


@pytest.mark.parametrize("node_id", sorted(pack_schemas()))
def test_every_node_has_a_help_page_naming_its_inputs(node_id):
    """ComfyUI shows web/docs/<node id>.md as the node's help; each widget and socket is explained there."""
    page = PACK_DIR / "web" / "docs" / f"{node_id}.md"
    assert page.is_file(), f"no help page {page}"
    text = page.read_text()
    missing = [name for name, _, _ in pack_schemas()[node_id] if ":" not in name and name not in text]
    assert not missing, f"{page.name} does not mention {missing}"


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=_ids(WORKFLOW_FILES))
def test_ui_format(path):
    workflow = load(path)
    assert isinstance(workflow.get("version"), (int, float))
    assert isinstance(workflow.get("nodes"), list) and workflow["nodes"]
    assert isinstance(workflow.get("links"), list) and workflow["links"]
    assert "output" not in workflow and "prompt" not in workflow  # not the API format
    for node in workflow["nodes"]:
        for key in ("id", "type", "pos", "size", "flags", "order", "mode", "properties"):
            assert key in node, f"node {node.get('id')} ({node.get('type')}) has no {key}"
    assert workflow["last_node_id"] >= max(n["id"] for n in workflow["nodes"])
    assert workflow["last_link_id"] >= max(link[0] for link in workflow["links"])


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=_ids(WORKFLOW_FILES))
def test_links_agree_with_node_slots(path):
    """The front end 'fixes' (and toasts about) links that disagree with the node slots."""
    workflow = load(path)
    graph = Graph(workflow)
    assert len(graph.links) == len(workflow["links"]), "duplicate link ids"
    for link_id, origin, origin_slot, target, target_slot, type_ in workflow["links"]:
        out = graph.nodes[origin]["outputs"][origin_slot]
        inp = graph.nodes[target]["inputs"][target_slot]
        assert link_id in out["links"] and inp["link"] == link_id, f"link {link_id} disagrees with its slots"
        if inp["type"] == "*":  # an input of any type (Preview Any): the front end saves the link as "*"
            assert type_ in ("*", out["type"]), f"link {link_id}: type {type_}, {out['type']} -> *"
            continue
        assert type_ == out["type"] == inp["type"], f"link {link_id}: type {type_}, {out['type']} -> {inp['type']}"
    for node in workflow["nodes"]:
        for inp in node.get("inputs", []):
            assert inp.get("link") is None or inp["link"] in graph.links
        for out in node.get("outputs", []):
            assert all(link in graph.links for link in out.get("links") or [])


# Where ComfyUI's workflow schema (zod, front end 1.27) accepts null; anywhere else a null (an
# `undefined` turned into null on its way out of the browser) gives an alert on every load.
NULLABLE = {("config",), ("extra",), ("nodes", "*", "inputs", "*", "link"), ("nodes", "*", "outputs", "*", "links")}


def _nulls(value, path=()):
    if value is None:
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _nulls(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nulls(item, path + (index,))


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=_ids(WORKFLOW_FILES))
def test_null_only_where_the_front_end_accepts_it(path):
    def allowed(p):
        if len(p) >= 3 and p[0] == "nodes" and p[2] == "widgets_values":
            return True  # widget values may be anything
        return tuple("*" if isinstance(k, int) else k for k in p) in NULLABLE

    bad = [p for p in _nulls(load(path)) if not allowed(p)]
    assert not bad, f"null where the front end expects a value or nothing: {bad}"


@pytest.mark.parametrize("name", THUMBNAILS)
def test_thumbnail(name):
    """A square JPEG diagram next to the workflow (the dialog shows a 256 px square), small enough to list fast."""
    from PIL import Image

    path = WORKFLOW_DIR / f"{name}.jpg"
    assert path.stat().st_size < 60_000, f"{path.name} is {path.stat().st_size} bytes"
    with Image.open(path) as image:
        assert image.format == "JPEG" and image.size == (512, 512), image
        low, high = image.convert("L").getextrema()
        assert high - low > 64, "a blank thumbnail"


def test_thumbnails_are_the_drawn_diagrams(tmp_path):
    """The shipped thumbnails are what scripts/draw_template_thumbnails.py draws now (regenerate after an edit)."""
    import sys

    from PIL import Image, ImageChops

    sys.path.insert(0, str(PACK_DIR / "scripts"))
    from diagram_kit import FONT_FILE
    from draw_template_thumbnails import draw_thumbnail

    if FONT_FILE is None:  # the shipped pictures' text is DejaVu Sans; another font draws other pixels
        pytest.skip("DejaVu Sans is not installed (apt-get install fonts-dejavu-core)")

    for name in THUMBNAILS:
        with Image.open(draw_thumbnail(name, tmp_path)) as drawn, Image.open(WORKFLOW_DIR / f"{name}.jpg") as shipped:
            difference = ImageChops.difference(drawn.convert("L"), shipped.convert("L"))
            mean = sum(i * n for i, n in enumerate(difference.histogram())) / (512 * 512)
            assert mean < 2, f"{name}.jpg differs from the drawing (mean {mean:.1f}): run draw_template_thumbnails.py"


def test_readme_shows_the_diagrams_and_lists_the_templates():
    """The README's pictures of MasaCtrl and of photo completion exist where it points, and its template table
    is the manifest's (order, title, description)."""
    import re

    readme = (PACK_DIR / "README.md").read_text()
    pictures = re.findall(r"!\[[^\]]*\]\((docs/images/[^)]+)\)", readme)
    assert {"docs/images/masactrl_diagram.png", "docs/images/photo_completion_pipeline.png"} <= set(pictures)
    assert all((PACK_DIR / picture).is_file() for picture in pictures), pictures
    rows = [f"| `{t['name']}` | {t['title']} | {t['description']} |" for t in MANIFEST]
    assert "\n".join(rows) in readme


def test_manifest_orders_and_describes_every_template():
    """Every template once, the main example first, a title and a one-line description each."""
    assert MANIFEST[0]["name"] == MAIN_TEMPLATE
    assert sorted(t["name"] for t in MANIFEST) == sorted(EXPECTED)
    for entry in MANIFEST:
        assert 8 <= len(entry["title"]) <= 60 and entry["title"] != entry["name"], entry
        assert 20 <= len(entry["description"]) <= 120 and "\n" not in entry["description"], entry


def test_every_thumbnail_has_its_workflow():
    assert sorted(p.stem for p in WORKFLOW_DIR.glob("*.jpg")) == sorted(THUMBNAILS)


def test_pack_node_ids_are_read_from_the_schema():
    schemas = pack_schemas()
    assert {"MasaCtrlMutualSelfAttention", "MasaCtrlBatchConditioning"} <= set(schemas)
    assert ("start_step", "Int", 4) in schemas["MasaCtrlMutualSelfAttention"]


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=_ids(WORKFLOW_FILES))
def test_node_types_are_core_or_this_pack(path):
    known = CORE_NODES | FRONTEND_ONLY | set(pack_schemas())
    unknown = sorted({n["type"] for n in load(path)["nodes"]} - known)
    assert not unknown, f"node types neither core ComfyUI nor this pack: {unknown}"


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=_ids(WORKFLOW_FILES))
def test_pack_nodes_hold_the_schema_widgets(path):
    """UI-format widget values are positional: a stale file shifts every value after a new input."""
    schemas = pack_schemas()
    for node in load(path)["nodes"]:
        if node["type"] in schemas:
            widgets = [(name, default) for name, kind, default in schemas[node["type"]] if kind in WIDGET_KINDS]
            values = node.get("widgets_values") or []
            assert len(values) == len(widgets), f"{node['type']}: {values} for widgets {widgets}"
            if node["type"] == "MasaCtrlMutualSelfAttention":  # the examples use the paper's defaults
                assert values == [default for _, default in widgets]


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=_ids(WORKFLOW_FILES))
def test_layout_flows_right_and_down_without_overlaps(path):
    """Every link runs to a node to the right, or (a column read top to bottom, to keep the graph compact
    enough for a 1280x800 window) to a node below; no node covers another."""
    workflow = load(path)
    graph = Graph(workflow)
    title = 30  # the title bar sits above pos
    for _, origin, _, target, _, _ in workflow["links"]:
        a, b = graph.nodes[origin], graph.nodes[target]
        right = a["pos"][0] + a["size"][0] <= b["pos"][0]
        below = a["pos"][1] + a["size"][1] <= b["pos"][1] - title and a["pos"][0] <= b["pos"][0]
        assert right or below, f"{a['type']} {a['id']} is neither left of nor above {b['type']} {b['id']}"
    boxes = [(n["pos"][0], n["pos"][1] - title, n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1], n)
             for n in workflow["nodes"]]
    for i, (x0, y0, x1, y1, a) in enumerate(boxes):
        for u0, v0, u1, v1, b in boxes[i + 1:]:
            assert x1 <= u0 or u1 <= x0 or y1 <= v0 or v1 <= y0, f"{a['type']} {a['id']} overlaps {b['type']} {b['id']}"


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=_ids(WORKFLOW_FILES))
def test_explained_by_a_note(path):
    """A note titled with the template's title (the Templates browser shows only the file name)."""
    notes = [n for n in load(path)["nodes"] if n["type"] in ("Note", "MarkdownNote")]
    assert notes and "MasaCtrl" in notes[0]["widgets_values"][0]
    title = next(t["title"] for t in MANIFEST if t["name"] == path.stem)
    assert notes[0]["title"] == f"About: {title}"


# Model files a template may load, with where ComfyUI's Missing Models dialog may download them from
# (front end 1.27 offers only https://huggingface.co/ or https://civitai.com/ and .safetensors/.sft files).
MODEL_LOADERS = {"CheckpointLoaderSimple": "checkpoints", "ControlNetLoader": "controlnet",
                 "UNETLoader": "diffusion_models", "DualCLIPLoader": "text_encoders", "VAELoader": "vae"}
# Loaders of folders in the Hugging Face layout: not in the dialog's format, so their notes say where to get them.
FOLDER_LOADERS = {"MasaCtrlBLIPLoader": "https://huggingface.co/Salesforce/",
                  "MasaCtrlScoreModelLoader": "https://huggingface.co/openai/",
                  "MasaCtrlOpenPoseDetect": "https://huggingface.co/lllyasviel/Annotators/"}


def declared_models(workflow) -> list[dict]:
    return [m for n in workflow["nodes"] for m in n.get("properties", {}).get("models", [])]


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=_ids(WORKFLOW_FILES))
def test_model_loaders_say_where_their_model_comes_from(path):
    """properties.models, as ComfyUI's own templates write it, on every node that loads a model file: the file
    it picks, a download URL the front end accepts, the models folder."""
    workflow = load(path)
    for node in workflow["nodes"]:
        if node["type"] not in MODEL_LOADERS:
            assert "models" not in node["properties"], node["type"]
            continue
        files = [v for v in node["widgets_values"] if isinstance(v, str) and v.endswith((".safetensors", ".sft"))]
        assert [m["name"] for m in node["properties"]["models"]] == files  # every file it picks (DualCLIP: two)
        for model in node["properties"]["models"]:
            assert set(model) == {"name", "url", "directory"} and model["directory"] == MODEL_LOADERS[node["type"]]
            assert model["url"].startswith("https://huggingface.co/") and model["url"].endswith("/" + model["name"])
    note = next(n for n in workflow["nodes"] if n["type"] == "Note")["widgets_values"][0]
    for node in workflow["nodes"]:
        if node["type"] in FOLDER_LOADERS:
            assert FOLDER_LOADERS[node["type"]] in note, f"the note does not say where {node['type']}'s model is"


def test_example_inputs_are_the_pictures_the_templates_load():
    """example_inputs/ holds exactly the pictures the templates' Load Image nodes pick, each small; the RePaint
    one carries its mask (a transparent region) as the Mask Editor would save it."""
    from PIL import Image

    picked = {v for p in WORKFLOW_FILES for v in _widget(p.stem, "LoadImage")}
    shipped = {p.name: p for p in (PACK_DIR / "example_inputs").glob("*.png")}
    assert sorted(shipped) == sorted(picked)
    for path in shipped.values():
        assert path.stat().st_size < 60_000
        with Image.open(path) as image:
            assert image.size == (512, 512)
            if path.name == "masactrl_masked_photo.png":
                assert image.mode == "RGBA" and image.getchannel("A").getextrema() == (0, 255)


def test_example_inputs_copied_without_overwriting(tmp_path):
    """The pack copies the pictures a folder lacks and leaves a file of the same name alone."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("example_inputs", PACK_DIR / "nodes" / "example_inputs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    mine = tmp_path / "masactrl_photo.png"
    mine.write_bytes(b"the user's own photo")
    copied = module.copy_missing_example_inputs(tmp_path)
    shipped = sorted(p.name for p in (PACK_DIR / "example_inputs").glob("*.png"))
    assert copied == [name for name in shipped if name != mine.name]
    assert mine.read_bytes() == b"the user's own photo"
    assert module.copy_missing_example_inputs(tmp_path) == []
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    assert module.copy_missing_example_inputs(blocked / "input") == []  # logged, not raised


@pytest.mark.parametrize("path", [WORKFLOW_DIR / f"{n}.json" for n in SYNTHESIS], ids=list(SYNTHESIS))
def test_masactrl_graph(path):
    """Source prompt = batch item 0, target = item 1, same noise, MasaCtrl on the sampler's model."""
    pose = EXPECTED[path.stem]
    graph = Graph(load(path))
    sampler = graph.one("KSampler")
    _seed, _control, steps, cfg, sampler_name, scheduler, denoise = sampler["widgets_values"]
    assert (steps, cfg, sampler_name, scheduler, denoise) == (50, 7.5, "ddim", "ddim_uniform", 1)

    masactrl, _ = graph.source(sampler, "model")
    assert masactrl["type"] == "MasaCtrlMutualSelfAttention"
    checkpoint, slot = graph.source(masactrl, "model")
    assert (checkpoint["type"], slot) == ("CheckpointLoaderSimple", 0)
    assert checkpoint["widgets_values"] == ["v1-5-pruned-emaonly-fp16.safetensors"]

    seed_behavior, _ = graph.source(sampler, "latent_image")
    assert seed_behavior["type"] == "LatentBatchSeedBehavior" and seed_behavior["widgets_values"] == ["fixed"]
    empty, _ = graph.source(seed_behavior, "samples")
    assert empty["type"] == "EmptyLatentImage" and empty["widgets_values"] == [512, 512, 2]

    positive, positive_slot = graph.source(sampler, "positive")
    negative, negative_slot = graph.source(sampler, "negative")
    if pose:
        assert positive is negative and positive["type"] == "ControlNetApplyAdvanced"
        assert (positive_slot, negative_slot) == (0, 1)
        apply = positive
        batched, _ = graph.source(apply, "positive")
        negative, _ = graph.source(apply, "negative")
        loader, _ = graph.source(apply, "control_net")
        assert loader["type"] == "ControlNetLoader"
        assert loader["widgets_values"] == ["control_v11p_sd15_openpose_fp16.safetensors"]
        poses, _ = graph.source(apply, "image")
        assert poses["type"] == "ImageBatch"
        first, _ = graph.source(poses, "image1")
        second, _ = graph.source(poses, "image2")
        assert first["type"] == second["type"] == "LoadImage"
        assert first["widgets_values"][0] == "masactrl_source_pose.png"
        assert second["widgets_values"][0] == "masactrl_target_pose.png"
    else:
        batched = positive
        assert not graph.of_type("ControlNetApplyAdvanced")
    assert batched["type"] == "MasaCtrlBatchConditioning"
    source, _ = graph.source(batched, "source")
    target, _ = graph.source(batched, "target")
    for encoder, text in ((source, SOURCE_PROMPT), (target, TARGET_PROMPT), (negative, "")):
        assert encoder["type"] == "CLIPTextEncode" and encoder["widgets_values"] == [text]
        assert graph.source(encoder, "clip") == (checkpoint, 1)

    decode, _ = graph.source(graph.one("SaveImage"), "images")
    assert decode["type"] == "VAEDecode" and graph.source(decode, "samples")[0] is sampler
    assert graph.source(decode, "vae") == (checkpoint, 2)
    assert graph.one("SaveImage")["widgets_values"] == ["MasaCtrl"]


def test_mask_guided_graph():
    """Subject Prompts feeds the sampler and MasaCtrl Masks; Masks wraps MasaCtrl; the preview follows."""
    graph = Graph(load(WORKFLOW_DIR / f"{MASKS}.json"))
    sampler = graph.one("KSampler")
    masks, _ = graph.source(sampler, "model")
    assert masks["type"] == "MasaCtrlMasks" and masks["widgets_values"][:3] == [0.1, "1/4 (paper)", "all"]
    assert graph.source(masks, "model")[0]["type"] == "MasaCtrlMutualSelfAttention"
    prompts, slot = graph.source(sampler, "positive")
    assert prompts["type"] == "MasaCtrlSubjectPrompts" and slot == 0
    assert graph.source(masks, "subject") == (prompts, 1)
    assert prompts["widgets_values"][2:] == ["corgi", ""]
    seed_behavior, _ = graph.source(sampler, "latent_image")
    assert seed_behavior["widgets_values"] == ["fixed"]
    preview = graph.one("MasaCtrlMaskPreview")
    assert graph.source(preview, "model")[0] is masks and graph.source(preview, "samples")[0] is sampler
    assert graph.source(preview, "images")[0]["type"] == "VAEDecode"


def test_real_photo_graph():
    """Photo -> VAE Encode -> DDIM Inversion; its start latent into KSamplerAdvanced without added noise, the
    same steps and scheduler; the model follows the inversion under MasaCtrl."""
    graph = Graph(load(WORKFLOW_DIR / f"{PHOTO}.json"))
    sampler = graph.one("KSamplerAdvanced")
    add_noise, _seed, _control, steps, cfg, sampler_name, scheduler, start, end, _ = sampler["widgets_values"]
    assert (add_noise, start, end, sampler_name) == ("disable", 0, 10000, "ddim")
    invert, slot = graph.source(sampler, "latent_image")
    assert invert["type"] == "MasaCtrlDDIMInversion" and slot == 0
    inv_steps, inv_cfg, inv_scheduler, batch = invert["widgets_values"]
    assert (inv_steps, inv_scheduler, batch) == (steps, scheduler, 2)
    encode, _ = graph.source(invert, "latent")
    assert encode["type"] == "VAEEncode" and graph.source(encode, "pixels")[0]["type"] == "LoadImage"
    masactrl, _ = graph.source(sampler, "model")
    assert masactrl["type"] == "MasaCtrlMutualSelfAttention"
    follow, _ = graph.source(masactrl, "model")
    assert follow["type"] == "MasaCtrlFollowInversion" and graph.source(follow, "inversion") == (invert, 1)
    batched, _ = graph.source(sampler, "positive")
    assert batched["type"] == "MasaCtrlBatchConditioning"
    assert graph.source(batched, "source")[0] is graph.source(invert, "positive")[0]


def pack_widgets(node) -> dict:
    """A pack node's saved widget values by input name (the schema's widget inputs, in order)."""
    names = [name for name, kind, _ in pack_schemas()[node["type"]] if kind in WIDGET_KINDS]
    return dict(zip(names, node["widgets_values"]))


def test_flux_real_photo_graph():
    """Photo -> VAE Encode -> Flow Inversion, whose noise starts SamplerCustomAdvanced (a flow model's sampler
    would wipe a start latent at sigma 1); the sampler's schedule is the inversion's; the guider's model is MasaCtrl
    over Follow Inversion over Flux.1 dev; the source prompt is the inversion's and image 0's."""
    graph = Graph(load(WORKFLOW_DIR / f"{FLUX_PHOTO}.json"))
    sampler = graph.one("SamplerCustomAdvanced")
    invert, slot = graph.source(sampler, "noise")
    assert invert["type"] == "MasaCtrlFlowInversion" and slot == 0
    settings = pack_widgets(invert)
    scheduler, _ = graph.source(sampler, "sigmas")
    assert scheduler["type"] == "BasicScheduler"
    assert scheduler["widgets_values"] == [settings["scheduler"], settings["steps"], 1.0]
    assert graph.source(sampler, "sampler")[0]["widgets_values"] == ["euler"]
    encode, _ = graph.source(invert, "latent")
    assert encode["type"] == "VAEEncode" and graph.source(encode, "pixels")[0]["type"] == "LoadImage"
    assert graph.source(sampler, "latent_image") == (invert, 1) and settings["batch_size"] == 2
    guider, _ = graph.source(sampler, "guider")
    masactrl, _ = graph.source(guider, "model")
    assert masactrl["type"] == "MasaCtrlMutualSelfAttention"
    follow, _ = graph.source(masactrl, "model")
    assert follow["type"] == "MasaCtrlFollowInversion" and graph.source(follow, "inversion") == (invert, 2)
    unet, _ = graph.source(follow, "model")
    assert unet["type"] == "UNETLoader" and graph.source(invert, "model")[0] is unet
    assert unet["widgets_values"][0] == "flux1-dev.safetensors"
    guidance, _ = graph.source(guider, "conditioning")
    batched, _ = graph.source(guidance, "conditioning")
    assert batched["type"] == "MasaCtrlBatchConditioning"
    source_guidance, _ = graph.source(invert, "positive")
    assert source_guidance["widgets_values"] == guidance["widgets_values"]
    assert graph.source(source_guidance, "conditioning")[0] is graph.source(batched, "source")[0]


def test_flux_fill_completion_graph():
    """Flux.1 Fill through Grid Sampling for both passes, InpaintModelConditioning (the canvas and its mask) into
    KSampler and RePaint, FluxGuidance 30 and cfg 1, Paste Back of the canvas."""
    graph = Graph(load(WORKFLOW_DIR / f"{FLUX_FILL}.json"))
    sampler, repaint = graph.one("KSampler"), graph.one("MasaCtrlRePaint")
    grid, _ = graph.source(sampler, "model")
    assert grid["type"] == "MasaCtrlGridSampling" and graph.source(repaint, "model")[0] is grid
    assert graph.source(grid, "model")[0]["widgets_values"][0] == "flux1-fill-dev.safetensors"
    assert pack_widgets(grid)["tile_width"] == pack_widgets(grid)["tile_height"] == 1024
    inpaint, _ = graph.source(sampler, "positive")
    assert inpaint["type"] == "InpaintModelConditioning"
    assert graph.source(sampler, "negative") == (inpaint, 1) and graph.source(sampler, "latent_image") == (inpaint, 2)
    assert graph.source(repaint, "positive") == (inpaint, 0) and graph.source(repaint, "negative") == (inpaint, 1)
    extend = graph.one("MasaCtrlExtendCanvas")
    assert graph.source(inpaint, "pixels")[0] is extend and graph.source(inpaint, "mask")[0] is extend
    assert graph.source(repaint, "mask")[0] is extend
    guidance, _ = graph.source(inpaint, "positive")
    assert guidance["type"] == "FluxGuidance" and guidance["widgets_values"] == [30.0]
    assert graph.source(guidance, "conditioning")[0]["type"] == "MasaCtrlBLIPCaption"
    assert sampler["widgets_values"][3] == 1.0 and pack_widgets(repaint)["cfg"] == 1.0
    paste = graph.one("MasaCtrlPasteBack")
    assert graph.source(paste, "original")[0] is extend and graph.source(graph.one("SaveImage"), "images")[0] is paste


# ----------------------------------------------------------------------------------------------------
# In a real ComfyUI server and its front end


def browser_missing_reason() -> str | None:
    from comfy_harness import CHROMIUM_PATH

    if not os.access(CHROMIUM_PATH, os.X_OK):
        return f"no chromium at {CHROMIUM_PATH} (apt-get install chromium) for the front-end tests"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright; no `playwright install`)"
    return None


def _widget(path_stem, type_):
    graph = Graph(load(WORKFLOW_DIR / f"{path_stem}.json"))
    return [n["widgets_values"][0] for n in graph.of_type(type_)]


def _paint_mask(path: Path):
    """What the Mask Editor saves: the image with the region to redo (here its lower half) transparent, which
    Load Image turns into its MASK output."""
    from PIL import Image

    with Image.open(path) as image:
        rgba = image.convert("RGBA")
    alpha = Image.new("L", rgba.size, 255)
    alpha.paste(0, (0, rgba.height // 2, rgba.width, rgba.height))
    rgba.putalpha(alpha)
    rgba.save(path)


def _draw_pose(path: Path, arm_angle: float):
    """A 64 px OpenPose-like stick figure; `arm_angle` (degrees) moves the arms."""
    import math

    from PIL import Image, ImageDraw

    image = Image.new("RGB", (64, 64))
    draw = ImageDraw.Draw(image)
    neck, hip = (32, 20), (32, 40)
    draw.line([neck, hip], fill=(255, 0, 85), width=2)
    draw.ellipse([28, 8, 36, 16], outline=(255, 0, 0), width=2)
    for side in (-1, 1):
        a = math.radians(arm_angle)
        draw.line([neck, (32 + side * 14 * math.cos(a), 20 - 14 * math.sin(a))], fill=(255, 170, 0), width=2)
        draw.line([hip, (32 + side * 8, 58)], fill=(0, 255, 85), width=2)
    image.save(path)


@pytest.fixture(scope="module")
def server(request):
    """A real ComfyUI server with this pack, random-weight models under the workflows' names, and poses."""
    reason = browser_missing_reason() or comfyui_missing_reason()
    if reason:
        pytest.skip(reason)
    request.getfixturevalue("comfy")  # ComfyUI importable in this process, to build the models
    from comfy_harness import save_sd15_checkpoint, save_sd15_controlnet, save_tiny_blip, save_tiny_clip

    def prepare(base):
        stems = [s for s in EXPECTED if s not in DIT]  # the DiT templates' files stay missing
        for name in {v for s in stems for v in _widget(s, "CheckpointLoaderSimple")}:
            save_sd15_checkpoint(base / "models" / "checkpoints" / name)
        for name in {v for s in stems for v in _widget(s, "ControlNetLoader")}:
            save_sd15_controlnet(base / "models" / "controlnet" / name)
        for name in {v for s in stems for v in _widget(s, "MasaCtrlBLIPLoader")}:
            save_tiny_blip(base / "models" / "blip" / name)
        for name in {v for s in stems for v in _widget(s, "MasaCtrlScoreModelLoader")}:
            save_tiny_clip(base / "models" / "clip_vision" / name, COMFYUI_PATH)
        (base / "input").mkdir()
        for index, name in enumerate(sorted({v for s in stems for v in _widget(s, "LoadImage")})):
            _draw_pose(base / "input" / name, arm_angle=-30 + 90 * index)
        _paint_mask(base / "input" / "masactrl_masked_photo.png")  # as the RePaint template's note asks

    yield from serve("masactrl-workflows-", prepare, extra_args=["--cache-none"])


def serve(prefix: str, prepare=None, **options):
    """A fixture's body: a real ComfyUI server with this pack under a fresh base folder (made ready by
    `prepare(base)`), the tutorial dismissed; stopped and the folder removed afterwards."""
    from comfy_harness import ComfyServer

    base = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        if prepare is not None:
            prepare(base)
        comfy_server = ComfyServer(COMFYUI_PATH, PACK_DIR, base, pack_name=PACK_FOLDER, **options)
        try:
            comfy_server.start()
            comfy_server.post("/settings/Comfy.TutorialCompleted", True)
            yield comfy_server
        finally:
            comfy_server.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    """One headless chromium for the module: playwright's sync API allows one instance per thread."""
    from playwright.sync_api import sync_playwright

    from comfy_harness import CHROMIUM_FLAGS, CHROMIUM_PATH

    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM_PATH, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        playwright.stop()


@contextmanager
def front_end(browser, server, viewport=(1600, 1000)):
    """The server's front end in a tab; collects page errors raised after start-up."""
    tab = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    try:
        tab.goto(server.url)
        tab.wait_for_function("() => !!(window.app?.graph && window.app.canvas && window.app.vueAppReady"
                              " && window.LiteGraph?.registered_node_types?.MasaCtrlMutualSelfAttention)",
                              timeout=90_000)
        tab.errors = []  # errors from here on (the front end itself logs one at start-up)
        tab.on("pageerror", lambda error: tab.errors.append(str(error)))
        tab.on("dialog", lambda dialog: (tab.errors.append(f"dialog: {dialog.message}"), dialog.dismiss()))
        yield tab
    finally:
        tab.close()


@pytest.fixture(scope="module")
def page(server, browser):
    with front_end(browser, server) as tab:
        yield tab


# Load like the Templates dialog (fetch the served file, app.loadGraphData), report what went wrong,
# and convert with app.graphToPrompt(); results are stringified inside the page.
LOAD_JS = """
async ({module, name, text}) => {
  document.querySelectorAll('.p-dialog-close-button, .p-toast-close-button').forEach((b) => b.click());
  await new Promise((r) => setTimeout(r, 300));
  const json = text ? JSON.parse(text)
    : await fetch(app.api.apiURL(`/workflow_templates/${module}/${name}.json`)).then((r) => r.json());
  await app.loadGraphData(json, true, true, name);
  await new Promise((r) => setTimeout(r, 700));
  const p = await app.graphToPrompt();
  return JSON.stringify({
    nodes: app.graph.nodes.length,
    missing: app.graph.nodes.filter((n) => !(n.type in LiteGraph.registered_node_types) || n.has_errors)
      .map((n) => n.type),
    dialogs: [...document.querySelectorAll('.p-dialog')].map((e) => e.innerText.slice(0, 300)),
    toasts: [...document.querySelectorAll('.p-toast-message')].map((e) => e.innerText.slice(0, 300)),
    prompt: p.output,
  });
}
"""


def load_in_page(page, name, workflow=None):
    return json.loads(page.evaluate(LOAD_JS, {"module": PACK_FOLDER, "name": name,
                                              "text": json.dumps(workflow) if workflow else None}))


def shrink(prompt: dict) -> dict:
    """64 px (an eighth: 512 -> 64) and 2 steps for the CPU; MasaCtrl from step 1 so that it still acts (on the
    last step). The test UNet has two resolution levels, so its maps come from the lower one (1/2). Photo
    completion: 16 px of new canvas, 64 px tiles overlapping by 16 (so a 64x80 canvas takes two), the shortest
    RePaint schedule that resamples, short greedy captions; the sweep: three runs (off, end_step 1, through the end)."""
    prompt = copy.deepcopy(prompt)
    for node in prompt.values():
        inputs = node["inputs"]
        if node["class_type"] == "EmptyLatentImage":
            inputs.update(width=inputs["width"] // 8, height=inputs["height"] // 8)
        elif node["class_type"] in ("KSampler", "KSamplerAdvanced", "MasaCtrlDDIMInversion", "BasicScheduler"):
            inputs.update(steps=2)
        elif node["class_type"] in ("MasaCtrlRePaint", "MasaCtrlRePaintSampler"):
            inputs.update(jump_length=1, resamplings=2, **({"steps": 2} if "steps" in inputs else {}))
        elif node["class_type"] == "MasaCtrlExtendCanvas":
            inputs.update({side: min(inputs[side], 16) for side in ("left", "top", "right", "bottom")},
                          target_width=64, target_height=96)
        elif node["class_type"] == "MasaCtrlGridSampling":
            inputs.update(tile_width=64, tile_height=64, overlap=16)
        elif node["class_type"] == "MasaCtrlBLIPCaption":
            inputs.update(min_length=1, max_length=4, num_beams=1)
        elif node["class_type"] == "MasaCtrlMutualSelfAttention":
            inputs.update(start_step=1)
        elif node["class_type"] == "MasaCtrlScheduleSweep":
            inputs.update(steps=2, values="off, 1, -1")
        elif node["class_type"] == "MasaCtrlMasks":
            inputs.update(map_resolution="1/2")
    return prompt


def run_prompt(server, prompt, timeout=150.0) -> dict:
    answer = server.post("/prompt", {"prompt": prompt, "client_id": str(uuid.uuid4())})
    assert not answer.get("node_errors"), answer
    prompt_id = answer["prompt_id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        history = server.get(f"/history/{prompt_id}")  # {} until the prompt has finished, well or not
        if prompt_id in history:
            return history[prompt_id]
        time.sleep(0.5)
    raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout:.0f} s:\n{server.log_tail()}")


def refused_inputs(server, prompt) -> set:
    """(node id, input, error type) of every input ComfyUI's validation refuses in `prompt` (HTTP 400)."""
    import urllib.error
    import urllib.request

    body = json.dumps({"prompt": prompt, "client_id": str(uuid.uuid4())}).encode()
    request = urllib.request.Request(server.url + "/prompt", data=body, headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(request, timeout=30).read()
    except urllib.error.HTTPError as refused:
        answer = json.loads(refused.read())
    else:
        return set()
    return {(node_id, e["extra_info"].get("input_name"), e["type"])
            for node_id, found in answer.get("node_errors", {}).items() for e in found["errors"]}


def test_dit_graphs():
    """MasaCtrl between the diffusion transformer's loader and the sampler; Flux: FluxGuidance and cfg 1 (guidance
    distilled); SD3.5: real CFG with a negative prompt."""
    for name in DIT_SYNTHESIS:
        loaders = DIT[name]
        graph = Graph(load(WORKFLOW_DIR / f"{name}.json"))
        sampler = graph.one("KSampler")
        masactrl, _ = graph.source(sampler, "model")
        assert masactrl["type"] == "MasaCtrlMutualSelfAttention"
        loader, slot = graph.source(masactrl, "model")
        assert loader["type"] in loaders and slot == 0
        batched, _ = graph.source(graph.source(sampler, "positive")[0], "conditioning") if "flux" in name else \
            graph.source(sampler, "positive")
        assert batched["type"] == "MasaCtrlBatchConditioning"
        _seed, _control, _steps, cfg, sampler_name, _scheduler, _denoise = sampler["widgets_values"]
        assert (cfg == 1.0) == ("flux" in name) and sampler_name == "euler"
        seed_behavior, _ = graph.source(sampler, "latent_image")
        assert seed_behavior["widgets_values"] == ["fixed"]
        assert graph.source(seed_behavior, "samples")[0]["type"] == "EmptySD3LatentImage"


def test_server_lists_the_templates(server):
    assert sorted(server.get("/api/workflow_templates").get(PACK_FOLDER, [])) == sorted(EXPECTED)


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=_ids(WORKFLOW_FILES))
def test_server_serves_the_template(server, path):
    assert server.get(f"/api/workflow_templates/{PACK_FOLDER}/{path.name}") == load(path)


@pytest.mark.parametrize("name", THUMBNAILS)
def test_server_serves_the_thumbnail(server, name):
    """Where the Templates dialog looks for it: <template URL>.jpg."""
    import urllib.request

    with urllib.request.urlopen(f"{server.url}/api/workflow_templates/{PACK_FOLDER}/{name}.jpg") as response:
        assert response.headers["Content-Type"] == "image/jpeg"
        assert response.read() == (WORKFLOW_DIR / f"{name}.jpg").read_bytes()


def test_node_types_known_to_the_server(server):
    info = server.get("/api/object_info")
    assert CORE_NODES <= set(info), f"not core ComfyUI nodes: {sorted(CORE_NODES - set(info))}"
    for node_id in pack_schemas():
        assert info[node_id]["python_module"] == f"custom_nodes.{PACK_FOLDER}"
    for path in WORKFLOW_FILES:
        missing = {n["type"] for n in load(path)["nodes"]} - FRONTEND_ONLY - set(info)
        assert not missing, f"{path.name}: the server has no {sorted(missing)}"


def test_missing_node_check_catches_an_unknown_type(server, page):
    """The checks below are not vacuous: a node type the server does not have is reported (and the
    dialog it opens is closed again before the next load)."""
    workflow = load(WORKFLOW_FILES[0])
    workflow["nodes"][-1]["type"] = "NoSuchMasaCtrlNode"
    result = load_in_page(page, "missing-node-check", workflow)
    assert result["missing"] == ["NoSuchMasaCtrlNode"]
    assert any("NoSuchMasaCtrlNode" in d for d in result["dialogs"])


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=_ids(WORKFLOW_FILES))
def test_template_loads_in_the_front_end_and_runs(server, page, path):
    page.errors.clear()
    result = load_in_page(page, path.stem)
    assert result["nodes"] == len(load(path)["nodes"])
    assert not result["missing"], f"missing node types: {result['missing']}"
    assert path.stem in DIT or not result["dialogs"], result["dialogs"]  # DiT files: missing on purpose
    assert not result["toasts"], result["toasts"]  # e.g. "Invalid workflow against zod schema", fixed links
    assert not page.errors, page.errors

    if path.stem == POSE_REPAIR:
        return
    if path.stem in DIT:  # every other input validates; only the model files are missing, as the dialog said
        errors = refused_inputs(server, result["prompt"])
        loaders = {node_id: n["class_type"] for node_id, n in result["prompt"].items() if n["class_type"] in
                   DIT[path.stem]}
        assert errors == {(node_id, name, "value_not_in_list") for node_id, kind in loaders.items()
                          for name in DIT[path.stem][kind]}, errors
        return
    prompt = shrink(result["prompt"])
    if path.stem not in SAVED:
        assert "MasaCtrlMutualSelfAttention" in {n["class_type"] for n in prompt.values()}
    entry = run_prompt(server, prompt)
    status = entry["status"]
    errors = [m for m in status.get("messages", []) if m[0] == "execution_error"]
    assert status.get("status_str") == "success" and status.get("completed"), \
        f"{errors or status}\n--- server log ---\n{server.log_tail()}"
    save_id = next(i for i, n in prompt.items() if n["class_type"] == "SaveImage")
    images = entry["outputs"][save_id]["images"]
    count, size = SAVED.get(path.stem, (2, (64, 64)))
    assert len(images) == count
    from PIL import Image

    for image in images:
        with Image.open(server.base / "output" / image["subfolder"] / image["filename"]) as png:
            assert all(want in (None, got) for want, got in zip(size, png.size)), (png.size, size)
    for node_id, node in prompt.items():  # the other outputs: the caption shown, the SamplerCustom preview
        if node["class_type"] == "PreviewAny":
            (text,) = entry["outputs"][node_id]["text"]
            if path.stem == SWEEP:  # the table: a row per end_step value
                assert text.splitlines()[0].startswith("| end_step |") and len(text.splitlines()) == 2 + 3, text
            else:
                assert text.endswith(", high quality") and len(text) > len(", high quality"), text
        elif node["class_type"] == "PreviewImage":
            assert len(entry["outputs"][node_id]["images"]) == 1
    previews = [i for i, n in prompt.items() if n["class_type"] == "MasaCtrlMaskPreview"]
    for preview in previews:  # one map per image and word ("corgi" in source and target)
        assert len(entry["outputs"][preview]["images"]) == 2



# ----------------------------------------------------------------------------------------------------
# What a new user meets: a ComfyUI with this pack and nothing else (no model, no picture)

@pytest.fixture(scope="module")
def bare_server(request):
    """A real ComfyUI server with this pack and an empty base folder: no model file exists."""
    reason = browser_missing_reason() or comfyui_missing_reason()
    if reason:
        pytest.skip(reason)
    yield from serve("masactrl-bare-")


@pytest.fixture(scope="module")
def bare_page(bare_server, browser):
    with front_end(browser, bare_server, VIEWPORTS[0]) as tab:
        yield tab


# The smallest common laptop window and a full-HD one; the templates open fitted to the first (and so to both).
VIEWPORTS = [(1280, 800), (1920, 1080)]
# The smallest zoom at which ComfyUI draws node titles (below it, its level-of-detail rendering shows blank
# boxes: LiteGraph.Canvas.MinFontSizeForLOD 8 px / NODE_TEXT_SIZE 14 px = 0.571 at device pixel ratio 1),
# with a margin: titles at 8.4 px and more.
LEGIBLE_SCALE = 0.6
# Opens a template as the Templates browser does (fetch the served file, loadGraphData with its name) and
# reports the view: scale, level of detail, each node's box on the page against the canvas and what covers
# it (minimap, zoom buttons), missing node types, and the Missing Models dialog's entries.
VIEW_JS = """
async ({module, name}) => {
  document.querySelectorAll('.p-dialog-close-button').forEach((b) => b.click());
  await new Promise((r) => setTimeout(r, 400));
  const json = await fetch(app.api.apiURL(`/workflow_templates/${module}/${name}.json`)).then((r) => r.json());
  await app.loadGraphData(json, true, true, name);
  await new Promise((r) => setTimeout(r, 1000));
  app.canvas.draw(true, true);
  const ds = app.canvas.ds, rect = app.canvas.canvas.getBoundingClientRect();
  const onPage = ([x, y]) => [rect.left + (x + ds.offset[0]) * ds.scale, rect.top + (y + ds.offset[1]) * ds.scale];
  const box = (r) => ({left: r.left, top: r.top, right: r.right, bottom: r.bottom});
  return JSON.stringify({
    scale: ds.scale,
    lowQuality: app.canvas.low_quality,
    canvas: box(rect),
    covers: [...document.querySelectorAll('.litegraph-minimap, .p-buttongroup-vertical')]
      .map((e) => e.getBoundingClientRect()).filter((r) => r.width > 0 && r.height > 0).map(box),
    nodes: app.graph.nodes.map((n) => {
      const [left, top] = onPage([n.pos[0], n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT]);
      const [right, bottom] = onPage([n.pos[0] + n.size[0], n.pos[1] + n.size[1]]);
      return {title: n.title, left, top, right, bottom};
    }),
    missing: app.graph.nodes.filter((n) => !(n.type in LiteGraph.registered_node_types)).map((n) => n.type),
    models: [...document.querySelectorAll('.comfy-missing-models [role=option]')].map((e) => e.innerText),
  });
}
"""


def _outside(a, b) -> bool:
    return a["right"] <= b["left"] or a["left"] >= b["right"] or a["bottom"] <= b["top"] or a["top"] >= b["bottom"]


@pytest.mark.parametrize("viewport", VIEWPORTS, ids=[f"{w}x{h}" for w, h in VIEWPORTS])
@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=_ids(WORKFLOW_FILES))
def test_template_opens_fitted_and_readable(bare_page, path, viewport):
    """Opened in the real front end: no missing node type, node titles drawn at a legible zoom, every node
    inside the visible canvas and clear of the minimap and zoom buttons; and, as no model file exists here,
    the Missing Models dialog lists exactly the template's properties.models, each with its download."""
    bare_page.set_viewport_size({"width": viewport[0], "height": viewport[1]})
    view = json.loads(bare_page.evaluate(VIEW_JS, {"module": PACK_FOLDER, "name": path.stem}))
    assert not view["missing"], view["missing"]
    assert view["scale"] >= LEGIBLE_SCALE and not view["lowQuality"], view["scale"]
    canvas = view["canvas"]
    for node in view["nodes"]:
        inside = (canvas["left"] <= node["left"] and node["right"] <= canvas["right"]
                  and canvas["top"] <= node["top"] and node["bottom"] <= canvas["bottom"])
        assert inside, f"{node['title']} is not inside the canvas {canvas}: {node}"
        assert all(_outside(node, cover) for cover in view["covers"]), f"{node['title']} is under the minimap"
    declared = {f"{m['directory']} / {m['name']}" for m in declared_models(load(path))}
    listed = {entry.splitlines()[0].strip() for entry in view["models"]}
    assert listed == declared, view["models"]
    for entry in view["models"]:  # a download offered, not the front end's refusal of the source or file type
        assert "Download" in entry and "not allowed" not in entry and "Invalid directory" not in entry, entry


TEMPLATES_BROWSER_JS = """
async ({module}) => {
  document.querySelectorAll('.p-dialog-close-button').forEach((b) => b.click());
  await app.extensionManager.command.execute('Comfy.BrowseTemplates');
  const until = async (test) => {
    for (let i = 0; i < 100 && !test(); i++) await new Promise((r) => setTimeout(r, 100));
  };
  await until(() => [...document.querySelectorAll('.p-listbox-option')].some((e) => e.innerText.trim() === module));
  [...document.querySelectorAll('.p-listbox-option')].find((e) => e.innerText.trim() === module).click();
  await until(() => document.querySelector('[data-testid="template-workflow-masactrl_consistent_synthesis"]'));
  // the dialog renders cards a page (12) at a time as the list is scrolled: scroll until no more come
  const all = () => [...document.querySelectorAll('[data-testid^="template-workflow-"]')];
  for (let seen = 0; all().length > seen;) {
    seen = all().length;
    all()[seen - 1].scrollIntoView();
    await until(() => all().length > seen);
  }
  // the card shows the fetched file as a blob: URL, so the picture is known by its size here
  const pictures = (c) => [...c.querySelectorAll('img')].filter((i) => i.complete && i.naturalWidth > 0)
    .map((i) => [i.naturalWidth, i.naturalHeight]);
  const seen = [];
  for (const card of all()) {  // each picture loads once its card is in view (lazy images): read it there
    card.scrollIntoView();
    await until(() => pictures(card).length);
    seen.push({ name: card.dataset.testid.replace('template-workflow-', ''), images: pictures(card) });
  }
  return JSON.stringify(seen);
}
"""


def test_templates_browser_lists_every_template_in_order_with_its_thumbnail(bare_server, bare_page):
    """The Templates browser's custom-node listing (GET /api/workflow_templates, reordered by
    web/template_order.js) shows every template, the main example first, each with its <name>.jpg."""
    listing = bare_server.get("/api/workflow_templates")[PACK_FOLDER]
    assert sorted(listing) == sorted(EXPECTED)
    bare_page.set_viewport_size({"width": VIEWPORTS[1][0], "height": VIEWPORTS[1][1]})
    thumbnails = {}
    prefix = f"/api/workflow_templates/{PACK_FOLDER}/"

    def record(response):
        path = urllib.parse.urlparse(response.url).path
        if path.startswith(prefix) and path.endswith(".jpg"):
            thumbnails[path[len(prefix):-4]] = (response.status, response.headers.get("content-type"))

    bare_page.on("response", record)
    try:
        cards = json.loads(bare_page.evaluate(TEMPLATES_BROWSER_JS, {"module": PACK_FOLDER}))
    finally:
        bare_page.remove_listener("response", record)
    assert [c["name"] for c in cards] == [t["name"] for t in MANIFEST]
    assert thumbnails == {name: (200, "image/jpeg") for name in EXPECTED}
    for card in cards:
        assert [512, 512] in card["images"], card  # the drawn thumbnail, shown


def test_example_inputs_reach_the_input_folder(bare_server):
    """Loading the pack put every example picture into ComfyUI's input folder, where Load Image finds it."""
    for picture in (PACK_DIR / "example_inputs").glob("*.png"):
        assert (bare_server.base / "input" / picture.name).read_bytes() == picture.read_bytes()


def test_example_inputs_leave_existing_pictures_alone(server):
    """The workflow server's own pictures (64 px drawings, written before it started) were not replaced."""
    from PIL import Image

    for name in {v for p in WORKFLOW_FILES for v in _widget(p.stem, "LoadImage")}:
        with Image.open(server.base / "input" / name) as image:
            assert image.size == (64, 64), name
