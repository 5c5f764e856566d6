"""RePaint re-noising as a ComfyUI sampler: re-noise a finished image's latent to a chosen step and denoise
it again with the known region re-imposed after every step, resampling every stretch of the schedule
(completion/repaint.py). Any ComfyUI sampler makes the single reverse steps. Use it from SamplerCustom
(RePaint Sampler) or from the KSampler-like RePaint node; Paste Back then keeps the pixels outside the mask
bit-identical, which a latent round trip cannot."""
from __future__ import annotations

import comfy.samplers
from comfy_api.v0_0_2 import io

from ..completion.comfyui_repaint import NODE, STEP_SAMPLERS, repaint_sampler, sample_repaint
from ..completion.repaint import RePaintScheduleError, jump_schedule
from .input_checks import report, require, rule

JUMP_TOOLTIP = ("j: how many steps each resampling jumps back up (the paper: 10 of 250). Must not exceed the steps "
                "that run.")
RESAMPLINGS_TOOLTIP = ("r: how often each j-step stretch is denoised (the paper: 10). 1: no resampling, only the "
                       "known region re-imposed every step. Cost: about r times the steps.")


@rule("steps", "jump_length", "resamplings")
def jumps_fit_the_steps(steps, jump_length, resamplings):
    try:
        jump_schedule(steps, jump_length, resamplings)
    except RePaintScheduleError as error:
        return str(error)


@rule("latent_image", optional=("mask",))
def something_to_repaint(latent_image, mask):
    # An all-zero region would run every step to reproduce the input: refused rather than silently wasted.
    region, name = (mask, "mask") if mask is not None else (latent_image.get("noise_mask"), "latent_image's noise mask")
    if region is not None and not bool((region > 0).any()):
        return (f"{name} is 0 everywhere, so RePaint would regenerate nothing; paint the region to regenerate white "
                "(e.g. Extend Canvas's mask).")


class RePaintSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MasaCtrlRePaintSampler",
            display_name="RePaint Sampler (MasaCtrl)",
            # Where ComfyUI lists the nodes that make a SAMPLER for SamplerCustom (KSamplerSelect, ...).
            category="sampling/custom_sampling/samplers",
            description="A SAMPLER for SamplerCustom: RePaint resampling around any sampler's steps. The latent "
                        "needs a noise mask (Set Latent Noise Mask): outside it the original is re-imposed, "
                        "freshly noised, after every step. Choose the re-noising step with the sigmas (e.g. "
                        "BasicScheduler's denoise).",
            inputs=[io.Combo.Input("sampler_name", options=STEP_SAMPLERS, default="ddpm",
                                   tooltip="The sampler making each reverse step. ddpm is the paper's (epsilon "
                                           "models; on Flux/SD3 use euler); ancestral and SDE samplers get fresh "
                                           "noise per step."),
                    io.Int.Input("jump_length", default=5, min=1, max=1000, tooltip=JUMP_TOOLTIP),
                    io.Int.Input("resamplings", default=3, min=1, max=100, tooltip=RESAMPLINGS_TOOLTIP)],
            outputs=[io.Sampler.Output(tooltip="For SamplerCustom's sampler input; the latent needs a noise "
                                               "mask (Set Latent Noise Mask).")],
        )

    @classmethod
    def validate_inputs(cls, sampler_name=None):
        return report(cls, locals())

    @classmethod
    def execute(cls, sampler_name, jump_length, resamplings) -> io.NodeOutput:
        require(cls, locals())  # jump_length against the steps: when the sampler runs (repaint_sampler)
        return io.NodeOutput(repaint_sampler(sampler_name, jump_length, resamplings))


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
                io.Conditioning.Input("positive", tooltip="What the regenerated region should show, as for KSampler "
                                                          "(e.g. BLIP Caption's conditioning)."),
                io.Conditioning.Input("negative", tooltip="What it should not show, as for KSampler."),
                io.Latent.Input("latent_image", tooltip="The finished image's latent (VAE Encode)."),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=True,
                             tooltip="Seed of the re-noising and of every resampling jump's fresh noise; the same "
                                     "seed gives the same result."),
                io.Int.Input("steps", default=20, min=1, max=10000,
                             tooltip="Steps that run, before resampling (as KSampler with denoise < 1)."),
                io.Float.Input("cfg", default=7.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance scale, as in KSampler: higher follows the prompt "
                                       "more closely."),
                io.Combo.Input("sampler_name", options=STEP_SAMPLERS, default="ddpm",
                               tooltip="The sampler making each reverse step (ddpm: the paper's, for epsilon "
                                       "models; on Flux/SD3 use euler)."),
                io.Combo.Input("scheduler", options=comfy.samplers.SCHEDULER_NAMES, default="normal",
                               tooltip="Sigma schedule, as in KSampler; denoise picks where on it the re-noising "
                                       "starts."),
                io.Float.Input("denoise", default=0.5, min=0.01, max=1.0, step=0.01,
                               tooltip="Re-noising strength: how far back the image is noised (1: pure noise)."),
                io.Int.Input("jump_length", default=5, min=1, max=1000, tooltip=JUMP_TOOLTIP),
                io.Int.Input("resamplings", default=3, min=1, max=100, tooltip=RESAMPLINGS_TOOLTIP),
                io.Mask.Input("mask", optional=True,
                              tooltip="The region to regenerate (the new area plus a seam band: Extend Canvas's "
                                      "mask), at the image's size. Without it, the latent's noise mask is used."),
            ],
            outputs=[io.Latent.Output(tooltip="The harmonised latent: VAE Decode it, then Paste Back Original "
                                              "(MasaCtrl) to keep the pixels outside the mask exact.")],
        )

    RULES = (jumps_fit_the_steps, something_to_repaint)

    @classmethod
    def validate_inputs(cls, steps=None, sampler_name=None, scheduler=None, jump_length=None, resamplings=None):
        return report(cls, locals())

    @classmethod
    def execute(cls, model, positive, negative, latent_image, seed, steps, cfg, sampler_name, scheduler, denoise,
                jump_length, resamplings, mask=None) -> io.NodeOutput:
        require(cls, locals())
        return io.NodeOutput(sample_repaint(model, positive, negative, latent_image, seed, steps, cfg, sampler_name,
                                            scheduler, denoise, jump_length, resamplings, mask))
