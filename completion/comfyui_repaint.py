"""ComfyUI glue for RePaint re-noising (completion/repaint.py): a ComfyUI sampler that re-noises a finished
image's latent to a chosen step and denoises it again with the known region re-imposed after every step,
resampling every stretch of the schedule, with any ComfyUI sampler making the single reverse steps."""
from __future__ import annotations

import itertools

import comfy.model_base
import comfy.model_management
import comfy.sample
import comfy.sampler_helpers
import comfy.samplers
import comfy.utils
import latent_preview
import torch

from ..attention.comfyui_inversion import is_flow
from .repaint import NoiseLevels, RePaintScheduleError, jump_schedule, repaint

# Adaptive samplers choose their own steps inside a segment, which a fixed jump schedule cannot use.
STEP_SAMPLERS = [name for name in comfy.samplers.SAMPLER_NAMES if name not in ("dpm_fast", "dpm_adaptive")]
NODE = "RePaint (MasaCtrl)"
# Step samplers written for x = x0 + sigma * eps only (ddpm rescales by sqrt(1 + sigma^2) and reads the noise
# as (x - x0) / sigma): on a flow model they misread it. ComfyUI's ancestral samplers switch to their
# rectified-flow forms there (euler_ancestral_RF, ...); ddpm has none.
EPSILON_ONLY_SAMPLERS = ("ddpm",)


def noise_levels(model_sampling, sigmas: torch.Tensor) -> NoiseLevels:
    """scale and std of x = scale * x0 + std * eps at each sigma, read off the model's own noise_scaling
    (sigma and 1 for epsilon/v models, 1 - sigma and sigma for flow models)."""
    zero, one = torch.zeros(1, 1), torch.ones(1, 1)
    scale = torch.stack([model_sampling.noise_scaling(s.view(1), zero, one).flatten()[0] for s in sigmas.float().cpu()])
    std = torch.stack([model_sampling.noise_scaling(s.view(1), one, zero).flatten()[0] for s in sigmas.float().cpu()])
    return NoiseLevels(scale.to(sigmas.device), std.to(sigmas.device))


def check_step_sampler(step_sampler: str, model_sampling):
    if step_sampler in EPSILON_ONLY_SAMPLERS and is_flow(model_sampling):
        raise ValueError(f"{NODE}: sampler_name {step_sampler} is written for epsilon models (x = x0 + sigma * eps); "
                         "this model is a flow model (Flux, SD3: x = (1 - sigma) x0 + sigma * eps), where its steps "
                         "misread the noise. Use euler, or euler_ancestral for fresh noise every step as ddpm gives.")


def is_fill_model(base_model) -> bool:
    """Flux Fill: its input concatenates the latent, the known (masked) image and the mask (in_channels 96 =
    16 + 16 + 64), so its conditioning must carry the masked image (InpaintModelConditioning)."""
    config = base_model.model_config.unet_config
    return isinstance(base_model, comfy.model_base.Flux) and config.get("in_channels", 0) > 2 * config.get(
        "out_channels", config.get("in_channels", 0))


def check_fill_conditioning(guider):
    """Without InpaintModelConditioning, Flux Fill's concat_cond gives it a blank image as the known region
    (its mask falls back to the latent's noise mask): the model would be told nothing is known."""
    if not is_fill_model(guider.inner_model):
        return
    encoded = getattr(guider, "conds", None) or {}  # CFGGuider and its subclasses: the conds being sampled
    conds = [c for name in ("positive", "negative") for c in encoded.get(name) or []]
    if any("concat_latent_image" not in c for c in conds):
        raise ValueError(f"{NODE}: this is an inpainting model (Flux Fill) and its conditioning carries no masked "
                         "image: pass positive and negative through InpaintModelConditioning (vae, the image, "
                         "the mask of the region to regenerate) and use its latent as latent_image.")


