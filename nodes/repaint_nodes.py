"""RePaint re-noising as a ComfyUI sampler: re-noise a finished image's latent to a chosen step and denoise
it again with the known region re-imposed after every step, resampling every stretch of the schedule
(attention/repaint.py). Any ComfyUI sampler makes the single reverse steps. Use it from SamplerCustom
(RePaint Sampler) or from the KSampler-like RePaint node; Paste Back then keeps the pixels outside the mask
bit-identical, which a latent round trip cannot."""
from __future__ import annotations

import itertools

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
import torch
from comfy_api.latest import io

from ..attention.repaint import NoiseLevels, RePaintScheduleError, jump_schedule, repaint

# Adaptive samplers choose their own steps inside a segment, which a fixed jump schedule cannot use.
STEP_SAMPLERS = [name for name in comfy.samplers.SAMPLER_NAMES if name not in ("dpm_fast", "dpm_adaptive")]
NODE = "RePaint (MasaCtrl)"


def noise_levels(model_sampling, sigmas: torch.Tensor) -> NoiseLevels:
    """scale and std of x = scale * x0 + std * eps at each sigma, read off the model's own noise_scaling
    (sigma and 1 for epsilon/v models, 1 - sigma and sigma for flow models)."""
    zero, one = torch.zeros(1, 1), torch.ones(1, 1)
    scale = torch.stack([model_sampling.noise_scaling(s.view(1), zero, one).flatten()[0] for s in sigmas.float().cpu()])
    std = torch.stack([model_sampling.noise_scaling(s.view(1), one, zero).flatten()[0] for s in sigmas.float().cpu()])
    return NoiseLevels(scale.to(sigmas.device), std.to(sigmas.device))


def repaint_sampler(step_sampler: str, jump_length: int, resamplings: int) -> comfy.samplers.KSAMPLER:
    step = comfy.samplers.sampler_object(step_sampler)

    def sample_repaint(model, x, sigmas, extra_args=None, callback=None, disable=None):
        extra_args = dict(extra_args or {})
        regenerate = extra_args.pop("denoise_mask", None)
        if regenerate is None:
            raise ValueError(f"{NODE}: the latent has no noise mask, so nothing says which region to repaint. "
                             "Connect the latent through Set Latent Noise Mask (the mask of the region to "
                             "regenerate, e.g. Extend Canvas's mask), or use the RePaint node with its mask input.")
        try:
            visits = jump_schedule(len(sigmas) - 1, jump_length, resamplings)
        except RePaintScheduleError as error:
            raise RePaintScheduleError(f"{NODE}: {error}") from None
        levels = noise_levels(model.inner_model.inner_model.model_sampling, sigmas)
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


JUMP_TOOLTIP = ("j: how many steps each resampling jumps back up (the paper: 10 of 250). Must not exceed the steps "
                "that run.")
RESAMPLINGS_TOOLTIP = ("r: how often each j-step stretch is denoised (the paper: 10). 1: no resampling, only the "
                       "known region re-imposed every step. Cost: about r times the steps.")


class RePaintSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MasaCtrlRePaintSampler",
            display_name="RePaint Sampler (MasaCtrl)",
            category="MasaCtrl/photo completion",
            description="A SAMPLER for SamplerCustom: RePaint resampling around any sampler's steps. The latent "
                        "needs a noise mask (Set Latent Noise Mask): outside it the original is re-imposed, "
                        "freshly noised, after every step. Choose the re-noising step with the sigmas (e.g. "
                        "BasicScheduler's denoise).",
            inputs=[io.Combo.Input("sampler_name", options=STEP_SAMPLERS, default="ddpm",
                                   tooltip="The sampler making each reverse step. ddpm is the paper's; "
                                           "ancestral and SDE samplers get fresh noise per step."),
                    io.Int.Input("jump_length", default=5, min=1, max=1000, tooltip=JUMP_TOOLTIP),
                    io.Int.Input("resamplings", default=3, min=1, max=100, tooltip=RESAMPLINGS_TOOLTIP)],
            outputs=[io.Sampler.Output()],
        )

    @classmethod
    def execute(cls, sampler_name, jump_length, resamplings) -> io.NodeOutput:
        return io.NodeOutput(repaint_sampler(sampler_name, jump_length, resamplings))


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


class RePaint(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MasaCtrlRePaint",
            display_name=NODE,
            category="MasaCtrl/photo completion",
            description="Harmonise a generated region with the rest of the image (RePaint, Lugmayr et al. 2022): "
                        "re-noise the latent to the strength `denoise`, then denoise again; after every step the "
                        "region outside the mask is replaced by the original, noised to that step, and every "
                        "jump_length steps the schedule jumps back and resamples. Follow with VAE Decode and "
                        "Paste Back to keep the original pixels exactly.",
            inputs=[
                io.Model.Input("model", tooltip="The model (any patches: Grid Sampling, MasaCtrl, ...)."),
                io.Conditioning.Input("positive"),
                io.Conditioning.Input("negative"),
                io.Latent.Input("latent_image", tooltip="The finished image's latent (VAE Encode)."),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=True),
                io.Int.Input("steps", default=20, min=1, max=10000,
                             tooltip="Steps that run, before resampling (as KSampler with denoise < 1)."),
                io.Float.Input("cfg", default=7.0, min=0.0, max=100.0, step=0.1, round=0.01),
                io.Combo.Input("sampler_name", options=STEP_SAMPLERS, default="ddpm",
                               tooltip="The sampler making each reverse step (ddpm: the paper's)."),
                io.Combo.Input("scheduler", options=comfy.samplers.SCHEDULER_NAMES, default="normal"),
                io.Float.Input("denoise", default=0.5, min=0.01, max=1.0, step=0.01,
                               tooltip="Re-noising strength: how far back the image is noised (1: pure noise)."),
                io.Int.Input("jump_length", default=5, min=1, max=1000, tooltip=JUMP_TOOLTIP),
                io.Int.Input("resamplings", default=3, min=1, max=100, tooltip=RESAMPLINGS_TOOLTIP),
                io.Mask.Input("mask", optional=True,
                              tooltip="The region to regenerate (the new area plus a seam band: Extend Canvas's "
                                      "mask), at the image's size. Without it, the latent's noise mask is used."),
            ],
            outputs=[io.Latent.Output()],
        )

    @classmethod
    def execute(cls, model, positive, negative, latent_image, seed, steps, cfg, sampler_name, scheduler, denoise,
                jump_length, resamplings, mask=None) -> io.NodeOutput:
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
        return io.NodeOutput({**latent_image, "samples": out})
