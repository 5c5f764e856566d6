"""Real-image editing: DDIM inversion (pure torch, against the reference's VP/DDIM-timestep form) and the
two nodes in the real ComfyUI (random-weight SD1.5, ComfyUI's own loader, samplers and executor)."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from masactrl_suite.attention.ddim_inversion import InversionScheduleError, Trajectory, ddim_invert

# --- pure torch -------------------------------------------------------------------------------------

# SD1.x's training schedule ("scaled_linear"), as diffusers' DDIMScheduler builds it (here in float64).
BETAS = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
ALPHAS_CUMPROD = torch.cumprod(1.0 - BETAS, dim=0)
# SD's scheduler_config.json has set_alpha_to_one False: the level below the first timestep is alphas_cumprod[0].
FINAL_ALPHA_CUMPROD = ALPHAS_CUMPROD[0]
SIGMA_MIN = float(((1 - ALPHAS_CUMPROD[0]) / ALPHAS_CUMPROD[0]) ** 0.5)  # ComfyUI's model_sampling.sigma_min


def ddim_timesteps(steps, offset=1):
    """DDIMScheduler.set_timesteps ("leading" spacing) with steps_offset 1 as SD's config: 1, 21, ..., 981 for
    50 steps, in the ascending order `invert` walks them. offset 0 puts the lowest level at sigma_min."""
    return [i * (1000 // steps) + offset for i in range(steps)]


def next_step(eps, timestep, z, steps):
    """The reference's `MasaCtrlPipeline.next_step` (DDIM's update run upwards, eta 0), from the equations:
    the level below `timestep` is `timestep - 1000 // steps`, or final_alpha_cumprod below the first."""
    prev = min(timestep - 1000 // steps, 999)
    a_prev = ALPHAS_CUMPROD[prev] if prev >= 0 else FINAL_ALPHA_CUMPROD
    a_next = ALPHAS_CUMPROD[timestep]
    pred_x0 = (z - (1 - a_prev) ** 0.5 * eps) / a_prev ** 0.5
    return a_next ** 0.5 * pred_x0 + (1 - a_next) ** 0.5 * eps


def reference_inversion(z0, timesteps, eps_model):
    """The reference's `invert` loop: for t ascending, eps = eps_model(z, t) on the CURRENT latent, then
    next_step. Returns the latent after each timestep, out[k] at timesteps[k-1], out[0] = z0."""
    z, out = z0, [z0]
    for t in timesteps:
        z = next_step(eps_model(z, t), t, z, len(timesteps))
        out.append(z)
    return out


def toy_eps(z, t):
    """An analytic, nonlinear noise predictor eps(z, t)."""
    alpha = ALPHAS_CUMPROD[t]
    return 0.4 * torch.tanh(1.3 * z + alpha) + 0.2 * alpha * z.roll(1, dims=-1) - 0.1 * (1 - alpha) ** 0.5


def timestep_of(sigma):
    """The training timestep whose sigma this is (schedule sigmas are exactly training levels here)."""
    return int((((1 - ALPHAS_CUMPROD) / ALPHAS_CUMPROD) ** 0.5 - sigma).abs().argmin())


def sigma_schedule(timesteps):
    """The sampler's descending k-diffusion schedule for these timesteps, ending at 0 (ComfyUI's ddim_uniform
    for offset 1)."""
    a = ALPHAS_CUMPROD[list(reversed(timesteps))]
    return torch.cat([((1 - a) / a) ** 0.5, torch.zeros(1, dtype=torch.float64)])


def eps_denoiser(eps_model, calls=None):
    """An eps model in ComfyUI's sigma space: input scaled to z, EPS output."""
    def denoise(x, sigma):
        if calls is not None:
            calls.append(sigma)
        z = x / math.sqrt(1 + sigma ** 2)
        return x - sigma * eps_model(z, timestep_of(sigma))
    return denoise


