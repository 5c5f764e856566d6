"""Grid Sampling (MasaCtrl) on diffusion transformers in the real ComfyUI: tiny random-weight Flux.1, Flux Fill, a
Flux ControlNet and SD3 (MMDiT-X) built from ComfyUI's own classes. Where the model is made per-token (attention
limited to the text and the token itself, or a test-only diffusion model returning a per-token function of its
inputs), a tile's output must equal the untiled output at its tokens: exactly what positions, concat channels and
ControlNet residuals cropped per tile have to give."""
from types import SimpleNamespace

import pytest
import torch

from comfy_harness import call_node, init_random_
from tiny_dit import FLUX, prompts, sample, sampler_run, tiny_model

GRID = "MasaCtrlGridSampling"
TEXT = 5  # the tiny prompts' tokens
CFG = {"flux": 1.0, "sd3": 3.0}


@pytest.fixture(scope="module")
def dit(comfy):
    flux_prompts, sd3_prompts = prompts(2, TEXT), prompts(2, TEXT, guidance=None)
    return SimpleNamespace(comfy=comfy, models={"flux": tiny_model("flux"), "sd3": tiny_model("sd3")},
                           prompts={"flux": flux_prompts, "sd3": sd3_prompts})


def grid(dit, model, tile=64, overlap=16, per_batch=0):
    return call_node(dit.comfy, GRID, model=model, tile_width=tile, tile_height=tile, overlap=overlap,
                     blend="linear", tiles_per_batch=per_batch)[0]


def run(dit, model, family="flux", height=8, width=12, steps=2, prompt=None, options=None):
    positive, negative = prompt or dit.prompts[family]
    job = sampler_run(batch=2, height=height, width=width, steps=steps)
    return sample(model, job, positive, negative, CFG[family], model_options_update=options)


def per_token_attention(func, q, k, v, heads, *args, mask=None, skip_reshape=False, skip_output_reshape=False,
                        **kwargs):
    """optimized_attention_override that lets every token attend only to the text and to itself: Flux becomes a
    per-token model whose image tokens still see the text through RoPE, i.e. through their positions."""
    if not skip_reshape:
        q, k, v = (t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in (q, k, v))
    tokens = q.shape[2]
    allowed = torch.eye(tokens, dtype=torch.bool)
    allowed[:, :TEXT] = True
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    return out if skip_output_reshape else out.transpose(1, 2).flatten(-2)


PER_TOKEN = {"transformer_options": {"optimized_attention_override": per_token_attention}}


# -- one tile, many tiles ------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_one_tile_is_exactly_the_untiled_result(dit, family):
    model = dit.models[family]
    assert torch.equal(run(dit, grid(dit, model, tile=1024), family), run(dit, model, family))


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_many_tiles_batched_equal_one_by_one_and_differ_from_untiled(dit, family):
    """The wrapper acts on both families (SD3's MMDiT calls no DIFFUSION_MODEL wrapper: the grid sits at
    APPLY_MODEL), and batching tiles changes nothing."""
    model = dit.models[family]
    batched = run(dit, grid(dit, model, tile=64, overlap=16), family, 8, 20)
    assert batched.shape == (2, 16, 8, 20)
    assert torch.allclose(batched, run(dit, grid(dit, model, tile=64, overlap=16, per_batch=1), family, 8, 20),
                          atol=1e-5)
    assert not torch.allclose(batched, run(dit, model, family, 8, 20), atol=1e-3)


# -- positions ----------------------------------------------------------------------------------------------

