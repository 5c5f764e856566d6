"""ComfyUI glue for real-photo editing on flow models (Flux, Chroma, SD3.x): the flow inversion run as a ComfyUI
sampler, and the NOISE that starts SamplerCustomAdvanced exactly from the inverted latent.

Why a NOISE and not a start latent: on flow models ComfyUI's KSAMPLER starts from
noise_scaling(s0, noise, latent) = s0 noise + (1 - s0) latent (comfy/model_sampling.py CONST), which at the usual
s0 = 1 wipes whatever latent is given; the noise is what the sampler starts from."""
from __future__ import annotations

from dataclasses import dataclass

import comfy.sample
import comfy.samplers
import torch

from .comfyui_inversion import (
    Inversion,
    check_inversion_schedule,
    check_vp_sampling,
    is_flow_sampling,
    run_inversion,
    sampling_kind,
)
from .flow_inversion import DEFAULT_SOLVER, check_solver, flow_invert

NODE = "Flow Inversion (MasaCtrl)"


@dataclass(frozen=True)
class FlowInversion(Inversion):
    solver: str = DEFAULT_SOLVER

    node = NODE
    start_name = "Flow Inversion's noise"
    start_fix = ("Sample with SamplerCustomAdvanced: Flow Inversion's noise into noise, its latent into "
                 "latent_image, and sigmas from BasicScheduler with the inversion's steps and scheduler (a "
                 "random or disabled noise, KSampler or KSamplerAdvanced start elsewhere).")

    def describe(self) -> str:
        return f"{super().describe()}, solver {self.solver} (sigmas: BasicScheduler, denoise 1.0)"

    def check_model(self, model, node: str):
        try:
            check_vp_sampling(model, node)
        except ValueError:
            check_flow_sampling(model, node)
            return
        raise ValueError(f"{node}: this inversion was made by Flow Inversion (MasaCtrl), for flow models (Flux, Chroma, "
                         f"SD3.x), but this MODEL samples with {sampling_kind(model)} (SD1.x/SD2.x/SDXL). Invert the "
                         "photo with DDIM Inversion (MasaCtrl) on this model and connect its inversion here.")


def check_flow_sampling(model, node: str):
    if not is_flow_sampling(model):
        raise ValueError(
            f"{node}: this MODEL samples with {sampling_kind(model)}, not the flow matching (x = (1 - s) x0 + s noise) "
            "Flow Inversion is defined for. Use a flow model (Flux, Chroma, SD3.x, Qwen-Image); for SD1.x, SD2.x or "
            "SDXL use DDIM Inversion (MasaCtrl).")


class InversionNoise:
    """ComfyUI's NOISE (as comfy_extras/nodes_custom_sampler.py Noise_RandomNoise: `seed`, `generate_noise`) whose
    noise makes the sampler's first x, s0 noise + (1 - s0) latent_in, equal the inverted latent in every row."""

    def __init__(self, inversion: FlowInversion, latent_format):
        self.seed = 0  # only stochastic samplers draw from it; Follow Inversion needs deterministic ones anyway
        self.inversion = inversion
        self.latent_format = latent_format

    def generate_noise(self, input_latent: dict) -> torch.Tensor:
        latent = input_latent["samples"]
        start = self.inversion.trajectory.start
        if tuple(latent.shape[1:]) != tuple(start.shape[1:]):
            raise ValueError(f"{NODE}: the sampler's latent_image is {list(latent.shape[1:])} but the inversion's "
                             f"latent is {list(start.shape[1:])}: connect Flow Inversion's latent output to "
                             "SamplerCustomAdvanced's latent_image (no resize or crop).")
        start = start.expand(latent.shape[0], *start.shape[1:])
        s0 = float(self.inversion.trajectory.sigmas[0])
        if s0 == 1.0:  # the usual flow schedule: the latent is multiplied by 0 and the noise is the start itself
            return start.to(latent.dtype).clone()
        # CFGGuider.inner_sample shifts the latent into the model's space unless it is all zeros.
        latent_in = self.latent_format.process_in(latent) if torch.count_nonzero(latent) > 0 else latent
        return ((start.double() - (1.0 - s0) * latent_in.double()) / s0).to(latent.dtype)


def invert_flow(model, positive, negative, samples: torch.Tensor, steps: int, cfg: float, scheduler: str,
                solver: str, node: str) -> FlowInversion:
    """Invert one photo's latent `samples` (LATENT space) on a flow model through ComfyUI's sampler machinery
    (guider, patches, progress bar, latent preview, Cancel): the inversion, in the model's space."""
    check_flow_sampling(model, node)
    check_solver(solver)
    if negative is None and cfg != 1.0:
        raise ValueError(f"{node}: cfg {cfg:g} needs the negative input (classifier-free guidance); connect a "
                         "negative prompt or set cfg to 1.0 (guidance-distilled Flux runs at cfg 1).")
    sampling = model.get_model_object("model_sampling")
    sigmas = comfy.samplers.calculate_sigmas(sampling, scheduler, steps).cpu()
    # As DDIM inversion: the photo sits at the smallest trained level, where the velocity can still be read.
    clean_sigma = float(sampling.sigma_min)
    check_inversion_schedule(sigmas, clean_sigma, steps, scheduler, "Use simple or normal.", node)
    latent_image = comfy.sample.fix_empty_latent_channels(model, samples)
    clean = model.model.process_latent_in(latent_image.float())
    guider = comfy.samplers.CFGGuider(model)  # without a negative, as BasicGuider: the positive alone
    guider.inner_set_conds({"positive": positive} if negative is None else {"positive": positive, "negative": negative})
    guider.set_cfg(cfg)

    def run(denoise, x, sigmas, callback):  # KSAMPLER's x is s0 * 0 + (1 - s0) * latent: start from the photo
        return flow_invert(denoise, clean.to(x), sigmas, clean_sigma, solver, callback)

    trajectory = run_inversion(model, guider, latent_image, sigmas, run)
    return FlowInversion(trajectory, steps, scheduler, cfg, solver)
