"""BLIP captioning in the real ComfyUI: a tiny random-weight BlipForConditionalGeneration saved (Hugging Face
layout) into a temporary models/blip folder, loaded by the node under ComfyUI's model management, checked
against transformers' own BlipProcessor + generate, and run through ComfyUI's executor."""
import json
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

# The tiny model's builder, shared with tests/test_example_workflows.py (its test server's models/blip).
from comfy_harness import WORDS, save_tiny_blip

LOADER, CAPTION = "MasaCtrlBLIPLoader", "MasaCtrlBLIPCaption"
COLOURS = ((0, 0, 0), (255, 255, 255), None)  # black, white, noise


@pytest.fixture(scope="module")
def blip(comfy, tmp_path_factory):
    import folder_paths

    root = tmp_path_factory.mktemp("models") / "blip"
    model_dir = save_tiny_blip(root / "tiny-blip")
    folder_paths.add_model_folder_path("blip", str(root))
    node = comfy.nodes.NODE_CLASS_MAPPINGS
    out = folder_paths.get_output_directory()
    os.makedirs(out, exist_ok=True)
    names = []
    for i, colour in enumerate(COLOURS):
        pixels = (np.random.RandomState(i).rand(40, 48, 3) * 255).astype(np.uint8) if colour is None else \
            np.full((40, 48, 3), colour, np.uint8)
        names.append(f"blip_test_{i}.png")
        Image.fromarray(pixels).save(f"{out}/{names[-1]}")
    images = torch.cat([comfy.nodes.LoadImage().load_image(f"{n} [output]")[0] for n in names])
    model = node[LOADER].execute("tiny-blip").result[0]
    yield SimpleNamespace(comfy=comfy, node=node, root=root, dir=model_dir, model=model, images=images,
                          names=names, pil=[Image.open(f"{out}/{n}").convert("RGB") for n in names])
    folder_paths.folder_names_and_paths["blip"][0].remove(str(root))


def caption(blip, images=None, conditional_text="", min_length=2, max_length=12, num_beams=1, prefix="",
            suffix="", clip=None, model=None):
    return blip.node[CAPTION].execute(model or blip.model, blip.images if images is None else images,
                                      conditional_text, min_length, max_length, num_beams, prefix, suffix,
                                      clip).result


def direct_captions(blip, conditional_text, min_length, max_length, num_beams):
    """transformers' documented path, in fp32, from the PNG files: BlipProcessor(images, text) + generate."""
    from transformers import BlipForConditionalGeneration, BlipProcessor

    model = BlipForConditionalGeneration.from_pretrained(str(blip.dir), local_files_only=True).eval()
    processor = BlipProcessor.from_pretrained(str(blip.dir), local_files_only=True)
    inputs = processor(images=blip.pil, text=[conditional_text] * 3 if conditional_text else None,
                       return_tensors="pt")
    prompt = inputs["input_ids"].shape[1] - 1 if conditional_text else 1
    out = model.generate(**inputs, num_beams=num_beams, min_length=prompt + min_length,
                         max_length=prompt + max_length)
    return processor.batch_decode(out, skip_special_tokens=True)


def n_tokens(blip, text):
    return len(blip.model.processor.tokenizer(text, add_special_tokens=False)["input_ids"])


@pytest.mark.parametrize("conditional_text,num_beams", [("", 1), ("", 3), ("a photo of", 1), ("a photo of", 3)])
def test_captions_are_transformers_own_blip_captions(blip, conditional_text, num_beams):
    prompts, _, _ = caption(blip, conditional_text=conditional_text, num_beams=num_beams)
    expected = direct_captions(blip, conditional_text, 2, 12, num_beams)
    print(f"\n{conditional_text!r}, {num_beams} beam(s): {prompts}")
    assert len(prompts) == 3 and len(set(prompts)) > 1, "the images did not steer the captions"
    for got, full in zip(prompts, expected):  # BLIP's decoded output repeats the conditional text; ours does not
        assert full.startswith(conditional_text)
        assert got.replace(" ", "") == full[len(conditional_text):].replace(" ", "")