def test_tile_tokens_carry_their_whole_image_positions(dit):
    """The ids Flux's blocks get (recorded by a post_input patch after the grid's): a tile's rows equal the whole
    image's ids at the tile's tokens; and with a per-token Flux the tiled result equals the untiled one."""
    from masactrl_suite.completion.tiles import plan_tiles

    seen = []

    def record(args):
        seen.append(args["img_ids"].clone())
        return args
    recording = dit.models["flux"].clone()
    recording.set_model_post_input_patch(record)
    run(dit, recording, height=8, width=20, steps=1)
    whole = seen[-1][0].reshape(4, 10, 3)
    seen.clear()
    run(dit, grid(dit, recording, tile=64, overlap=16), height=8, width=20, steps=1)
    tiles = plan_tiles(8, 20, 8, 8, 2, 2)
    ids = seen[-1]
    assert ids.shape[0] == 2 * len(tiles) and len(tiles) > 2
    for index, tile in enumerate(tiles):
        expected = whole[tile.top // 2:(tile.top + tile.height) // 2, tile.left // 2:(tile.left + tile.width) // 2]
        for row in (2 * index, 2 * index + 1):
            assert torch.equal(ids[row].reshape(expected.shape), expected)

    model = dit.models["flux"]
    untiled = run(dit, model, height=8, width=20, options=PER_TOKEN)
    assert torch.allclose(run(dit, grid(dit, model), height=8, width=20, options=PER_TOKEN), untiled, atol=1e-5)


# -- ControlNet residuals and Flux Fill's concat channels --------------------------------------------------------

@pytest.fixture(scope="module")
def fill(dit):
    """A tiny Flux Fill (96 input channels per latent pixel: latent, masked image, 8x8 mask), an XLabs-style Flux
    ControlNet built from ComfyUI's ControlNetFlux, and conditioning carrying both."""
    import comfy.controlnet
    import comfy.ldm.flux.controlnet
    import comfy.model_patcher
    import comfy.ops
    import comfy.supported_models

    config = comfy.supported_models.Flux({**FLUX, "in_channels": 96})
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    init_random_(model.diffusion_model, 0)
    cpu = torch.device("cpu")
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)
    net = comfy.ldm.flux.controlnet.ControlNetFlux(operations=comfy.ops.disable_weight_init, dtype=torch.float32,
                                                   device=cpu, **FLUX)
    init_random_(net, 3)
    control = comfy.controlnet.ControlNet(net, load_device=cpu, manual_cast_dtype=None, extra_conds=["y", "guidance"])
    generator = torch.Generator().manual_seed(4)
    hint = torch.rand(1, 64, 160, 3, generator=generator)
    image, mask = torch.randn(1, 16, 8, 20, generator=generator), (torch.rand(1, 1, 64, 160, generator=generator) > .5)
    positive, negative = prompts(2, TEXT)
    positive, negative = dit.comfy.nodes.ControlNetApplyAdvanced().apply_controlnet(positive, negative, control, hint, 0.9,
                                                                               0.0, 1.0)
    fill_conds = {"concat_latent_image": image, "concat_mask": mask.float()}
    positive, negative = ([[c, {**d, **fill_conds}] for c, d in cond] for cond in (positive, negative))
    return SimpleNamespace(model=patcher, prompt=(positive, negative))


class PerTokenFlux:
    """A test-only DIFFUSION_MODEL wrapper in place of the transformer: a per-token function of everything a tile's
    call carries, i.e. x with Flux Fill's concat channels, the timestep, and every ControlNet residual mapped back
    to the latent pixels of its token. Tiled equals untiled here if and only if each tile gets its own crop."""

    def __init__(self):
        self.mix = torch.randn(16, 96, generator=torch.Generator().manual_seed(5)) / 10

    def __call__(self, executor, x, timestep, context, y, guidance, ref_latents, control, transformer_options,
                 **kwargs):
        assert x.shape[1] == 96
        out = torch.einsum("oc,bchw->bohw", self.mix, x) * timestep.view(-1, 1, 1, 1) / 1000 + context.mean()
        residuals = [r for key in ("input", "output") for r in (control or {}).get(key, []) if r is not None]
        assert residuals
        tokens = sum(residuals)  # [B, tokens, 64] = 16 channels x 2 x 2 pixels per token
        rows, columns = x.shape[-2] // 2, x.shape[-1] // 2
        pixels = tokens.reshape(x.shape[0], rows, columns, 16, 2, 2).permute(0, 3, 1, 4, 2, 5)
        return out + pixels.reshape(x.shape[0], 16, 2 * rows, 2 * columns) / len(residuals)


