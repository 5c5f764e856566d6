"""ComfyUI glue for real-photo editing: DDIM inversion as a ComfyUI sampler (the trajectory recorded on the
way), and the APPLY_MODEL wrapper that makes the source image of the batch follow it back to the photo while
MasaCtrl edits the targets (the reference's `ref_intermediate_latents`)."""
from __future__ import annotations

from dataclasses import dataclass

import comfy.model_management
import comfy.model_sampling
import comfy.patcher_extension
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
import torch

from .ddim_inversion import InversionScheduleError, Trajectory, ddim_invert

WRAPPER_KEY = "masactrl_follow_inversion"


@dataclass(frozen=True)
class Inversion:
    """What an inversion node hands to Follow Inversion: the trajectory in the model's internal latent space
    (after process_latent_in) and how it was made, for error messages. One type for both kinds (DDIM on
    variance-preserving models, Flow on flow models), so both connect to Follow Inversion."""
    trajectory: Trajectory
    steps: int
    scheduler: str
    cfg: float

    node = "DDIM Inversion (MasaCtrl)"  # the node that made it
    start_name = "DDIM Inversion's start_latent"  # what the sampler must start from
    start_fix = ("Connect start_latent to the sampler's latent_image and sample with add_noise disabled "
                 "(KSamplerAdvanced add_noise = disable, start_at_step 0, or SamplerCustom add_noise off); "
                 "KSampler always adds noise.")

    def describe(self) -> str:
        return f"steps {self.steps}, scheduler {self.scheduler}"

    def check_model(self, model, node: str):
        """Refuse a model this kind of inversion is not defined for (the other kind's), naming the fix."""
        raise NotImplementedError


@dataclass(frozen=True)
class DDIMInversion(Inversion):
    def check_model(self, model, node: str):
        if is_flow_sampling(model):
            raise ValueError(
                f"{node}: this inversion was made by DDIM Inversion (MasaCtrl), for SD1.x/SD2.x/SDXL, but this MODEL "
                f"samples as a flow model ({sampling_kind(model)}: Flux, Chroma, SD3.x). Invert the photo with Flow "
                "Inversion (MasaCtrl) on this model and connect its inversion here.")
        check_vp_sampling(model, node)


def sampling_kind(model) -> str:
    return ", ".join(b.__name__ for b in type(model.get_model_object("model_sampling")).__mro__[1:-1])


def is_flow(model_sampling) -> bool:
    """ComfyUI's flow-matching sampling (CONST: x = (1 - s) x0 + s eps, denoised = x - s v): Flux, SD3, ..."""
    kind, const = type(model_sampling), comfy.model_sampling.CONST
    return kind.noise_scaling is const.noise_scaling and kind.calculate_denoised is const.calculate_denoised


def is_flow_sampling(model) -> bool:
    return is_flow(model.get_model_object("model_sampling"))


def check_vp_sampling(model, node: str):
    """The inversion's x = z * sqrt(1 + sigma^2) holds for ComfyUI's variance-preserving sampling (EPS and
    v-prediction: SD1.x, SD2.x, SDXL); flow models (SD3, Flux) and EDM models with sigma_data != 1 differ."""
    sampling = model.get_model_object("model_sampling")
    kind = type(sampling)
    eps = comfy.model_sampling.EPS
    if (kind.calculate_input is not eps.calculate_input or kind.noise_scaling is not eps.noise_scaling
            or float(getattr(sampling, "sigma_data", 1.0)) != 1.0):
        flow = " For a flow model (Flux, Chroma, SD3.x) use Flow Inversion (MasaCtrl)." if is_flow_sampling(model) \
            else ""
        raise ValueError(
            f"{node}: this MODEL samples with {sampling_kind(model)} (sigma_data "
            f"{getattr(sampling, 'sigma_data', '?')}), not the variance-preserving epsilon/v-prediction sampling DDIM "
            "inversion is defined for. Use an SD1.x, SD2.x or SDXL checkpoint, without a ModelSampling node that "
            f"switches it to flow/EDM sampling.{flow}")


def inversion_sampler(box: dict, run):
    """A KSAMPLER sampler function: runs `run(denoise, x, sigmas, callback) -> Trajectory` with the CFG denoiser
    ComfyUI gives it and returns the inverted latent at the highest sigma; the trajectory goes into
    box['trajectory']."""
    def sample_inversion(model, x, sigmas, extra_args=None, callback=None, disable=None):
        extra_args = {} if extra_args is None else extra_args
        s_in = x.new_ones([x.shape[0]])

        def denoise(x_in, sigma):
            comfy.model_management.throw_exception_if_processing_interrupted()
            return model(x_in, sigma * s_in, **extra_args)

        def step_done(step, total, x_now, denoised):
            if callback is not None:  # ComfyUI's progress bar (and latent preview)
                callback({"i": step, "x": x_now, "denoised": denoised})

        trajectory = run(denoise, x, sigmas, step_done)
        box["trajectory"] = trajectory
        return trajectory.start.to(x)
    return sample_inversion