def test_prefix_suffix_and_the_three_outputs(blip):
    plain, _, _ = caption(blip)
    prompts, conditioning, text = caption(blip, prefix="a photo, ", suffix=", full body, feet, high quality")
    assert prompts == [f"a photo, {c}, full body, feet, high quality" for c in plain]
    assert text == "\n".join(prompts)
    from comfy_execution.graph_utils import ExecutionBlocker
    assert isinstance(conditioning, ExecutionBlocker) and "connect the clip input" in conditioning.message
    assert list(blip.node[CAPTION].OUTPUT_IS_LIST) == [True, False, False]


@pytest.mark.parametrize("min_length,max_length", [(0, 3), (6, 6), (2, 12), (9, 20)])
def test_min_and_max_length_count_caption_tokens(blip, min_length, max_length):
    for conditional_text in ("", "a picture of"):
        prompts, _, _ = caption(blip, conditional_text=conditional_text, min_length=min_length,
                                max_length=max_length, num_beams=2)
        lengths = [n_tokens(blip, p) for p in prompts]
        assert all(min_length <= n <= max_length for n in lengths), (prompts, lengths)
    if (min_length, max_length) == (2, 12):
        assert len(set(lengths)) > 1, "want captions of different lengths in one batch"


@pytest.mark.parametrize("num_beams", [1, 4])
def test_batch_of_one_chunks_and_reruns_give_the_same_captions(blip, num_beams):
    from masactrl_suite.model_files.blip_captioner import caption_images

    batch, _, _ = caption(blip, num_beams=num_beams)
    singles = [caption(blip, images=blip.images[i:i + 1], num_beams=num_beams)[0] for i in range(3)]
    assert singles == [[c] for c in batch]
    assert caption_images(blip.model, blip.images, "", 2, 12, num_beams, chunk=2) == batch
    assert caption(blip, num_beams=num_beams)[0] == batch


def test_conditioning_is_clip_text_encode_of_each_prompt(blip, checkpoint):
    from masactrl_suite.attention.comfyui_conditioning import encode_prompts

    nodes = blip.comfy.nodes
    clip = checkpoint.clip
    images = torch.cat([blip.images, blip.images[:1]])
    prompts, conditioning, _ = caption(blip, images=images, suffix=", high quality", clip=clip)
    assert len(prompts) == 4
    long = "a photo, " + ", ".join(WORDS * 3)  # over 77 tokens: three CLIP chunks, batched with a one-chunk prompt
    for prompts, conditioning in ((prompts, conditioning), (["a photo", long], encode_prompts(clip, ["a photo", long]))):
        (cond, opts), = conditioning
        assert cond.shape[0] == len(prompts) == opts["pooled_output"].shape[0]
        for i, prompt in enumerate(prompts):
            (row, row_opts), = nodes.CLIPTextEncode().encode(clip, prompt)[0]
            reps = cond.shape[1] // row.shape[1]  # ComfyUI's way to batch prompts of different lengths
            torch.testing.assert_close(cond[i:i + 1], row.repeat(1, reps, 1), rtol=0, atol=0)
            torch.testing.assert_close(opts["pooled_output"][i:i + 1], row_opts["pooled_output"], rtol=0, atol=0)
    assert cond.shape[1] == 231


def test_model_is_managed_and_offloaded_by_comfyui(blip, monkeypatch):
    import comfy.model_management as mm
    from masactrl_suite.model_files.blip_captioner import load_blip

    patcher = blip.model.patcher
    first, _, _ = caption(blip)
    assert any(m.model is patcher for m in mm.current_loaded_models)
    assert patcher.load_device == mm.get_torch_device() and patcher.offload_device == mm.text_encoder_offload_device()
    assert blip.model.blip.dtype == torch.float32  # the CPU: no fp16
    mm.unload_all_models()
    assert not any(m.model is patcher for m in mm.current_loaded_models)
    assert caption(blip)[0] == first  # loaded again, same captions
    monkeypatch.setattr(mm, "should_use_fp16", lambda device=None, **kw: True)
    assert load_blip(str(blip.dir)).blip.dtype == torch.float16


