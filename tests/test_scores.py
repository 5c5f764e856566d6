"""Alignment scores: the pairing of targets with sources and prompts (pure torch), and the score models in the
real ComfyUI, checked against an independent computation (numpy preprocessing, transformers' own feature
functions) on tiny random-weight CLIP and DINO models; model management, errors and the executor. ComfyUI
tests skip, with the reason printed, where no checkout is found."""
import json
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from masactrl_suite.evaluation.scores import alignment_scores, cosine, prompts_per_image

LOADER, SCORES = "MasaCtrlScoreModelLoader", "MasaCtrlAlignmentScores"
CLIP_MEAN, CLIP_STD = np.array([0.48145466, 0.4578275, 0.40821073]), np.array([0.26862954, 0.26130258, 0.27577711])
IMAGENET_MEAN, IMAGENET_STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
PROMPTS = ["a photo of a cat", "a cat standing", "a cat on the beach, watercolour", "a red bench"]


def test_each_target_is_scored_against_its_own_source_and_prompt():
    embeddings, texts = torch.randn(5, 8), torch.randn(3, 8)
    owner, prompts = [0, 0, 0, 3, 3], [None, "a", "b", None, "c"]
    scores = alignment_scores(owner, prompts, embeddings, texts, dino_images=embeddings * 2 + 1)
    unit = torch.nn.functional.normalize(embeddings, dim=-1)
    for s, (i, source) in zip(scores.images, enumerate(owner)):
        assert (s.index, s.source, s.prompt, s.is_source) == (i, source, prompts[i], i == source)
        if i == source:
            assert s.image_alignment is None and s.dino_alignment is None
        else:
            assert s.image_alignment == pytest.approx(float(unit[i] @ unit[source]), abs=1e-6)
            assert s.dino_alignment == pytest.approx(float(cosine(embeddings[i:i + 1] * 2 + 1,
                                                                  embeddings[source:source + 1] * 2 + 1)), abs=1e-6)
    text_rows = {1: 0, 2: 1, 4: 2}
    for i, row in text_rows.items():
        expected = float(unit[i] @ torch.nn.functional.normalize(texts[row], dim=0))
        assert scores.images[i].text_alignment == pytest.approx(expected, abs=1e-6)
    assert scores.images[0].text_alignment is None and scores.images[3].text_alignment is None
    assert scores.mean("image_alignment") == pytest.approx(
        np.mean([scores.images[i].image_alignment for i in (1, 2, 4)]))
    assert scores.mean("text_alignment") == pytest.approx(np.mean([scores.images[i].text_alignment for i in (1, 2, 4)]))
    assert scores.as_dict()["mean_over_targets"] == scores.summary() and len(scores.as_dict()["images"]) == 5
    assert alignment_scores(owner, prompts, embeddings, texts).mean("dino_alignment") is None


def test_prompts_are_one_per_image_one_per_target_or_one_for_all():
    owner = [0, 0, 0, 3, 3]
    assert prompts_per_image("s\na\nb\nt\nc", owner, "N") == ["s", "a", "b", "t", "c"]
    assert prompts_per_image("a\n\n b \nc\n", owner, "N") == [None, "a", "b", None, "c"]
    assert prompts_per_image("cat", owner, "N") == [None, "cat", "cat", None, "cat"]
    with pytest.raises(ValueError, match="N: prompts has 2 lines, but the batch has 5 images of which 3 are targets: "
                                         "write 5 lines .* 3 .* or 1"):
        prompts_per_image("a\nb", owner, "N")
    with pytest.raises(ValueError, match="prompts is empty"):
        prompts_per_image(" \n ", owner, "N")