def repaint_sampler(step_sampler: str, jump_length: int, resamplings: int) -> comfy.samplers.KSAMPLER:
    step = comfy.samplers.sampler_object(step_sampler)

    def sample_repaint(model, x, sigmas, extra_args=None, callback=None, disable=None):
        extra_args = dict(extra_args or {})
        regenerate = extra_args.pop("denoise_mask", None)
        if regenerate is None:
            raise ValueError(f"{NODE}: the latent has no noise mask, so nothing says which region to repaint. "
                             "Connect the latent through Set Latent Noise Mask (the mask of the region to "
                             "regenerate, e.g. Extend Canvas's mask), or use the RePaint node with its mask input.")
        if not bool((regenerate > 0).any()):
            raise ValueError(f"{NODE}: the latent's noise mask is 0 everywhere, so nothing would be repainted; paint "
                             "the region to regenerate white (e.g. Extend Canvas's mask) in Set Latent Noise Mask.")
        try:
            visits = jump_schedule(len(sigmas) - 1, jump_length, resamplings)
        except RePaintScheduleError as error:
            raise RePaintScheduleError(f"{NODE}: {error}") from None
        guider = model.inner_model
        check_step_sampler(step_sampler, guider.inner_model.model_sampling)
        check_fill_conditioning(guider)
        # The noise levels of the model's own sampling (with ModelSamplingFlux/SD3's shift applied): flow
        # models get scale 1 - sigma, so the forward jump is the flow interpolation's (NoiseLevels.forward).
        levels = noise_levels(guider.inner_model.model_sampling, sigmas)
        seed = int(extra_args.get("seed") or 0)
        generator = torch.Generator().manual_seed(seed + 1)
        seeds = itertools.count(seed + 2)  # a new seed per step: ancestral step samplers reseed from it
        preview = {"denoised": x, "shown": -1}

        def noise():
            return torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x)

        def reverse_step(x_now, position):
            comfy.model_management.throw_exception_if_processing_interrupted()
            # denoise_mask None: KSamplerX0Inpaint must not paste its own fixed-noise copy of the known region.
            args = {**extra_args, "denoise_mask": None, "seed": next(seeds)}
            return step.sampler_function(model, x_now, sigmas[position:position + 2], extra_args=args,
                                         callback=lambda d: preview.update(denoised=d["denoised"]), disable=True,
                                         **step.extra_options)

        def on_step(done, total, x_now):
            # ComfyUI's bar counts len(sigmas) - 1 steps; the resampled schedule is longer, so scale to it.
            shown = done * (len(sigmas) - 1) // total - 1
            if callback is not None and shown > preview["shown"]:
                preview["shown"] = shown
                callback({"i": shown, "x": x_now, "denoised": preview["denoised"], "sigma": sigmas[0]})

        return repaint(reverse_step, x, model.latent_image, 1 - regenerate, levels, visits, noise, on_step)

    return comfy.samplers.KSAMPLER(sample_repaint)


def noise_mask_for(latent: dict, mask: torch.Tensor | None) -> torch.Tensor:
    """The mask of the region to regenerate, as a latent noise mask; a MASK must have the image's size."""
    samples = latent["samples"]
    if mask is None:
        if "noise_mask" not in latent:
            raise ValueError(f"{NODE}: no mask: connect the mask input (the region to regenerate, e.g. Extend "
                             "Canvas's mask), or give the latent a noise mask with Set Latent Noise Mask.")
        return latent["noise_mask"]
    height, width = samples.shape[-2] * 8, samples.shape[-1] * 8
    mask = mask.reshape(-1, *mask.shape[-2:])
    if tuple(mask.shape[-2:]) != (height, width):
        raise ValueError(f"{NODE}: the mask is {mask.shape[-1]}x{mask.shape[-2]} but the latent is for a "
                         f"{width}x{height} image: use the mask made for this image (e.g. Extend Canvas's), or "
                         "resize it to the image.")
    if mask.shape[0] not in (1, samples.shape[0]):
        raise ValueError(f"{NODE}: {mask.shape[0]} masks for {samples.shape[0]} latents: give one mask, or one "
                         "per latent.")
    return mask.reshape(-1, 1, height, width)


def sample_repaint(model, positive, negative, latent_image: dict, seed: int, steps: int, cfg: float,
                   sampler_name: str, scheduler: str, denoise: float, jump_length: int, resamplings: int,
                   mask: torch.Tensor | None = None) -> dict:
    """KSampler with RePaint's jumps: the last `steps` of a schedule of steps / denoise, from the latent."""
    try:
        jump_schedule(steps, jump_length, resamplings)
    except RePaintScheduleError as error:
        raise RePaintScheduleError(f"{NODE}: {error}") from None
    noise_mask = noise_mask_for(latent_image, mask)
    samples = comfy.sample.fix_empty_latent_channels(model, latent_image["samples"])
    noise = comfy.sample.prepare_noise(samples, seed, latent_image.get("batch_index"))
    sampling = model.get_model_object("model_sampling")
    sigmas = comfy.samplers.calculate_sigmas(sampling, scheduler, int(steps / denoise)).cpu()[-(steps + 1):]
    out = comfy.sample.sample_custom(
        model, noise, cfg, repaint_sampler(sampler_name, jump_length, resamplings), sigmas, positive, negative,
        samples, noise_mask=noise_mask, callback=latent_preview.prepare_callback(model, steps),
        disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
    # RePaint ends with the original wherever the latent mask is 0, but in the model's latent space: the way back
    # (process_latent_out: Flux and SD3 shift and scale) rounds by ~1e-7, so the original is given back exactly.
    kept = comfy.sampler_helpers.prepare_mask(noise_mask, samples.shape, out.device) == 0
    return {**latent_image, "samples": torch.where(kept, samples.to(out), out)}