def test_progress_per_chunk_and_interruption(blip):
    from comfy_harness import progress_updates, stops_when_interrupted
    from masactrl_suite.model_files.blip_captioner import caption_images

    assert progress_updates(lambda: caption_images(blip.model, blip.images, "", 2, 12, 1, chunk=2)) == [(2, 3), (3, 3)]
    assert stops_when_interrupted(lambda: caption(blip))


def test_model_folders_listed(blip):
    import folder_paths

    assert folder_paths.get_folder_paths("blip")[0].endswith("models/blip")  # ComfyUI's own models/blip first
    nested = blip.root / "Salesforce" / "blip-nested"
    cached = blip.root / "models--Salesforce--blip" / "snapshots" / "0123abc"
    for folder in (nested, cached):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
    (blip.root / "empty").mkdir()
    (blip.root / "model_base_capfilt_large.pth").write_bytes(b"")  # the original BLIP's layout: not listed
    try:
        options = blip.node[LOADER].INPUT_TYPES()["required"]["model_name"][1]["options"]
        assert {"tiny-blip", "Salesforce/blip-nested", "models--Salesforce--blip/snapshots/0123abc",
                "empty"} <= set(options)
        assert not any(o.endswith(".pth") for o in options)
    finally:
        for p in (nested / "config.json", cached / "config.json"):
            p.unlink()


def test_missing_and_incomplete_models_name_the_folder_and_files(blip, tmp_path):
    from masactrl_suite.nodes.caption_nodes import NO_MODEL
    from masactrl_suite.model_files.blip_captioner import load_blip

    loader = blip.node[LOADER]
    message = loader.validate_inputs(NO_MODEL)
    assert "no BLIP captioning model was found" in message and str(blip.root) in message
    assert "Salesforce/blip-image-captioning-large" in message and "config.json, model.safetensors" in message
    assert "'gone' was not found" in loader.validate_inputs("gone") and loader.validate_inputs("tiny-blip") is True
    with pytest.raises(FileNotFoundError, match="'gone' was not found.*Searched:.*" + str(blip.root)):
        loader.execute("gone")
    with pytest.raises(FileNotFoundError, match=f"folder {tmp_path / 'nowhere'} is missing every file: the folder does not exist"):
        load_blip(str(tmp_path / "nowhere"))
    (blip.root / "empty").mkdir(exist_ok=True)
    with pytest.raises(FileNotFoundError, match=r"blip/empty is missing config.json .*; model.safetensors or "
                                                r"pytorch_model.bin.*; preprocessor_config.json.*; vocab.txt"):
        loader.execute("empty")
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("config.json", "vocab.txt", "preprocessor_config.json"):
        (partial / name).write_bytes((blip.dir / name).read_bytes() if (blip.dir / name).exists() else b"{}")
    with pytest.raises(FileNotFoundError, match=f"{partial} is missing model.safetensors or pytorch_model.bin"):
        load_blip(str(partial))
    (partial / "model.safetensors").write_bytes(b"truncated")
    with pytest.raises(RuntimeError, match=f"could not load the BLIP model in {partial}.*download"):
        load_blip(str(partial))
    (partial / "config.json").write_text('{"model_type": "bl')
    with pytest.raises(ValueError, match=f"{partial}/config.json is not valid JSON"):
        load_blip(str(partial))
    (partial / "config.json").write_text(json.dumps({"model_type": "blip-2", "architectures": ["Blip2Model"]}))
    with pytest.raises(ValueError, match="holds a blip-2 model.*not a BLIP captioning model"):
        load_blip(str(partial))


def test_bad_inputs_are_refused(blip):
    with pytest.raises(ValueError, match="min_length 8 is above max_length 4"):
        caption(blip, min_length=8, max_length=4)
    with pytest.raises(ValueError, match="plus max_length 500 exceeds.*lower max_length"):
        caption(blip, max_length=500)
    with pytest.raises(ValueError, match="connect Load BLIP Caption Model"):
        caption(blip, model="not a model")