def test_the_reference_convention_is_diffusers_ddim_with_sd15s_config():
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                              beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    for steps in (1, 7, 50):
        scheduler.set_timesteps(steps)
        assert list(reversed(scheduler.timesteps.tolist())) == ddim_timesteps(steps)
    torch.testing.assert_close(scheduler.alphas_cumprod.double(), ALPHAS_CUMPROD, rtol=0, atol=1e-6)
    assert float(scheduler.final_alpha_cumprod) == float(scheduler.alphas_cumprod[0])
    assert abs(SIGMA_MIN - 0.029167) < 1e-6


@pytest.mark.parametrize("steps", [1, 7, 50])
def test_inversion_is_the_reference_ddim_inversion(steps):
    z0 = torch.randn(2, 4, 6, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    timesteps = ddim_timesteps(steps)
    reference = reference_inversion(z0, timesteps, toy_eps)
    sigmas = sigma_schedule(timesteps)
    calls, evaluated = [], []
    trajectory = ddim_invert(eps_denoiser(toy_eps, evaluated), z0, sigmas, SIGMA_MIN,
                             callback=lambda *a: calls.append(a[:2]))
    assert calls == [(i, steps) for i in range(steps)] and len(evaluated) == steps
    assert trajectory.latents.shape == (steps + 1, 2, 4, 6, 5) and trajectory.sigmas.dtype == torch.float64
    for i, sigma in enumerate(trajectory.sigmas[:-1]):
        z = reference[steps - i]  # trajectory index 0 = highest sigma = the reference's last latent
        torch.testing.assert_close(trajectory.latents[i], z * math.sqrt(1 + float(sigma) ** 2), rtol=0, atol=1e-10)
    start = trajectory.start / math.sqrt(1 + float(sigmas[0]) ** 2)  # the start code, as the reference's VP latent
    error = float((start - reference[-1]).abs().max())
    assert error < 1e-5
    assert torch.equal(trajectory.clean, z0) and trajectory.clean_sigma == SIGMA_MIN
    # Not vacuous: the clean latent at sigma 0 (the pack before issue 18) misses the reference's start code.
    at_zero = ddim_invert(eps_denoiser(toy_eps), z0, sigmas, 0.0).start / math.sqrt(1 + float(sigmas[0]) ** 2)
    before = float((at_zero - reference[-1]).abs().max())
    print(f"\n{steps} steps: start code vs the reference's next_step, max abs {error:.1e} (clean latent at sigma 0: "
          f"{before:.3g}; |start| max {float(reference[-1].abs().max()):.3g})")
    assert before > 1e-3


def test_a_schedule_ending_at_sigma_min_skips_the_clean_level():
    """normal, karras, exponential, kl_optimal end at the model's sigma_min: that level is the clean latent itself
    (the reference's next_step from final_alpha_cumprod to alphas_cumprod[0] is the identity), no model call."""
    steps = 10
    z0 = torch.randn(1, 4, 6, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    timesteps = ddim_timesteps(steps, offset=0)  # 0, 100, ..., 900
    reference = reference_inversion(z0, timesteps, toy_eps)
    torch.testing.assert_close(reference[1], z0, rtol=0, atol=1e-12)
    sigmas = sigma_schedule(timesteps)
    evaluated, calls = [], []
    trajectory = ddim_invert(eps_denoiser(toy_eps, evaluated), z0, sigmas.float().double(), SIGMA_MIN * (1 + 1e-6),
                             callback=lambda step, total, x, d: calls.append((step, total, torch.equal(d, z0))))
    assert len(evaluated) == steps - 1 and min(evaluated) > SIGMA_MIN * 1.1
    assert calls[0] == (0, steps, True) and [c[:2] for c in calls] == [(i, steps) for i in range(steps)]
    for i, sigma in enumerate(trajectory.sigmas[:-1]):
        expected = reference[steps - i] * math.sqrt(1 + float(sigma) ** 2)
        torch.testing.assert_close(trajectory.latents[i], expected, rtol=0, atol=1e-6)


def make_trajectory(steps=6, dtype=torch.float64, offset=1):
    x0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1), dtype=dtype)
    return ddim_invert(eps_denoiser(toy_eps), x0, sigma_schedule(ddim_timesteps(steps, offset)).to(dtype), SIGMA_MIN)