@pytest.fixture(scope="module")
def scoring(comfy, tmp_path_factory):
    import folder_paths
    from comfy_harness import save_tiny_clip, save_tiny_dino

    root = tmp_path_factory.mktemp("score-models")
    clip_dir = save_tiny_clip(root / "clip_vision" / "tiny-clip", comfy.path)
    (root / "clip_vision" / "not-clip").mkdir()  # another model type in the same folder: not offered
    (root / "clip_vision" / "not-clip" / "config.json").write_text('{"model_type": "blip"}')
    dinos = {"tiny-dinov2": save_tiny_dino(root / "dino" / "tiny-dinov2", 2),
             "tiny-dino-vit": save_tiny_dino(root / "dino" / "tiny-dino-vit", 1)}
    folder_paths.add_model_folder_path("clip_vision", str(root / "clip_vision"))
    folder_paths.add_model_folder_path("dino", str(root / "dino"))
    rng = np.random.RandomState(0)
    source = rng.randint(0, 256, (32, 48, 3)).astype(np.uint8)  # 32 x 48: the processors' resize is a no-op
    pixels = np.stack([source, np.clip(source.astype(int) + rng.randint(-20, 20, source.shape), 0, 255),
                       rng.randint(0, 256, (32, 48, 3)), source]).astype(np.uint8)
    node = comfy.nodes.NODE_CLASS_MAPPINGS
    yield SimpleNamespace(comfy=comfy, node=node, root=root, clip_dir=clip_dir, dinos=dinos, pixels=pixels,
                          images=torch.from_numpy(pixels.astype(np.float32) / 255))
    for folder in ("clip_vision", "dino"):
        folder_paths.folder_names_and_paths[folder][0].remove(str(root / folder))


def load(scoring, dino="none"):
    return scoring.node[LOADER].execute("tiny-clip", dino).result[0]


def score(scoring, models, images=None, prompts="\n".join(PROMPTS), source_indices="0"):
    images = scoring.images if images is None else images
    return scoring.node[SCORES].execute(models, images, prompts, source_indices).result


def features(output):
    """transformers 4 returns the features, 5 a model output holding them in pooler_output."""
    return getattr(output, "pooler_output", output).detach().numpy()


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def independent_clip(path, pixels, prompts):
    from transformers import CLIPModel, CLIPTokenizer

    model = CLIPModel.from_pretrained(str(path)).eval()
    crop = pixels[:, :, 8:40].astype(np.float64) / 255  # the centre 32 x 32 of 32 x 48
    values = torch.from_numpy(((crop - CLIP_MEAN) / CLIP_STD).transpose(0, 3, 1, 2)).float()
    tokens = CLIPTokenizer.from_pretrained(str(path))(prompts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return unit(features(model.get_image_features(pixel_values=values))), unit(features(model.get_text_features(
            input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])))


def test_clip_scores_match_an_independent_computation(scoring):
    table, text, image_alignment, text_alignment, dino = score(scoring, load(scoring))
    result = json.loads(text)
    images, texts = independent_clip(scoring.clip_dir, scoring.pixels, PROMPTS)
    rows = result["images"]
    assert [r["source"] for r in rows] == [0, 0, 0, 0] and rows[0]["image_alignment"] is None
    for i in (1, 2, 3):
        assert rows[i]["image_alignment"] == pytest.approx(float(images[i] @ images[0]), abs=1e-5)
    for i in range(4):  # four prompt lines for four images: the source's own text score too
        assert rows[i]["text_alignment"] == pytest.approx(float(images[i] @ texts[i]), abs=1e-5)
    assert rows[3]["image_alignment"] == pytest.approx(1.0, abs=1e-6)  # an exact copy of the source
    assert image_alignment == pytest.approx(np.mean([float(images[i] @ images[0]) for i in (1, 2, 3)]), abs=1e-5)
    assert text_alignment == pytest.approx(np.mean([float(images[i] @ texts[i]) for i in (1, 2, 3)]), abs=1e-5)
    assert "Execution Blocked" not in str(dino) and "needs a DINO model" in dino.message
    lines = table.splitlines()
    assert lines[0] == "| image | source | CLIP image | CLIP text | prompt |" and len(lines) == 2 + 4 + 1
    assert lines[2].startswith("| 0 | (source) | – | ") and lines[3].startswith("| 1 | 0 | ")
    assert lines[-1].startswith(f"| mean of targets | | {image_alignment:.4f} | {text_alignment:.4f} |")