def graph(blip, **caption_inputs):
    g = {f"load{i}": {"class_type": "LoadImage", "inputs": {"image": f"{n} [output]"}} for i, n in enumerate(blip.names)}
    g["batch01"] = {"class_type": "ImageBatch", "inputs": {"image1": ["load0", 0], "image2": ["load1", 0]}}
    g["batch"] = {"class_type": "ImageBatch", "inputs": {"image1": ["batch01", 0], "image2": ["load2", 0]}}
    g["blip"] = {"class_type": LOADER, "inputs": {"model_name": "tiny-blip"}}
    g["caption"] = {"class_type": CAPTION, "inputs": {
        "blip_model": ["blip", 0], "image": ["batch", 0], "conditional_text": "a photo of", "min_length": 2,
        "max_length": 12, "num_beams": 3, "prompt_prefix": "", "prompt_suffix": ", high quality", **caption_inputs}}
    g["each"] = {"class_type": "PreviewAny", "inputs": {"source": ["caption", 0]}}
    g["all"] = {"class_type": "PreviewAny", "inputs": {"source": ["caption", 2]}}
    return g


def test_graph_through_the_executor(blip, checkpoint):
    from comfy_harness import run_graph

    g = graph(blip, clip=["ckpt", 1])
    sampler = {"model": ["ckpt", 0], "seed": 0, "steps": 1, "cfg": 7.0, "sampler_name": "euler",
               "scheduler": "normal", "negative": ["negative", 0], "denoise": 1.0}
    g.update({
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint.name}},
        "negative": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["ckpt", 1]}},
        # The batch: one sampler run with the conditioning output, one row per image.
        "latents": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 3}},
        "sample": {"class_type": "KSampler", "inputs": {**sampler, "positive": ["caption", 1],
                                                         "latent_image": ["latents", 0]}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["ckpt", 2]}},
        "save": {"class_type": "SaveImage", "inputs": {"images": ["decode", 0], "filename_prefix": "blip_batch"}},
        # The prompt list: CLIP Text Encode and KSampler (one latent) run once per prompt.
        "encode_each": {"class_type": "CLIPTextEncode", "inputs": {"text": ["caption", 0], "clip": ["ckpt", 1]}},
        "latent": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "sample_each": {"class_type": "KSampler", "inputs": {**sampler, "positive": ["encode_each", 0],
                                                              "latent_image": ["latent", 0]}},
        "decode_each": {"class_type": "VAEDecode", "inputs": {"samples": ["sample_each", 0], "vae": ["ckpt", 2]}},
        "save_each": {"class_type": "SaveImage", "inputs": {"images": ["decode_each", 0],
                                                            "filename_prefix": "blip_each"}},
    })
    outputs = run_graph(blip.comfy, g)
    expected = caption(blip, conditional_text="a photo of", num_beams=3, suffix=", high quality")[0]
    assert list(outputs["each"]["text"]) == expected
    assert list(outputs["all"]["text"]) == ["\n".join(expected)]
    assert len(outputs["save"]["images"]) == 3
    assert len(outputs["save_each"]["images"]) == 3


def test_executor_errors_are_clear(blip):
    import comfy_harness

    g = graph(blip)
    g["blip"]["inputs"]["model_name"] = "blip-image-captioning-large"
    with pytest.raises(ValueError, match="'blip-image-captioning-large' was not found.*Searched.*Salesforce"):
        comfy_harness.run_graph(blip.comfy, g)
    # conditioning used without a clip: an error of BLIP Caption, which /history keeps (ComfyUI 0.3.64 reports a
    # blocked output's reason over the websocket only); unconnected, the reason is the node's UI output.
    g = graph(blip)
    outputs = comfy_harness.run_graph(blip.comfy, g)
    assert outputs["caption"]["unavailable_outputs"][0].startswith("BLIP Caption (MasaCtrl): the conditioning output "
                                                                   "needs a CLIP: connect the clip input")
    assert len(outputs["each"]["text"]) == 3
    g["zero"] = {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["caption", 1]}}
    g["show"] = {"class_type": "PreviewAny", "inputs": {"source": ["zero", 0]}}
    with pytest.raises(RuntimeError, match=r"'node_id': 'caption'.*BLIP Caption \(MasaCtrl\): the conditioning output "
                                           "needs a CLIP: connect the clip input"):
        comfy_harness.run_graph(blip.comfy, g)