@pytest.mark.parametrize("offset", [1, 0], ids=["ddim_uniform-like", "ends-at-sigma_min"])
@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
def test_euler_steps_on_the_implied_denoised_land_on_the_trajectory(dtype, atol, offset):
    trajectory = make_trajectory(dtype=dtype, offset=offset)
    s = trajectory.sigmas
    x = trajectory.start
    for i in range(trajectory.steps):  # ComfyUI's sample_euler, with the implied denoised
        d = (x - trajectory.implied_denoised(float(s[i]))) / float(s[i])
        x = x + d * float(s[i + 1] - s[i])
        torch.testing.assert_close(x, trajectory.latents[i + 1], rtol=0, atol=atol)
    assert torch.equal(trajectory.implied_denoised(float(s[-2])), trajectory.clean)  # the last step: exactly x0


def test_lookups_match_within_rtol_and_refuse_off_schedule_sigmas():
    trajectory = make_trajectory()
    s = trajectory.sigmas
    assert torch.equal(trajectory.latent_at(float(s[2]) * (1 + 5e-5)), trajectory.latents[2])
    assert torch.equal(trajectory.latent_at(float(torch.tensor(float(s[3])).float())), trajectory.latents[3])
    assert torch.equal(trajectory.latent_at(0.0), trajectory.clean)
    between = float(s[1] + s[2]) / 2  # e.g. a dpm_2 midpoint
    with pytest.raises(InversionScheduleError, match=f"sigma {between:.6g}, which is not in the inversion's "
                                                     "schedule.*same steps and scheduler.*euler.*denoise 1.0"):
        trajectory.latent_at(between)
    with pytest.raises(InversionScheduleError, match="not in the inversion's schedule"):
        trajectory.implied_denoised(float(s[0]) * 1.01)
    with pytest.raises(InversionScheduleError, match="sigma 0, where no step is left"):
        trajectory.implied_denoised(0.0)


def test_bad_schedules_are_refused():
    x0 = torch.zeros(1, 4, 2, 2)
    denoise = eps_denoiser(toy_eps)
    with pytest.raises(ValueError, match="ends at sigma 0"):
        ddim_invert(denoise, x0, torch.tensor([2.0, 1.0]), SIGMA_MIN)
    with pytest.raises(ValueError, match="strictly decreasing"):
        ddim_invert(denoise, x0, torch.tensor([1.0, 2.0, 0.0]), SIGMA_MIN)
    with pytest.raises(ValueError, match="at least 2 sigmas"):
        ddim_invert(denoise, x0, torch.tensor([0.0]), SIGMA_MIN)
    with pytest.raises(ValueError, match="clean_sigma >= 0.*sigma_min"):
        ddim_invert(denoise, x0, torch.tensor([1.0, 0.0]), -0.1)
    with pytest.raises(ValueError, match="highest sigma 0.02.*not above the clean latent's level 0.03"):
        ddim_invert(denoise, x0, torch.tensor([0.02, 0.0]), 0.03)
    with pytest.raises(ValueError, match="one latent per sigma"):
        Trajectory(torch.tensor([1.0, 0.0]), torch.zeros(3, 1, 4, 2, 2), SIGMA_MIN)


# --- the real ComfyUI -------------------------------------------------------------------------------

INVERT, FOLLOW, MASACTRL, BATCH = ("MasaCtrlDDIMInversion", "MasaCtrlFollowInversion", "MasaCtrlMutualSelfAttention",
                                   "MasaCtrlBatchConditioning")
MASACTRL_INPUTS = dict(start_step=1, start_layer=5)  # the test UNet has 11 self-attention layers: decoder 5-10
STEPS, CFG, SCHEDULER = 4, 7.5, "ddim_uniform"


