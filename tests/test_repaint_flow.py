"""RePaint on flow models in the real ComfyUI: tiny random-weight Flux.1 (with ModelSamplingFlux's shift), Flux Fill
and SD3 (MMDiT-X, ModelSamplingSD3) from tests/tiny_dit.py. The forward jump has the flow interpolation's
marginals, a run evaluates the model once per scheduled reverse step, the kept region comes back exactly, Flux
Fill sees the masked known image and the mask InpaintModelConditioning gives it, and bad inputs are refused."""
import itertools
from types import SimpleNamespace

import pytest
import torch

from comfy_harness import call_node
from masactrl_suite.completion.repaint import NoiseLevels, denoising_steps, jump_schedule
from tiny_dit import prompts, tiny_model

REPAINT = "MasaCtrlRePaint"
SIZE = 64  # pixels: a latent of 8 x 8
CFG = {"flux": 1.0, "flux_fill": 1.0, "sd3": 3.0}  # guidance-distilled Flux: no uncond pass


def shifted(comfy, family: str, model):
    """The model as a workflow gives it: with the shift node of its family applied."""
    if family == "sd3":
        return comfy.nodes.NODE_CLASS_MAPPINGS["ModelSamplingSD3"]().patch(model, 3.0)[0]
    return comfy.nodes.NODE_CLASS_MAPPINGS["ModelSamplingFlux"]().patch(model, 1.15, 0.5, SIZE, SIZE)[0]


@pytest.fixture(scope="module")
def flow(comfy):
    models = {family: shifted(comfy, family, tiny_model(family)) for family in CFG}
    latent = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(3))
    mask = torch.zeros(1, SIZE, SIZE)
    mask[:, 40:, :] = 1  # regenerate the bottom: latent rows 5-7 (the latent mask is exactly 0 or 1 per row)
    return SimpleNamespace(comfy=comfy, models=models, latent=latent, mask=mask)


def conditioning(family):
    return prompts(1, guidance=30.0 if family == "flux_fill" else 3.5 if family == "flux" else None)


def repaint_node(flow, family, model=None, sampler="euler", steps=4, denoise=0.6, jump=2, resamplings=3, seed=0,
                 mask="default", latent=None, positive=None, negative=None):
    default_positive, default_negative = conditioning(family)
    inputs = {"model": model or flow.models[family], "positive": positive or default_positive,
              "negative": negative or default_negative, "latent_image": latent or {"samples": flow.latent},
              "seed": seed, "steps": steps, "cfg": CFG[family], "sampler_name": sampler, "scheduler": "simple",
              "denoise": denoise, "jump_length": jump, "resamplings": resamplings}
    if mask is not None:
        inputs["mask"] = flow.mask if isinstance(mask, str) else mask
    return call_node(flow.comfy, REPAINT, **inputs)[0]["samples"]


def counted(model):
    """A clone of the model recording every diffusion-model call that includes the cond half: (sigma, the input
    channels after the latent's 16, i.e. Flux Fill's concatenated known image and mask)."""
    import comfy.patcher_extension

    calls = []

    def record(executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None, **kwargs):
        if 0 in (transformer_options or {}).get("cond_or_uncond", [0]):
            calls.append((float(t[0]), None if c_concat is None else c_concat.clone()))
        return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
    model = model.clone()
    model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "count", record)
    return model, calls


# -- (a) the forward jump's marginals on the noise levels of a real flow model_sampling ---------------------------