def test_controlnet_residuals_and_fill_channels_are_cropped_per_tile(dit, fill):
    import comfy.patcher_extension

    per_token = fill.model.clone()
    per_token.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "test_per_token", PerTokenFlux())
    untiled = run(dit, per_token, height=8, width=20, prompt=fill.prompt)
    tiled = run(dit, grid(dit, per_token, tile=64, overlap=16), height=8, width=20, prompt=fill.prompt)
    assert torch.allclose(tiled, untiled, atol=1e-5)


def test_fill_and_controlnet_sample_on_the_real_transformer(dit, fill):
    """The real blocks add the cropped residuals to the tile's tokens and read its concat channels."""
    tiled = run(dit, grid(dit, fill.model, tile=64, overlap=16), height=8, width=20, prompt=fill.prompt)
    assert tiled.shape == (2, 16, 8, 20) and bool(tiled.isfinite().all())


# -- MasaCtrl on the grid ---------------------------------------------------------------------------------------

def test_masactrl_on_the_grid_reads_each_tiles_own_source(dit):
    """Row 0 is the source, row 1 the target. The source's result is bit-identical to grid sampling without
    MasaCtrl, the target's is not; and MasaCtrl outside the grid (its call made for the whole batch, re-derived for
    each batch of tiles) gives exactly what MasaCtrl inside the grid (seeing the tiled call itself) gives."""
    model = dit.models["flux"]

    def masactrl(m):
        return call_node(dit.comfy, "MasaCtrlMutualSelfAttention", model=m, start_step=0, start_layer=0)[0]
    plain = run(dit, grid(dit, model), height=8, width=20)
    outside = run(dit, grid(dit, masactrl(model)), height=8, width=20)  # MasaCtrl's wrapper outermost
    inside = run(dit, masactrl(grid(dit, model)), height=8, width=20)
    assert torch.equal(outside[0], plain[0])
    assert not torch.allclose(outside[1], plain[1], atol=1e-4)
    assert torch.equal(outside, inside)


# -- bad input ---------------------------------------------------------------------------------------------------

def test_bad_inputs_are_refused_naming_the_input_and_the_fix(dit):
    from masactrl_suite.completion.comfyui_grid import GridDenoiser, dit_layout

    with pytest.raises(ValueError, match=r"tile_width is 72, not a multiple of 16 \(Flux.*use 64 or 80"):
        grid(dit, dit.models["flux"], tile=72)
    with pytest.raises(ValueError, match=r"Grid Sampling \(MasaCtrl\): grid sampling supports .*WanModel"):
        grid(dit, tiny_model("wan"))
    with pytest.raises(ValueError, match=r"QwenImageTransformer2DModel"):
        grid(dit, tiny_model("qwen_image"))
    # a canvas off the patch grid (latent width 21): the last tile would start mid-patch
    denoiser = GridDenoiser(8, 8, 2, "linear", 0, lambda shape: 1.0,
                            dit_layout(dit.models["flux"].get_model_object("diffusion_model")))
    with pytest.raises(ValueError, match=r"canvas width of 168 px .*multiples of 16 px"):
        denoiser(None, torch.zeros(1, 16, 8, 21), torch.ones(1), None, None, None, {"cond_or_uncond": [0]})


def test_masks_on_a_grid_are_refused_on_flux(dit):
    masked = call_node(dit.comfy, "MasaCtrlMutualSelfAttention", model=dit.models["flux"], start_step=0,
                       start_layer=0)[0]
    masked = call_node(dit.comfy, "MasaCtrlMasks", model=masked, threshold=0.1, map_resolution="1/2",
                       map_layers="all", source_mask=torch.ones(1, 64, 96), target_mask=torch.ones(1, 64, 96))[0]
    with pytest.raises(ValueError, match=r"Masks \(MasaCtrl\) takes its masks from cross-attention maps"):
        run(dit, grid(dit, masked))