@pytest.fixture(scope="module")
def sd(checkpoint):
    node, encode = checkpoint.node, checkpoint.encode
    source, target = encode("a photo of a sitting corgi"), encode("a photo of a running corgi")
    # A VAE-encoded photo's latent: about 1/0.18215 in LATENT space (unit scale inside the model).
    photo = {"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5)) / 0.18215}
    return SimpleNamespace(**vars(checkpoint), source=source, negative=encode(""), photo=photo,
                           edit=node[BATCH].execute(source, target).result[0],
                           same=node[BATCH].execute(source, source).result[0])


def invert(sd, model=None, latent=None, steps=STEPS, cfg=CFG, scheduler=SCHEDULER, batch_size=2):
    return sd.node[INVERT].execute(model or sd.model, sd.source, sd.negative, latent or sd.photo, steps, cfg,
                                   scheduler, batch_size).result


def follow(sd, model, inversion, source_index=0):
    return sd.node[FOLLOW].execute(model, inversion, source_index).result[0]


def masactrl(sd, model):
    from comfy_harness import call_node

    return call_node(sd.comfy, MASACTRL, model=model, **MASACTRL_INPUTS)[0]


def sample(sd, model, start, positive=None, sampler="ddim", steps=STEPS, cfg=CFG, scheduler=SCHEDULER,
           add_noise="disable"):
    """KSamplerAdvanced, as the help page wires it."""
    return sd.nodes.KSamplerAdvanced().sample(model, add_noise, 0, steps, cfg, sampler, scheduler, positive or sd.edit,
                                              sd.negative, start, 0, 10000, "disable")[0]["samples"]


@pytest.fixture(scope="module")
def inverted(sd):
    start, inversion = invert(sd)
    return start, inversion


@pytest.mark.parametrize("steps", [STEPS, 10])
def test_inversion_node_is_the_reference_inversion_on_the_real_unet(sd, inverted, steps):
    """The node (CFGGuider, KSAMPLER, conditioning, CFG all ComfyUI's) against the reference's `invert` loop and
    `next_step` written directly on the UNet: the same prompts, cfg 7.5, DDIM timesteps (ComfyUI's ddim_uniform
    gives the reference's 1, 1 + 1000 // steps, ... for these step counts), SD1.x's alphas_cumprod."""
    start, inversion = inverted if steps == STEPS else invert(sd, steps=steps)
    unet = sd.model.model.diffusion_model
    dtype = sd.model.model.get_dtype()
    cond, uncond = sd.source[0][0], sd.negative[0][0]
    timesteps = ddim_timesteps(steps)

    def eps_model(z, t):
        with torch.no_grad():
            out = unet(torch.cat([z, z]).to(dtype), torch.tensor([t, t]), context=torch.cat([uncond, cond]).to(dtype))
        eps_u, eps_c = out.float().chunk(2)
        return (eps_u + CFG * (eps_c - eps_u)).double()

    z0 = sd.photo["samples"].double() * 0.18215  # SD1.x process_latent_in
    reference = reference_inversion(z0, timesteps, eps_model)
    trajectory = inversion.trajectory
    assert trajectory.steps == len(timesteps) == steps
    assert abs(trajectory.clean_sigma - SIGMA_MIN) < 1e-7  # the model's own sigma_min: alphas_cumprod[0]
    for i, sigma in enumerate(trajectory.sigmas[:-1]):
        expected = (reference[steps - i] * math.sqrt(1 + float(sigma) ** 2)).float()
        torch.testing.assert_close(trajectory.latents[i], expected, rtol=0, atol=1e-5)
    code = trajectory.start.double() / math.sqrt(1 + float(trajectory.sigmas[0]) ** 2)  # the VP start code
    error = float((code - reference[-1]).abs().max())
    # The pack before issue 18 put the clean latent at sigma 0; the same loop from there, on the same UNet:
    at_zero = ddim_invert(eps_denoiser(eps_model), z0, trajectory.sigmas, 0.0).start
    before = float((at_zero / math.sqrt(1 + float(trajectory.sigmas[0]) ** 2) - reference[-1]).abs().max())
    print(f"\n{steps} steps, cfg {CFG}: start code vs the reference's next_step on the UNet: max abs {error:.2g} "
          f"(clean latent at sigma 0: {before:.3g}); |start code| max {float(reference[-1].abs().max()):.3g}")
    assert error < 1e-5 and before > 1e-4
    assert start["samples"].shape == (2, 4, 8, 8) and torch.equal(start["samples"][0], start["samples"][1])
    torch.testing.assert_close(start["samples"][:1] * 0.18215, trajectory.start, rtol=0, atol=1e-5)


def record_cond_or_uncond(model):
    """A clone that records how ComfyUI batched cond and uncond in each model call."""
    import comfy.patcher_extension

    seen, m = [], model.clone()

    def recorder(executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={}, **kwargs):
        seen.append(tuple(transformer_options["cond_or_uncond"]))
        return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "test_recorder", recorder)
    return m, seen