def independent_dino(path, pixels, version):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(path)).eval()
    if version == 2:  # shortest edge 32 (no resize), centre crop
        pixels = pixels[:, :, 8:40]
    else:  # ViT's processor: bilinear resize to 32 x 32, ImageNet statistics as DINO v1
        pixels = np.stack([np.asarray(Image.fromarray(p).resize((32, 32), Image.BILINEAR)) for p in pixels])
    values = (pixels.astype(np.float64) / 255 - IMAGENET_MEAN) / IMAGENET_STD
    with torch.no_grad():
        out = model(pixel_values=torch.from_numpy(values.transpose(0, 3, 1, 2)).float())
    return unit(out.last_hidden_state[:, 0].numpy())


@pytest.mark.parametrize("name,version", [("tiny-dinov2", 2), ("tiny-dino-vit", 1)])
def test_dino_scores_match_an_independent_computation(scoring, name, version):
    table, text, _, _, dino = score(scoring, load(scoring, name), source_indices="0,2")
    embeddings = independent_dino(scoring.dinos[name], scoring.pixels, version)
    rows = json.loads(text)["images"]
    assert [r["source"] for r in rows] == [0, 0, 2, 2]
    expected = {1: float(embeddings[1] @ embeddings[0]), 3: float(embeddings[3] @ embeddings[2])}
    for i, value in expected.items():
        assert rows[i]["dino_alignment"] == pytest.approx(value, abs=1e-4)
    assert rows[0]["dino_alignment"] is None and rows[2]["dino_alignment"] is None
    assert dino == pytest.approx(np.mean(list(expected.values())), abs=1e-4)
    assert "| DINO image |" in table.splitlines()[0]


def test_models_are_managed_and_offloaded_by_comfyui(scoring, monkeypatch):
    import comfy.model_management as mm

    models = load(scoring, "tiny-dinov2")
    first = score(scoring, models)[1]
    for model in (models.clip, models.dino):
        assert any(m.model is model.patcher for m in mm.current_loaded_models)
        assert model.patcher.load_device == mm.get_torch_device() and model.model.dtype == torch.float32
    mm.unload_all_models()
    assert not any(m.model is models.clip.patcher for m in mm.current_loaded_models)
    assert score(scoring, models)[1] == first  # loaded again: the same scores
    monkeypatch.setattr(mm, "should_use_fp16", lambda device=None, **kw: True)
    assert load(scoring).clip.model.dtype == torch.float16


def test_scoring_stops_when_interrupted(scoring):
    from comfy_harness import stops_when_interrupted

    models = load(scoring)
    assert stops_when_interrupted(lambda: score(scoring, models))


def test_model_folders_are_listed_by_type(scoring):
    schema = scoring.node[LOADER].define_schema()
    clip_names, dino_names = (i.options for i in schema.inputs)
    assert "tiny-clip" in clip_names and "not-clip" not in clip_names
    assert dino_names[0] == "none" and {"tiny-dinov2", "tiny-dino-vit"} <= set(dino_names)