def run_inversion(model, guider, latent_image: torch.Tensor, sigmas: torch.Tensor, run) -> Trajectory:
    """Run an inversion (`run`, as inversion_sampler's) through ComfyUI's sampler machinery: the guider's CFG and
    patches, progress bar, latent preview, Cancel."""
    box = {}
    callback = latent_preview.prepare_callback(model, len(sigmas) - 1)
    guider.sample(torch.zeros_like(latent_image), latent_image, comfy.samplers.KSAMPLER(inversion_sampler(box, run)),
                  sigmas, callback=callback, disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=0)
    return box["trajectory"]


def check_inversion_schedule(sigmas: torch.Tensor, clean_sigma: float, steps: int, scheduler: str, fix: str,
                             node: str):
    """The schedule's checks (attention/ddim_inversion.py), before the model is loaded."""
    try:
        Trajectory(sigmas, torch.zeros(len(sigmas), 1), clean_sigma)
    except ValueError as error:
        raise ValueError(f"{node}: scheduler {scheduler} with {steps} steps: {error} {fix}") from None


def invert(model, positive, negative, samples: torch.Tensor, steps: int, cfg: float, scheduler: str,
           node: str) -> tuple[torch.Tensor, DDIMInversion]:
    """DDIM-invert one photo's latent `samples` (LATENT space) through ComfyUI's sampler machinery (CFG, patches,
    progress bar, latent preview, Cancel): the start latent in LATENT space, and the inversion (model space)."""
    check_vp_sampling(model, node)
    sampling = model.get_model_object("model_sampling")
    sigmas = comfy.samplers.calculate_sigmas(sampling, scheduler, steps).cpu()
    # The reference starts from the first level of the training schedule (alphas_cumprod[0]), which is the
    # model's smallest sigma, not from sigma 0: see attention/ddim_inversion.py.
    clean_sigma = float(sampling.sigma_min)
    check_inversion_schedule(sigmas, clean_sigma, steps, scheduler, "Use ddim_uniform or normal.", node)
    latent_image = comfy.sample.fix_empty_latent_channels(model, samples)
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    trajectory = run_inversion(model, guider, latent_image, sigmas,
                               lambda denoise, x, s, callback: ddim_invert(denoise, x, s, clean_sigma, callback))
    start = model.model.process_latent_out(trajectory.start.float())
    return start, DDIMInversion(trajectory, steps, scheduler, cfg)


class FollowTrajectory:
    """APPLY_MODEL wrapper: in every model call, the source rows (row `source_index` of each cond/uncond chunk)
    get the inversion's latent at the call's sigma as input, so MasaCtrl's self-attention reads the photo's
    keys and values, and the trajectory-implied denoised as output, so an Euler/DDIM step lands on the next
    point of the trajectory and the source ends exactly at the photo's latent."""
    node = "Follow Inversion (MasaCtrl)"

    def __init__(self, inversion: Inversion, source_index: int):
        self.inversion = inversion
        self.source_index = source_index

    def __call__(self, executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None,
                 **kwargs):
        transformer_options = {} if transformer_options is None else transformer_options
        trajectory = self.inversion.trajectory
        chunks = len(transformer_options.get("cond_or_uncond") or [0])
        per = x.shape[0] // chunks
        if self.source_index >= per:
            raise ValueError(f"{self.node}: source_index {self.source_index} names image {self.source_index}, but "
                             f"the latent batch has {per} image(s): lower source_index, or raise "
                             f"{self.inversion.node}'s batch_size.")
        if tuple(x.shape[1:]) != tuple(trajectory.latents.shape[2:]):
            raise ValueError(f"{self.node}: the sampled latent is {list(x.shape[1:])} but the inversion's is "
                             f"{list(trajectory.latents.shape[2:])}: sample {self.inversion.start_name} as it is "
                             "(no resize or crop), without area conditioning.")
        rows = torch.arange(chunks, device=x.device) * per + self.source_index
        sigma = float(t[rows[0]])
        try:
            index = trajectory.index_of(sigma)
            latent = trajectory.latents[index]
            denoised = trajectory.implied_denoised(sigma)
        except InversionScheduleError as error:
            raise InversionScheduleError(f"{self.node}: {error} The inversion ran {self.inversion.describe()}.") \
                from None
        latent = latent.to(device=x.device, dtype=x.dtype)
        if index == 0:  # the first step: the source must start from the inverted noise, with no noise added
            off = float((x[rows] - latent).abs().max())
            if off > 1e-3 * max(1.0, float(latent.abs().max())):
                raise ValueError(
                    f"{self.node}: image {self.source_index} of the batch does not start from "
                    f"{self.inversion.start_name} (max difference {off:.3g}). {self.inversion.start_fix}")
        x = x.index_copy(0, rows, latent.expand(len(rows), *latent.shape[1:]))
        out = executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
        denoised = denoised.to(device=out.device, dtype=out.dtype)
        return out.index_copy(0, rows, denoised.expand(len(rows), *denoised.shape[1:]))


def follow_inversion(model, inversion: Inversion, source_index: int):
    """A clone of `model` whose source image follows `inversion` back to the photo."""
    inversion.check_model(model, FollowTrajectory.node)
    patched = model.clone()
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, WRAPPER_KEY,
                                 FollowTrajectory(inversion, source_index))
    return patched