@pytest.mark.parametrize("sampler,apart", [("ddim", False), ("euler", True), ("heun", False), ("dpmpp_2m", False)])
def test_source_reconstructs_the_photo_and_targets_are_untouched(sd, inverted, sampler, apart):
    start, inversion = inverted
    model, seen = record_cond_or_uncond(follow(sd, sd.model, inversion))
    negative = sd.negative
    if apart:  # the same empty prompt 5x as long: ComfyUI cannot batch it with the positive, runs them apart
        for _ in range(4):
            negative = sd.nodes.ConditioningConcat().concat(negative, sd.negative)[0]
    followed = sd.nodes.KSamplerAdvanced().sample(model, "disable", 0, STEPS, CFG, sampler, SCHEDULER, sd.same,
                                                  negative, start, 0, 10000, "disable")[0]["samples"]
    assert set(seen) == ({(0,), (1,)} if apart else {(1, 0)})
    error = float((followed[0] - sd.photo["samples"][0]).abs().max())
    print(f"\n{sampler}{' (cond/uncond apart)' if apart else ''}: source row vs the photo's latent (LATENT space, "
          f"|x| max {sd.photo['samples'].abs().max():.1f}): max abs error {error:.2e}")
    assert error < 1e-4  # float32 round-off
    if sampler != "ddim":
        return
    plain = sample(sd, sd.model, start, sd.same, sampler)
    # The other rows are the free DDIM reconstruction from the inverted noise: what the trajectory allows.
    torch.testing.assert_close(followed[1], plain[1], rtol=0, atol=1e-4)
    photo = sd.photo["samples"][0]
    free = float((plain[1] - photo).abs().max())
    print(f"{sampler}: target row (same prompt, no MasaCtrl) vs the photo's latent: max abs error {free:.3g}, "
          f"mean {float((plain[1] - photo).abs().mean()):.3g}")
    assert free < 0.1 * float(photo.abs().max())  # measured 0.22 of 15.7 (cfg 7.5, 4 steps, random weights)


def test_free_reconstruction_with_cfg_1_is_close(sd):
    """cfg 1 for inversion and sampling: the target row's free DDIM run from the inverted noise comes back near
    the photo (the inversion's approximation error), the source row exactly."""
    start, inversion = invert(sd, cfg=1.0, steps=10)
    out = sample(sd, follow(sd, sd.model, inversion), start, sd.same, "ddim", steps=10, cfg=1.0)
    photo = sd.photo["samples"][0]
    free, scale = float((out[1] - photo).abs().max()), float(photo.abs().max())
    print(f"\ncfg 1, 10 steps: target row free reconstruction max abs error {free:.3g} (|photo| max {scale:.3g}); "
          f"source row {float((out[0] - photo).abs().max()):.2e}")
    assert free < 0.05 * scale
    assert float((out[0] - photo).abs().max()) < 1e-4


