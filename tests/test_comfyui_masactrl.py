"""MasaCtrl in the real ComfyUI: random-weight SD1.5 checkpoints, ComfyUI's own loader, samplers and
executor. Skipped, with the reason printed, where no ComfyUI checkout is found."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from comfy_harness import call_node, run_graph, schema_defaults

NODE, BATCH = "MasaCtrlMutualSelfAttention", "MasaCtrlBatchConditioning"
# The test checkpoint's UNet has 11 self-attention layers: decoder layers are 5-10.
SCHEDULE = dict(start_step=2, start_layer=5)


@pytest.fixture(scope="module")
def sd15(checkpoint):
    encode = checkpoint.encode
    positive = checkpoint.node[BATCH].execute(encode("a photo of a corgi"),
                                              encode("a photo of a corgi jumping")).result[0]
    return SimpleNamespace(**vars(checkpoint), positive=positive, negative=encode(""))


def masactrl(sd15, model=None, **inputs):
    return call_node(sd15.comfy, NODE, model=model or sd15.model, **inputs)[0]


def sample(sd15, model, sampler="euler", steps=6, size=(64, 64), negative=None, denoise=1.0, last_step=None,
           positive=None, batch=2, seed=3):
    latent = {"samples": torch.zeros(batch, 4, size[1] // 8, size[0] // 8)}
    out = sd15.nodes.common_ksampler(model, seed, steps, 6.0, sampler, "normal", positive or sd15.positive,
                                     negative or sd15.negative, latent, denoise=denoise, last_step=last_step)
    return out[0]["samples"]


def reference_masactrl(model, start_step, start_layer):
    """An independent statement of MasaCtrl in ComfyUI, through a different hook (attn1_patch, before
    the projections) and ComfyUI's own attention: in active steps and layers, each image's self-attention
    context is the source image's hidden states, per cond/uncond chunk. For this UNet (one transformer
    per site) ComfyUI's transformer_index is MasaCtrl's layer number."""
    def patch(n, context, value, extra_options):
        sigmas, sigma = extra_options["sample_sigmas"], float(extra_options["sigmas"][0])
        exact = torch.isclose(sigmas, torch.tensor(sigma), rtol=1e-4).nonzero()
        step = int(exact[0]) if len(exact) else int((sigmas > sigma).sum()) - 1
        if step < start_step or extra_options["transformer_index"] < start_layer:
            return n, context, value
        chunks = len(extra_options["cond_or_uncond"])
        per = n.shape[0] // chunks
        source = n.view(chunks, per, *n.shape[1:])[:, :1].expand(-1, per, -1, -1).reshape(n.shape)
        return n, source, source

    m = model.clone()
    m.set_model_attn1_patch(patch)
    return m


@pytest.mark.parametrize("sampler,kwargs", [("euler", {}), ("dpmpp_2m", {}), ("heun", {}),
                                            ("euler", {"denoise": 0.6}), ("euler", {"last_step": 4}),
                                            ("euler", {"size": (64, 96)}), ("euler", {"size": (112, 48)})])
def test_node_is_the_published_algorithm(sd15, sampler, kwargs):
    plain = sample(sd15, sd15.model, sampler, **kwargs)
    ours = sample(sd15, masactrl(sd15, **SCHEDULE), sampler, **kwargs)
    reference = sample(sd15, reference_masactrl(sd15.model, 2, 5), sampler, **kwargs)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-4)
    assert (ours[1] - plain[1]).abs().max() > 1e-2, "MasaCtrl did not change the target"
    torch.testing.assert_close(ours[0], plain[0], rtol=0, atol=1e-4)  # the source follows its own path


def test_mutual_passes_run_on_the_kernel_comfyui_chose(sd15, monkeypatch):
    """Where ComfyUI runs a real kernel (here attention_pytorch, as with --use-pytorch-cross-attention), the
    MasaCtrl layers run on it too: each run's queries against its source's keys, same numbers as torch SDPA."""
    import comfy.ldm.modules.attention as attention
    mutual_calls = []

    def kernel(q, k, v, heads, **kwargs):
        mutual_calls.append(q.shape[1] == 2 * k.shape[1])  # source + target queries, the source's keys
        return attention.attention_pytorch(q, k, v, heads, **kwargs)
    monkeypatch.setattr(attention, "optimized_attention", kernel)
    on_kernel = masactrl(sd15, **SCHEDULE)  # the node passes ComfyUI's optimized_attention as it is now
    monkeypatch.undo()
    ours = sample(sd15, on_kernel)
    torch.testing.assert_close(ours, sample(sd15, masactrl(sd15, **SCHEDULE)), rtol=0, atol=1e-4)
    assert any(mutual_calls) and not all(mutual_calls)  # active steps grouped; inactive steps plain


def record_cond_or_uncond(model):
    """Wrap the installed patches to see how ComfyUI batched cond and uncond in each call."""
    seen, m = [], model.clone()
    for site, attn1 in model.model_options["transformer_options"]["patches_replace"]["attn1"].items():
        def recorder(q, k, v, extra_options, attn1=attn1):
            seen.append(tuple(extra_options["cond_or_uncond"]))
            return attn1(q, k, v, extra_options)
        m.set_model_attn1_replace(recorder, *site)
    return m, seen


def test_same_result_when_comfyui_runs_cond_and_uncond_apart_or_together(sd15):
    # A negative prompt repeated 5x along its tokens is the same prompt to cross-attention, but ComfyUI
    # cannot batch it with the 77-token positive (lengths differ > 4x), so it runs cond and uncond apart.
    concat = sd15.nodes.ConditioningConcat()
    long_negative = sd15.negative
    for _ in range(4):
        long_negative = concat.concat(long_negative, sd15.negative)[0]
    patched, seen = record_cond_or_uncond(masactrl(sd15, **SCHEDULE))
    together = sample(sd15, patched)
    assert set(seen) == {(1, 0)}
    seen.clear()
    apart = sample(sd15, patched, negative=long_negative)
    assert set(seen) == {(0,), (1,)}
    torch.testing.assert_close(apart, together, rtol=0, atol=1e-4)


def test_input_model_is_never_mutated_and_no_state_leaks(sd15):
    before_options = repr(sd15.model.model_options)
    plain_before = sample(sd15, sd15.model)
    patched = masactrl(sd15, **SCHEDULE)
    first = sample(sd15, patched)
    three = sd15.node[BATCH].execute(sd15.positive, sd15.encode("a photo of a corgi sitting")).result[0]
    other_size = sample(sd15, patched, size=(64, 96), batch=3, positive=three)  # another run of the same model
    assert other_size.shape[0] == 3
    assert torch.equal(sample(sd15, patched), first)
    assert torch.equal(sample(sd15, sd15.model), plain_before)
    assert repr(sd15.model.model_options) == before_options


def test_start_step_past_the_last_step_is_refused_when_sampling_starts(sd15):
    # Once a silent plain run (issue 14): a schedule that cannot act on this run's steps is an error naming it.
    with pytest.raises(ValueError, match="start_step 6 is past the last step of this 6-step run"):
        sample(sd15, masactrl(sd15, start_step=6, start_layer=0))


def test_percent_schedule(sd15):
    everywhere = sample(sd15, masactrl(sd15, start_step=0, start_layer=5))
    by_percent = sample(sd15, masactrl(sd15, schedule_by="percent", start_percent=0.0, end_percent=1.0,
                                       start_layer=5))
    assert torch.equal(by_percent, everywhere)
    # Once a silent plain run (issue 14): an empty percent window is refused when the node runs.
    with pytest.raises(ValueError, match="start_percent 0 is not below end_percent 0, so MasaCtrl would act on no"):
        masactrl(sd15, schedule_by="percent", start_percent=0.0, end_percent=0.0, start_layer=5)


def test_batch_conditioning_stacks_prompts_and_refuses_what_it_would_drop(sd15):
    batch = sd15.nodes.NODE_CLASS_MAPPINGS[BATCH].execute
    short, long_prompt = sd15.encode("a corgi"), sd15.encode("a corgi, " * 30)  # 77 and 154 tokens
    (cond, opts), = batch(short, long_prompt).result[0]
    assert cond.shape == (2, 154, 768)
    # the short prompt is repeated along its tokens, which cross-attention cannot tell apart
    assert torch.equal(cond[0, :77], short[0][0][0]) and torch.equal(cond[0, 77:], short[0][0][0])
    assert torch.equal(cond[1], long_prompt[0][0][0])
    assert opts["pooled_output"].shape[0] == 2
    three = batch(batch(short, short).result[0], long_prompt).result[0]
    assert three[0][0].shape[0] == 3
    with_control = [[long_prompt[0][0], {**long_prompt[0][1], "control": object()}]]
    with pytest.raises(ValueError, match="target carries \\['control'\\].*after this node"):
        batch(short, with_control)
    with pytest.raises(ValueError, match="source has 1 conditioning entries and target has 2"):
        batch(short, short + short)


def test_layer_map_read_from_real_sd15_and_sdxl_unets(comfy):
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    from masactrl_suite.attention import SD1_LAYERS, SDXL_LAYERS
    from masactrl_suite.attention.comfyui_patches import layer_map_of

    from comfy_harness import COMMON_UNET, SD15_FULL_UNET

    sdxl = dict(COMMON_UNET, model_channels=320, in_channels=4, out_channels=4, num_res_blocks=[2, 2, 2],
                channel_mult=[1, 2, 4], transformer_depth=[0, 0, 2, 2, 10, 10], transformer_depth_middle=10,
                transformer_depth_output=[0, 0, 0, 2, 2, 2, 10, 10, 10], context_dim=2048, num_head_channels=64,
                num_heads=-1, use_linear_in_transformer=True, adm_in_channels=2816, num_classes="sequential")
    from masactrl_suite.attention.comfyui_patches import capture_sites

    all_parts = ("encoder", "middle", "decoder")
    # Mask maps at 1/4 of the latent: SD1.5's 16x16 layers at 512 px, as the reference's `N == 16 * 16`.
    quarter = {"sd15": [4, 5, 7, 8, 9], "sdxl": list(range(4, 64))}
    for name, config, expected in (("sd15", dict(COMMON_UNET, **SD15_FULL_UNET), SD1_LAYERS),
                                   ("sdxl", sdxl, SDXL_LAYERS)):
        with torch.device("meta"):
            unet = UNetModel(**config, device="meta")
        assert layer_map_of(unet) == expected
        assert sorted(capture_sites(unet, 2, all_parts)) == quarter[name]
    assert sorted(capture_sites(unet, 1, ("decoder",))) == list(range(64, 70))  # SDXL's last level


def test_model_without_unet_is_refused_with_a_clear_error(comfy):
    from comfy.model_patcher import ModelPatcher
    from comfy.supported_models import AuraFlow

    config = AuraFlow(dict(dim=64, n_layers=2, n_double_layers=1, n_heads=2,
                                                  global_conddim=64, cond_seq_dim=32, max_seq=64))
    dit = ModelPatcher(config.get_model({}), torch.device("cpu"), torch.device("cpu"))
    with pytest.raises(ValueError, match="MasaCtrl patches UNet models.*MMDiT"):
        call_node(comfy, NODE, model=dit)
    assert "patches_replace" not in dit.model_options.get("transformer_options", {})


# --- whole graphs through ComfyUI's validator and executor --------------------------------------

def graph(ckpt, masactrl_inputs=({},), batch=2, size=(64, 64), steps=4, sampler="euler"):
    """CheckpointLoaderSimple -> two CLIPTextEncode -> batch -> [MasaCtrl ->] KSampler -> VAEDecode -> SaveImage,
    one MasaCtrl/KSampler/Save branch per entry of masactrl_inputs (None: no MasaCtrl)."""
    from masactrl_suite.nodes.masactrl_nodes import MasaCtrl

    g = {"ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
         "src": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a corgi", "clip": ["ckpt", 1]}},
         "tgt": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a corgi jumping", "clip": ["ckpt", 1]}},
         "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["ckpt", 1]}},
         "pos": {"class_type": BATCH, "inputs": {"source": ["src", 0], "target": ["tgt", 0]}},
         "latent": {"class_type": "EmptyLatentImage",
                    "inputs": {"width": size[0], "height": size[1], "batch_size": batch}}}
    for i, inputs in enumerate(masactrl_inputs):
        model = ["ckpt", 0]
        if inputs is not None:
            defaults = schema_defaults(MasaCtrl)
            g[f"masactrl{i}"] = {"class_type": NODE, "inputs": {**defaults, **inputs, "model": ["ckpt", 0]}}
            model = [f"masactrl{i}", 0]
        g[f"sampler{i}"] = {"class_type": "KSampler", "inputs": {
            "model": model, "seed": 7, "steps": steps, "cfg": 6.0, "sampler_name": sampler, "scheduler": "normal",
            "positive": ["pos", 0], "negative": ["neg", 0], "latent_image": ["latent", 0], "denoise": 1.0}}
        g[f"decode{i}"] = {"class_type": "VAEDecode", "inputs": {"samples": [f"sampler{i}", 0], "vae": ["ckpt", 2]}}
        g[f"save{i}"] = {"class_type": "SaveImage",
                         "inputs": {"images": [f"decode{i}", 0], "filename_prefix": f"masactrl_test_{i}"}}
    return g


def saved_images(comfy, outputs, node):
    return [np.asarray(Image.open(comfy.folder_paths.get_output_directory() + "/" + img["filename"]))
            for img in outputs[node]["images"]]


def test_graph_runs_end_to_end_and_schedules_do_not_interfere(sd15):
    comfy = sd15.comfy
    a, b = dict(SCHEDULE), dict(start_step=1, start_layer=7)
    together = run_graph(comfy, graph(sd15.name, (a, b, None)))
    alone_a = run_graph(comfy, graph(sd15.name, (a,)))
    alone_b = run_graph(comfy, graph(sd15.name, (b,)))
    images = {k: saved_images(comfy, together, f"save{k}") for k in range(3)}
    assert len(images[0]) == 2 and images[0][0].shape == (64, 64, 3)
    assert all(np.array_equal(x, y) for x, y in zip(images[0], saved_images(comfy, alone_a, "save0")))
    assert all(np.array_equal(x, y) for x, y in zip(images[1], saved_images(comfy, alone_b, "save0")))
    assert not np.array_equal(images[0][1], images[2][1]), "MasaCtrl did not change the target image"


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m", "heun"])
def test_graph_with_each_sampler_and_a_non_square_latent(sd15, sampler):
    outputs = run_graph(sd15.comfy, graph(sd15.name, (SCHEDULE,), size=(96, 64), sampler=sampler))
    assert [img.shape for img in saved_images(sd15.comfy, outputs, "save0")] == [(64, 96, 3)] * 2


def test_graph_with_a_single_image_batch_fails_with_the_fix(sd15):
    with pytest.raises(RuntimeError, match="at least one target.*batch_size 2"):
        run_graph(sd15.comfy, graph(sd15.name, (SCHEDULE,), batch=1))


def other_packs_patch(scale, rows: list):
    """Stands for another attention pack's replace patch (StyleAligned-like on attn1, IPAdapter-like on attn2):
    ComfyUI's own attention with its output scaled, appending the rows it computes to `rows`. A function, not
    an object: ModelPatcher.clone() deep-copies patch objects (and their counters), not functions."""
    from comfy.ldm.modules.attention import optimized_attention

    def patch(q, k, v, extra_options):
        rows.append(q.shape[0])
        return optimized_attention(q, k, v, extra_options["n_heads"]) * scale
    return patch


def with_other_packs(sd15):
    from masactrl_suite.attention.comfyui_patches import layer_map_of

    model = sd15.model.clone()
    attn1_rows, attn2_rows = [], []
    attn1, attn2 = other_packs_patch(0.9, attn1_rows), other_packs_patch(1.1, attn2_rows)
    for site in layer_map_of(model.get_model_object("diffusion_model")).sites:
        model.set_model_attn1_replace(attn1, *site)
        model.set_model_attn2_replace(attn2, *site)
    return model, attn1, attn1_rows, attn2_rows


def test_other_packs_attention_patches_keep_acting(sd15):
    """MasaCtrl wraps another pack's attn1 replace instead of dropping it: that patch still makes every step
    MasaCtrl skips and the source rows of the steps it acts in, so the source comes out exactly as with the
    other pack alone; the other pack's attn2 patches act throughout."""
    from masactrl_suite.attention.comfyui_patches import replace_control

    other, attn1, attn1_rows, attn2_rows = with_other_packs(sd15)
    plain = sample(sd15, sd15.model)
    alone = sample(sd15, other)
    assert (alone - plain).abs().max() > 1e-2, "the stand-in patches must change the result to be seen"
    attn1_rows.clear(), attn2_rows.clear()
    patched = masactrl(sd15, other, **SCHEDULE)
    ours = sample(sd15, patched)
    steps, layers, rows = 6, 11, 4  # (source + target) x (cond + uncond)
    assert sum(attn2_rows) == steps * layers * rows
    # MasaCtrl's layers 5-10 from step 2: there the other patch runs for the source rows (it gets the whole
    # batch, as it expects, and MasaCtrl keeps its source rows); elsewhere it is the only attn1.
    assert sum(attn1_rows) == steps * layers * rows
    torch.testing.assert_close(ours[0], alone[0], rtol=0, atol=1e-4)
    assert (ours[1] - alone[1]).abs().max() > 1e-2, "MasaCtrl did not change the target"
    # Removing MasaCtrl gives the other pack's patch back at every site, and the input model kept it throughout.
    torch.testing.assert_close(sample(sd15, replace_control(patched, None)), alone, rtol=0, atol=0)
    assert all(p is attn1 for p in other.model_options["transformer_options"]["patches_replace"]["attn1"].values())