def test_missing_or_broken_weights_name_the_folder_and_the_files(scoring, tmp_path):
    from masactrl_suite.model_files.score_models import load_clip, load_dino

    loader = scoring.node[LOADER]
    message = loader.validate_inputs(clip_name="clip-vit-large-patch14", dino_name="none")
    assert "the CLIP model 'clip-vit-large-patch14' was not found" in message
    assert str(scoring.root / "clip_vision") in message and "openai/clip-vit-large-patch14" in message
    assert "tokenizer.json" in loader.validate_inputs(clip_name="(no CLIP)", dino_name="none")
    assert "DINO model 'dinov2-base' was not found" in loader.validate_inputs(clip_name="tiny-clip",
                                                                               dino_name="dinov2-base")
    assert "facebook/dinov2-base" in loader.validate_inputs(clip_name="tiny-clip", dino_name="dinov2-base")
    with pytest.raises(FileNotFoundError, match="'gone' was not found.*Searched:"):
        loader.execute("gone", "none")
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'nowhere'} is missing every file"):
        load_clip(str(tmp_path / "nowhere"))
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text((scoring.clip_dir / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="partial is missing model.safetensors or pytorch_model.bin .*the "
                                                "weights.*; preprocessor_config.json.*; tokenizer.json or vocab.json"):
        load_clip(str(partial))
    for name in os.listdir(scoring.clip_dir):
        if name != "model.safetensors":
            (partial / name).write_bytes((scoring.clip_dir / name).read_bytes())
    (partial / "model.safetensors").write_bytes((scoring.clip_dir / "model.safetensors").read_bytes()[:1000])
    with pytest.raises(RuntimeError, match="could not load the CLIP model in .*partial.*download"):
        load_clip(str(partial))
    with pytest.raises(ValueError, match="holds a clip model, not a DINO model"):
        load_dino(str(scoring.clip_dir))
    with pytest.raises(ValueError, match="holds a vit model, not a CLIP model"):
        load_clip(str(scoring.dinos["tiny-dino-vit"]))


def test_bad_inputs_say_what_to_connect(scoring):
    models = load(scoring)
    with pytest.raises(ValueError, match="score_models is a str; connect Load Alignment Score Models"):
        score(scoring, "clip")
    with pytest.raises(ValueError, match="images has shape \\[32, 48, 3\\]; connect an IMAGE batch"):
        score(scoring, models, images=scoring.images[0])
    with pytest.raises(ValueError, match="prompts has 2 lines, but the batch has 4 images of which 3 are targets"):
        score(scoring, models, prompts="a\nb")
    with pytest.raises(ValueError, match="all are sources"):
        score(scoring, models, images=scoring.images[:1], prompts="a")
    with pytest.raises(ValueError, match="source_indices 'x'"):
        score(scoring, models, source_indices="x")


def test_graph_through_the_executor(scoring):
    import comfy_harness

    def colour(name, value):
        return {name: {"class_type": "EmptyImage",
                       "inputs": {"width": 48, "height": 32, "batch_size": 1, "color": value}}}

    graph = {**colour("red", 0xFF0000), **colour("pink", 0xFF2020), **colour("blue", 0x0000FF),
             "batch": {"class_type": "ImageBatch", "inputs": {"image1": ["red", 0], "image2": ["pink", 0]}},
             "batch3": {"class_type": "ImageBatch", "inputs": {"image1": ["batch", 0], "image2": ["blue", 0]}},
             "models": {"class_type": LOADER, "inputs": {"clip_name": "tiny-clip", "dino_name": "tiny-dinov2"}},
             "scores": {"class_type": SCORES, "inputs": {"score_models": ["models", 0], "images": ["batch3", 0],
                                                         "prompts": "a red square\na blue square",
                                                         "source_indices": "0"}},
             "table": {"class_type": "PreviewAny", "inputs": {"source": ["scores", 0]}},
             "dino": {"class_type": "PreviewAny", "inputs": {"source": ["scores", 4]}}}
    outputs = comfy_harness.run_graph(scoring.comfy, graph)
    table = outputs["table"]["text"][0].splitlines()
    assert len(table) == 2 + 3 + 1 and "| 1 | 0 |" in table[3] and "a blue square" in table[4]
    assert "| DINO image |" in table[0]
    assert float(outputs["dino"]["text"][0]) > -1
    # Without DINO a connected dino_alignment is an error in /history; unconnected, the UI output says why.
    graph["models"]["inputs"]["dino_name"] = "none"
    with pytest.raises(RuntimeError, match="'node_id': 'scores'.*dino_alignment needs a DINO model"):
        comfy_harness.run_graph(scoring.comfy, graph)
    del graph["dino"]
    outputs = comfy_harness.run_graph(scoring.comfy, graph)
    assert "table" in outputs and "dino_alignment needs a DINO model" in outputs["scores"]["unavailable_outputs"][0]