def test_every_scheduler_inverts_from_sigma_min_and_the_source_ends_on_the_photo(sd):
    """Every scheduler the node offers: the inversion starts at the model's sigma_min (a schedule level there is
    the clean latent itself), and Follow Inversion brings the source back onto the photo's latent."""
    import comfy.samplers

    steps, photo = 3, sd.photo["samples"][0]
    sigma_min = float(sd.model.get_model_object("model_sampling").sigma_min)
    for scheduler in comfy.samplers.KSampler.SCHEDULERS:
        start, inversion = invert(sd, steps=steps, cfg=1.0, scheduler=scheduler)
        trajectory = inversion.trajectory
        assert trajectory.clean_sigma == sigma_min, scheduler
        lowest = float(trajectory.sigmas[-2])
        assert lowest >= sigma_min * (1 - 1e-4), f"{scheduler}: a level below the model's smallest sigma"
        if lowest <= sigma_min * (1 + 1e-4):  # normal, karras, exponential, kl_optimal: the clean latent there
            clean = photo * 0.18215 * math.sqrt(1 + lowest ** 2)
            torch.testing.assert_close(trajectory.latents[-2][0], clean, rtol=0, atol=1e-6, msg=scheduler)
        out = sample(sd, follow(sd, sd.model, inversion), start, sd.same, "euler", steps=steps, cfg=1.0,
                     scheduler=scheduler)
        assert float((out[0] - photo).abs().max()) < 1e-4, scheduler


def test_masactrl_edits_the_target_with_the_photo_as_source(sd, inverted):
    start, inversion = inverted
    base = follow(sd, sd.model, inversion)
    edited = sample(sd, masactrl(sd, base), start)
    other_order = sample(sd, follow(sd, masactrl(sd, sd.model), inversion), start)
    assert torch.equal(edited, other_order), "MasaCtrl and Follow Inversion depend on their order"
    no_masactrl = sample(sd, base, start)
    free_source = sample(sd, masactrl(sd, sd.model), start)  # MasaCtrl alone: the source drifts off the photo
    assert float((edited[1] - no_masactrl[1]).abs().max()) > 1e-2, "MasaCtrl did not change the target"
    assert float((edited[1] - free_source[1]).abs().max()) > 1e-3, "the target did not read the photo's trajectory"
    assert float((edited[0] - sd.photo["samples"][0]).abs().max()) < 1e-4


def test_input_model_unchanged_and_reruns_identical(sd, inverted):
    start, inversion = inverted
    before = (repr(sd.model.model_options), repr(sd.model.wrappers))
    patched = masactrl(sd, follow(sd, sd.model, inversion))
    first = sample(sd, patched, start)
    assert torch.equal(sample(sd, patched, start), first)
    assert (repr(sd.model.model_options), repr(sd.model.wrappers)) == before
    again_start, again = invert(sd)
    assert torch.equal(again_start["samples"], start["samples"])
    assert torch.equal(again.trajectory.latents, inversion.trajectory.latents)


def test_inversion_reports_progress_and_stops_when_interrupted(sd):
    from comfy_harness import progress_updates, stops_when_interrupted

    assert progress_updates(lambda: invert(sd, steps=4)) == [(i, 4) for i in range(1, 5)]
    assert stops_when_interrupted(lambda: invert(sd, steps=4))


def test_v_prediction_is_accepted_and_flow_models_are_refused(sd):
    from comfy_extras.nodes_model_advanced import ModelSamplingDiscrete, ModelSamplingSD3

    vpred = ModelSamplingDiscrete().patch(sd.model, "v_prediction", False)[0]
    start, inversion = invert(sd, vpred, steps=4)
    out = sample(sd, follow(sd, vpred, inversion), start, sd.same, "euler", steps=4)
    assert float((out[0] - sd.photo["samples"][0]).abs().max()) < 1e-4
    flow = ModelSamplingSD3().patch(sd.model, 3.0)[0]
    with pytest.raises(ValueError, match="DDIM Inversion.*CONST.*not the variance-preserving.*SD1.x"):
        invert(sd, flow)
    with pytest.raises(ValueError, match="Follow Inversion.*CONST"):
        follow(sd, flow, inversion)