@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_forward_jump_has_the_flow_marginals(flow, family):
    """x_src ~ q(x_src | x0) = N((1 - s_src) x0, s_src^2), jumped to dst: N((1 - s_dst) x0, s_dst^2), with the
    sigmas of the shifted schedule, including a jump from the clean end and one to sigma 1 (pure noise)."""
    import comfy.samplers

    from masactrl_suite.completion.comfyui_repaint import noise_levels

    sampling = flow.models[family].get_model_object("model_sampling")
    sigmas = comfy.samplers.calculate_sigmas(sampling, "simple", 8)
    assert float(sigmas[0]) == pytest.approx(1.0) and float(sigmas[-1]) == 0
    assert not torch.allclose(sigmas, torch.linspace(1, 0, 9), atol=0.02)  # the shift bends the schedule
    levels = noise_levels(sampling, sigmas)
    x0 = torch.full((400_000,), 0.7)
    generator = torch.Generator().manual_seed(1)
    for src, dst in ((6, 2), (8, 5), (4, 0), (3, 1)):
        x_src = levels.noised(x0, src, torch.randn(x0.shape, generator=generator))
        x_dst = levels.forward(x_src, src, dst, torch.randn(x0.shape, generator=generator))
        s_dst = float(sigmas[dst])
        assert float(x_dst.mean()) == pytest.approx((1 - s_dst) * 0.7, abs=0.006), (src, dst)
        assert float(x_dst.std()) == pytest.approx(s_dst, abs=0.006), (src, dst)


def test_forward_jump_from_pure_noise_only_rescales():
    """A schedule that starts at sigma 1 twice: scale 0 at the source, which the scale ratio would divide by."""
    levels = NoiseLevels(torch.tensor([0.0, 0.0, 0.5]), torch.tensor([1.0, 1.0, 0.5]))
    x = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(levels.forward(x, 1, 0, torch.randn(1000)), x)


# -- (b), (c) evaluations and the kept region through the RePaint node --------------------------------------------

@pytest.mark.parametrize("family", ["flux", "sd3"])
@pytest.mark.parametrize("sampler,denoise", [("euler", 0.6), ("euler_ancestral", 1.0), ("dpmpp_2m", 0.5)])
def test_evaluations_follow_the_schedule_and_the_kept_region_is_exact(flow, family, sampler, denoise):
    model, calls = counted(flow.models[family])
    out = repaint_node(flow, family, model, sampler=sampler, steps=4, denoise=denoise, jump=2, resamplings=3)
    assert len(calls) == denoising_steps(4, 2, 3) == 12
    # each reverse step starts at the sigma of RePaint's position: the jumps go back up the same schedule
    sampling = flow.models[family].get_model_object("model_sampling")
    import comfy.samplers

    sigmas = comfy.samplers.calculate_sigmas(sampling, "simple", int(4 / denoise))[-5:]
    visits = jump_schedule(4, 2, 3)
    expected = [float(sigmas[a]) for a, b in itertools.pairwise(visits) if b > a]
    assert [t for t, _ in calls] == pytest.approx(expected, rel=1e-5)
    original = flow.latent
    assert torch.equal(out[..., :5, :], original[..., :5, :])  # mask 0: the original, bit for bit
    assert not torch.allclose(out[..., 5:, :], original[..., 5:, :], atol=1e-2)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_the_sampler_alone_ends_on_the_original_where_the_mask_is_0(flow, family):
    """RePaint Sampler as SamplerCustom runs it (the node's exact paste-back not involved): the known region is
    the original up to the rounding of ComfyUI's latent format round trip, from a schedule cut at denoise 0.5."""
    import comfy.sample
    import comfy.samplers

    model = flow.models[family]
    sampler = call_node(flow.comfy, "MasaCtrlRePaintSampler", sampler_name="euler", jump_length=2, resamplings=2)[0]
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", 8)[-5:]
    positive, negative = conditioning(family)
    noise = torch.randn(flow.latent.shape, generator=torch.Generator().manual_seed(6))
    noise_mask = flow.mask.reshape(1, 1, SIZE, SIZE)
    out = comfy.sample.sample_custom(model, noise, CFG[family], sampler, sigmas, positive, negative, flow.latent,
                                     noise_mask=noise_mask, disable_pbar=True, seed=0)
    assert torch.allclose(out[..., :5, :], flow.latent[..., :5, :], rtol=0, atol=1e-6)
    assert not torch.allclose(out[..., 5:, :], flow.latent[..., 5:, :], atol=1e-2)


