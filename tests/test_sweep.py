"""Schedule Sweep (MasaCtrl): the settings built from a value list (pure), and the node in the real ComfyUI: each run
equals the KSampler run it stands for, scores, grid and plot come out, progress covers every run, Cancel stops it,
the input model is left as it was, and bad inputs are refused before anything is sampled. ComfyUI tests skip, with
the reason printed, where no checkout is found."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from comfy_harness import call_node, schema_defaults
from masactrl_suite.attention import MutualAttentionSchedule, UNetLayerMap
from masactrl_suite.evaluation.sweep_settings import SweepError, sweep_settings

SWEEP, MASACTRL = "MasaCtrlScheduleSweep", "MasaCtrlMutualSelfAttention"
# The test UNet's layout: encoder 0-3, middle 4, decoder 5-10.
LAYERS = UNetLayerMap.from_depths({1: 1, 2: 1, 4: 1, 5: 1}, 1, {i: 1 for i in range(6)})
PROMPTS = "a photo of a cat\na photo of a cat standing\na photo of a cat jumping"


def settings(parameter, values, steps=20, **base):
    return sweep_settings(MutualAttentionSchedule(**base), parameter, values, steps, LAYERS)


def test_each_value_changes_only_its_parameter():
    base = MutualAttentionSchedule(start_step=4, end_step=-1, step_interval=1, start_layer=5)
    runs = settings("end_step", "off, 5, 12, -1", start_step=4, start_layer=5)
    assert [r.label for r in runs] == ["off", "end_step=5", "end_step=12", "end_step=-1"]
    assert runs[0].schedule is None
    assert [r.schedule.end_step for r in runs[1:]] == [5, 12, -1]
    assert all(r.schedule.start_step == 4 and r.schedule.start_layer == 5 for r in runs[1:])
    assert [r.schedule.step_interval for r in settings("step_interval", "1,2, 3")] == [1, 2, 3]
    assert [r.schedule.start_step for r in settings("start_step", "0, 19")] == [0, 19]
    assert [r.schedule.start_layer for r in settings("start_layer", "0, 10")] == [0, 10]
    assert settings("end_step", "OFF")[0].schedule is None
    assert base == MutualAttentionSchedule(start_step=4, end_step=-1, step_interval=1, start_layer=5)


def test_layer_selection_takes_parts_or_ranges():
    runs = settings("layers", "encoder, decoder, encoder + decoder, all, 10-10, 2 - 6", start_layer=10)
    parts = [(r.schedule.parts, r.schedule.start_layer, r.schedule.end_layer) for r in runs]
    assert parts == [(("encoder",), 0, -1), (("decoder",), 0, -1), (("encoder", "decoder"), 0, -1),
                     (("encoder", "middle", "decoder"), 0, -1), (("encoder", "middle", "decoder"), 10, 10),
                     (("encoder", "middle", "decoder"), 2, 6)]
    assert [LAYERS.active_sites(r.schedule)[0][0] for r in runs[:2]] == ["input", "output"]


@pytest.mark.parametrize("parameter,values,base,match", [
    ("end_step", "", {}, "values is empty; list the end_step values to try, .* e.g. 'off, 5"),
    ("end_step", " , ", {}, "values is empty"),
    ("end_step", "5, 30", {}, "end_step: 30 is out of range; use -1 .* or a step from 4 .* to 19 .*20 steps"),
    ("end_step", "2", {}, "end_step=2: MasaCtrl schedule: end_step \\(2\\) is before start_step \\(4\\)"),
    ("end_step", "five", {}, "end_step: 'five' is not a whole number"),
    ("end_step", "5, 8, 5", {}, "values lists 5 more than once"),
    ("start_step", "20", {}, "start_step: 20 is out of range; use a step from 0 to 19"),
    ("start_step", "8", {"end_step": 6}, "start_step=8: .*end_step \\(6\\) is before start_step \\(8\\)"),
    ("step_interval", "0", {}, "step_interval: 0 is out of range; use 1 to 20"),
    ("start_layer", "11", {}, "start_layer: 11 is out of range; this model's layers are 0 to 10"),
    ("start_layer", "6", {"parts": ("encoder",)}, "start_layer=6: .*no layer of the selected parts"),
    ("layers", "decoders", {}, "layers: 'decoders' is neither parts nor a range; write part names"),
    ("layers", "8-3", {}, "layers: '8-3' runs backwards; write the smaller layer first: 3-8"),
    ("layers", "0-11", {}, "layers: 11 is out of range.*layers 0-10"),
    ("cfg", "1", {}, "parameter 'cfg' is not sweepable"),
    ("end_step", "5", {"sigma_range": (10.0, 1.0)}, "end_step counts steps, but the MasaCtrl node schedules by "
                                                     "percent; set its schedule_by to steps"),
])
def test_impossible_sweeps_are_refused(parameter, values, base, match):
    with pytest.raises(SweepError, match=match):
        settings(parameter, values, **base)


@pytest.fixture(scope="module")
def sd(checkpoint, tmp_path_factory):
    import folder_paths
    from comfy_harness import save_tiny_clip

    root = tmp_path_factory.mktemp("sweep-models")
    save_tiny_clip(root / "tiny-clip", checkpoint.comfy.path)
    folder_paths.add_model_folder_path("clip_vision", str(root))
    node, encode = checkpoint.node, checkpoint.encode
    positive = encode("a photo of a cat")
    for text in PROMPTS.splitlines()[1:]:
        positive = node["MasaCtrlBatchConditioning"].execute(positive, encode(text)).result[0]
    yield SimpleNamespace(**vars(checkpoint), positive=positive, negative=encode(""),
                          latent={"samples": torch.zeros(3, 4, 8, 8)},
                          models=node["MasaCtrlScoreModelLoader"].execute("tiny-clip", "none").result[0])
    folder_paths.folder_names_and_paths["clip_vision"][0].remove(str(root))


def masactrl(sd, model=None, start_step=0, end_step=-1, **inputs):
    return call_node(sd.comfy, MASACTRL, model=model or sd.model, start_step=start_step, end_step=end_step,
                     start_layer=5, **inputs)[0]


def sweep(sd, model=None, parameter="end_step", values="off, 0, -1", steps=3, consistency="clip", models=None,
          prompts=PROMPTS):
    return sd.node[SWEEP].execute(model or masactrl(sd), sd.vae, sd.positive, sd.negative, sd.latent, 7, steps, 7.0,
                                  "euler", "normal", 1.0, parameter, values, models or sd.models, prompts,
                                  consistency).result


def test_graph_through_the_executor_matches_ksampler_runs(sd):
    from comfy_harness import run_graph

    encode = {f"p{i}": {"class_type": "CLIPTextEncode", "inputs": {"text": t, "clip": ["ckpt", 1]}}
              for i, t in enumerate(PROMPTS.splitlines())}
    sampling = {"seed": 7, "steps": 3, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal",
                "positive": ["batch2", 0], "negative": ["negative", 0], "latent_image": ["latent", 0]}

    def ksampler(name, model):
        return {f"{name}_sample": {"class_type": "KSampler", "inputs": {**sampling, "model": model, "denoise": 1.0}},
                f"{name}_decode": {"class_type": "VAEDecode", "inputs": {"samples": [f"{name}_sample", 0],
                                                                         "vae": ["ckpt", 2]}},
                f"{name}": {"class_type": "SaveImage", "inputs": {"images": [f"{name}_decode", 0],
                                                                  "filename_prefix": f"sweep_test_{name}"}}}

    graph = {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": sd.name}},
        **encode,
        "batch1": {"class_type": "MasaCtrlBatchConditioning", "inputs": {"source": ["p0", 0], "target": ["p1", 0]}},
        "batch2": {"class_type": "MasaCtrlBatchConditioning", "inputs": {"source": ["batch1", 0], "target": ["p2", 0]}},
        "negative": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["ckpt", 1]}},
        "latent": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 3}},
        "masactrl": {"class_type": MASACTRL, "inputs": {
            **schema_defaults(sd.node[MASACTRL]), "model": ["ckpt", 0], "start_step": 0, "start_layer": 5}},
        "models": {"class_type": "MasaCtrlScoreModelLoader", "inputs": {"clip_name": "tiny-clip", "dino_name": "none"}},
        "sweep": {"class_type": SWEEP, "inputs": {
            **{k: v for k, v in sampling.items() if k != "positive"}, "positive": ["batch2", 0], "denoise": 1.0,
            "model": ["masactrl", 0], "vae": ["ckpt", 2], "parameter": "end_step", "values": "off, 0, -1",
            "score_models": ["models", 0], "prompts": PROMPTS, "consistency": "clip"}},
        "images": {"class_type": "SaveImage", "inputs": {"images": ["sweep", 0], "filename_prefix": "sweep_test_all"}},
        "grid": {"class_type": "SaveImage", "inputs": {"images": ["sweep", 1], "filename_prefix": "sweep_test_grid"}},
        "plot": {"class_type": "SaveImage", "inputs": {"images": ["sweep", 2], "filename_prefix": "sweep_test_plot"}},
        "table": {"class_type": "PreviewAny", "inputs": {"source": ["sweep", 3]}},
        "json": {"class_type": "PreviewAny", "inputs": {"source": ["sweep", 4]}},
        **ksampler("plain", ["ckpt", 0]), **ksampler("full", ["masactrl", 0]),
    }
    outputs = run_graph(sd.comfy, graph)
    out_dir = sd.comfy.folder_paths.get_output_directory()

    def pixels(node):
        return [np.asarray(Image.open(f"{out_dir}/{i['subfolder']}/{i['filename']}")) for i in outputs[node]["images"]]

    runs = pixels("images")
    assert len(runs) == 9 and all(p.shape == (64, 64, 3) for p in runs)
    assert all(np.array_equal(a, b) for a, b in zip(runs[:3], pixels("plain")))  # off: no MasaCtrl
    assert all(np.array_equal(a, b) for a, b in zip(runs[6:], pixels("full")))  # end_step -1: the MasaCtrl node's
    assert not np.array_equal(runs[4], runs[1]) and not np.array_equal(runs[4], runs[7])  # end_step 0 differs
    (grid,), (plot,) = pixels("grid"), pixels("plot")
    assert grid.shape[0] > 3 * 256 and grid.shape[1] > 3 * 256  # three rows, three columns of 256 px cells
    assert plot.shape == (640, 768, 3)
    table = outputs["table"]["text"][0].splitlines()
    assert table[0] == "| end_step | CLIP image | CLIP text |" and [r.split(" |")[0] for r in table[2:]] == [
        "| off", "| end_step=0", "| end_step=-1"]
    result = json.loads(outputs["json"]["text"][0])
    assert [r["setting"] for r in result["runs"]] == ["off", "end_step=0", "end_step=-1"]
    assert result["runs"][0]["schedule"] is None and result["runs"][1]["schedule"]["end_step"] == 0
    assert all(len(r["images"]) == 3 for r in result["runs"])


def test_scores_are_those_of_the_alignment_scores_node(sd):
    images, _, _, _, text = sweep(sd, values="0, -1")
    result = json.loads(text)
    for run, batch in zip(result["runs"], images.split(3)):
        alone = sd.node["MasaCtrlAlignmentScores"].execute(sd.models, batch, PROMPTS, "0").result[1]
        assert json.loads(alone)["images"] == run["images"]


def test_plot_and_grid_show_every_setting(sd):
    from masactrl_suite.evaluation.comfyui_sweep import TEXT_AXIS, CONSISTENCY
    from masactrl_suite.evaluation.plots import PlotPoint, marker_colour, tradeoff_plot

    images, grid, plot, _, text = sweep(sd, values="off, 0, 1, -1")
    runs = json.loads(text)["runs"]
    points = [PlotPoint(r["setting"], r["mean_over_targets"]["text_alignment"],
                        r["mean_over_targets"]["image_alignment"]) for r in runs]
    expected, axes = tradeoff_plot(points, TEXT_AXIS, CONSISTENCY["clip"][1], "MasaCtrl sweep over end_step (seed 7)")
    pixels = (plot[0].numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(pixels, np.asarray(expected))  # the plot of exactly these scores
    x, y = axes.to_pixel(points[-1].x, points[-1].y)  # drawn last: never covered by another point
    assert tuple(pixels[y, x]) == marker_colour(3, 4)
    assert grid.shape[0] == 1 and grid.shape[1] > 4 * 256 and grid.shape[2] > 3 * 256  # 4 rows, 3 columns
    assert images.shape == (12, 64, 64, 3)


def test_the_input_model_is_left_as_it_was(sd):
    from masactrl_suite.attention.comfyui_patches import installed_patches

    model = masactrl(sd, start_step=1)
    before = {site: patch.control for site, patch in installed_patches(model).items()}
    sweep(sd, model=model, parameter="layers", values="off, decoder, 2-6")
    assert {site: patch.control for site, patch in installed_patches(model).items()} == before
    assert not installed_patches(sd.model)


def test_progress_covers_every_run_and_interrupt_stops_it(sd):
    from comfy_harness import progress_updates, stops_when_interrupted

    seen = progress_updates(lambda: sweep(sd, values="off, -1", steps=2))
    assert [v for v, _ in seen] == [1, 2, 3, 4] and {t for _, t in seen} == {4}
    assert stops_when_interrupted(lambda: sweep(sd, values="off, -1", steps=2))


def test_bad_inputs_are_refused_before_sampling(sd, monkeypatch):
    """(ValueError: ComfyUI imported the pack under another name, so its SweepError is another class.)"""
    import comfy.sample

    monkeypatch.setattr(comfy.sample, "sample", lambda *a, **k: pytest.fail("sampled before checking the inputs"))
    with pytest.raises(ValueError, match="the model has no MasaCtrl: connect the MasaCtrl node's output"):
        sweep(sd, model=sd.model)
    with pytest.raises(ValueError, match=r"Schedule Sweep \(MasaCtrl\): values is empty"):
        sweep(sd, values="")
    with pytest.raises(ValueError, match=r"Schedule Sweep \(MasaCtrl\): end_step: 9 is out of range"):
        sweep(sd, values="0, 9")
    with pytest.raises(ValueError, match="consistency is dino, but no DINO model is loaded"):
        sweep(sd, consistency="dino")
    with pytest.raises(ValueError, match="score_models is a str"):
        sweep(sd, models="clip")
    with pytest.raises(ValueError, match="prompts has 4 lines, but the batch has 3 images of which 2 are targets"):
        sweep(sd, prompts="a\nb\nc\nd")
    with pytest.raises(ValueError, match="source_indices \\[0, 5\\] name image 5, but the latent batch has 3"):
        sweep(sd, model=masactrl(sd, source_indices="0,5"))