def test_errors_name_the_input_and_the_fix(sd, inverted):
    start, inversion = inverted
    two = {"samples": sd.photo["samples"].repeat(2, 1, 1, 1)}
    with pytest.raises(ValueError, match="latent input holds 2 images.*Latent From Batch"):
        invert(sd, latent=two)
    with pytest.raises(ValueError, match="steps is 0"):
        invert(sd, steps=0)
    with pytest.raises(ValueError, match="connect the inversion output"):
        follow(sd, sd.model, "not an inversion")
    followed = follow(sd, sd.model, inversion, source_index=2)
    with pytest.raises(ValueError, match="source_index 2 names image 2, but the latent batch has 2.*batch_size"):
        sample(sd, followed, start)
    model = follow(sd, sd.model, inversion)
    bigger = {"samples": torch.zeros(2, 4, 8, 12)}
    with pytest.raises(ValueError, match=r"sampled latent is \[4, 8, 12\].*inversion's is \[4, 8, 8\]"):
        sample(sd, model, bigger)
    schedule = "not in the inversion's schedule.*same steps and scheduler.*steps 4, scheduler ddim_uniform"
    with pytest.raises(ValueError, match=schedule):
        sample(sd, model, start, scheduler="normal")
    with pytest.raises(ValueError, match=schedule):
        sample(sd, model, start, steps=5)
    with pytest.raises(ValueError, match=schedule):
        sample(sd, model, start, sampler="dpm_2")  # ComfyUI runs dpm_2 on a different schedule
    with pytest.raises(ValueError, match="does not start from DDIM Inversion's start_latent.*add_noise = disable"):
        sample(sd, model, start, add_noise="enable")


def test_graph_photo_to_edit_through_the_executor(sd):
    from comfy_harness import run_graph, schema_defaults

    steps = 2  # the wiring is under test here; the numbers are above

    g = {"ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": sd.name}},
         "image": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1,
                                                          "color": 0xC08040}},
         "encode": {"class_type": "VAEEncode", "inputs": {"pixels": ["image", 0], "vae": ["ckpt", 2]}},
         "src": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a sitting corgi", "clip": ["ckpt", 1]}},
         "tgt": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a running corgi", "clip": ["ckpt", 1]}},
         "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["ckpt", 1]}},
         "pos": {"class_type": BATCH, "inputs": {"source": ["src", 0], "target": ["tgt", 0]}},
         "invert": {"class_type": INVERT, "inputs": {
             "model": ["ckpt", 0], "positive": ["src", 0], "negative": ["neg", 0], "latent": ["encode", 0],
             "steps": steps, "cfg": CFG, "scheduler": SCHEDULER, "batch_size": 2}},
         "follow": {"class_type": FOLLOW, "inputs": {"model": ["ckpt", 0], "inversion": ["invert", 1],
                                                     "source_index": 0}},
         "masactrl": {"class_type": MASACTRL, "inputs": {**schema_defaults(sd.node[MASACTRL]), **MASACTRL_INPUTS,
                                                         "model": ["follow", 0]}},
         "sampler": {"class_type": "KSamplerAdvanced", "inputs": {
             "model": ["masactrl", 0], "add_noise": "disable", "noise_seed": 0, "steps": steps, "cfg": CFG,
             "sampler_name": "ddim", "scheduler": SCHEDULER, "positive": ["pos", 0], "negative": ["neg", 0],
             "latent_image": ["invert", 0], "start_at_step": 0, "end_at_step": 10000,
             "return_with_leftover_noise": "disable"}},
         "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sampler", 0], "vae": ["ckpt", 2]}},
         "save": {"class_type": "SaveImage", "inputs": {"images": ["decode", 0], "filename_prefix": "inversion_edit"}},
         "photo_decode": {"class_type": "VAEDecode", "inputs": {"samples": ["encode", 0], "vae": ["ckpt", 2]}},
         "photo_save": {"class_type": "SaveImage", "inputs": {"images": ["photo_decode", 0],
                                                              "filename_prefix": "inversion_photo"}}}
    outputs = run_graph(sd.comfy, g)
    out_dir = sd.comfy.folder_paths.get_output_directory()

    def images(node):
        return [np.asarray(Image.open(f"{out_dir}/{img['filename']}")).astype(int) for img in outputs[node]["images"]]

    edited, (photo,) = images("save"), images("photo_save")
    assert len(edited) == 2 and edited[0].shape == (64, 64, 3)
    assert np.abs(edited[0] - photo).max() <= 1, "the source image is not the photo's reconstruction"
    assert np.abs(edited[1] - photo).max() > 0, "the target image is the photo unchanged"