# -- (d) Flux Fill with InpaintModelConditioning ------------------------------------------------------------------

class PoolingVAE:
    """Stands in for Flux's VAE in InpaintModelConditioning: 8 x 8 average pooling and a fixed 3 -> 16 mixing,
    so the masked image's latent differs from the original's exactly where the mask is."""
    def __init__(self):
        self.mix = torch.randn(16, 3, generator=torch.Generator().manual_seed(7))

    def encode(self, pixels):
        pooled = torch.nn.functional.avg_pool2d(pixels.movedim(-1, 1), 8)
        return torch.einsum("oc,bchw->bohw", self.mix, pooled - 0.5)


@pytest.fixture(scope="module")
def fill(flow):
    import nodes

    pixels = torch.rand(1, SIZE, SIZE, 3, generator=torch.Generator().manual_seed(4))
    positive, negative = conditioning("flux_fill")
    positive, negative, latent = nodes.InpaintModelConditioning().encode(positive, negative, pixels, PoolingVAE(),
                                                                         flow.mask, noise_mask=True)
    return SimpleNamespace(pixels=pixels, positive=positive, negative=negative, latent=latent)


def test_flux_fill_sees_the_masked_image_and_the_mask_and_keeps_the_known_region(flow, fill):
    import comfy.latent_formats
    import comfy.sample

    model = flow.models["flux_fill"]
    plain, plain_calls = counted(model)
    comfy.sample.sample(plain, torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(5)), 3, 1.0, "euler",
                        "simple", fill.positive, fill.negative, fill.latent["samples"], denoise=0.6,
                        noise_mask=fill.latent["noise_mask"], disable_pbar=True, seed=0)
    counted_model, calls = counted(model)
    out = repaint_node(flow, "flux_fill", counted_model, latent=fill.latent, positive=fill.positive,
                       negative=fill.negative, mask=None, steps=4, jump=2, resamplings=2)
    assert len(calls) == denoising_steps(4, 2, 2)
    reference = plain_calls[0][1]
    assert reference.shape == (1, 16 + 64, 8, 8)
    assert all(torch.equal(concat, reference) for _, concat in calls + plain_calls)
    # independently: the known image is the masked pixels' latent (0.5 grey in the mask), the mask packed 8 x 8
    masked = fill.pixels.clone()
    masked[:, 40:] = 0.5
    known = comfy.latent_formats.Flux().process_in(PoolingVAE().encode(masked))
    assert torch.allclose(reference[:, :16], known, atol=1e-6)
    packed = flow.mask.view(1, 8, 8, 8, 8).permute(0, 2, 4, 1, 3).reshape(1, 64, 8, 8)
    assert torch.equal(reference[:, 16:], packed)
    original = fill.latent["samples"]
    assert torch.equal(out[..., :5, :], original[..., :5, :])
    assert not torch.allclose(out[..., 5:, :], original[..., 5:, :], atol=1e-2)


# -- (e) bad inputs -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_bad_inputs_on_flow_models_name_the_input_and_the_fix(flow, family):
    with pytest.raises(ValueError, match="the mask is 32x32 but the latent is for a 64x64 image"):
        repaint_node(flow, family, mask=torch.ones(1, 32, 32))
    with pytest.raises(ValueError, match="no mask: connect the mask input"):
        repaint_node(flow, family, mask=None)
    with pytest.raises(ValueError, match="jump_length 8 does not fit a schedule of 4 steps"):
        repaint_node(flow, family, steps=4, jump=8)
    with pytest.raises(ValueError, match="sampler_name ddpm is written for epsilon models.*Use euler"):
        repaint_node(flow, family, sampler="ddpm")


def test_flux_fill_without_inpaint_conditioning_is_refused(flow):
    with pytest.raises(ValueError, match="inpainting model \\(Flux Fill\\).*InpaintModelConditioning"):
        repaint_node(flow, "flux_fill")
