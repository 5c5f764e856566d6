"""Real-image editing: DDIM-invert a photo's latent, then let the source image of the batch follow the
inversion back to the photo while MasaCtrl edits the targets (the reference's `ref_intermediate_latents`)."""
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
from comfy_api.latest import io

from ..attention.inversion import InversionScheduleError, Trajectory, ddim_invert

Inversion_ = io.Custom("MASACTRL_INVERSION")
WRAPPER_KEY = "masactrl_follow_inversion"


@dataclass(frozen=True)
class DDIMInversion:
    """What DDIM Inversion hands to Follow Inversion: the trajectory in the model's internal latent space
    (after process_latent_in) and how it was made, for error messages."""
    trajectory: Trajectory
    steps: int
    scheduler: str
    cfg: float

    def describe(self) -> str:
        return f"steps {self.steps}, scheduler {self.scheduler}"


def check_vp_sampling(model, node: str):
    """The inversion's x = z * sqrt(1 + sigma^2) holds for ComfyUI's variance-preserving sampling (EPS and
    v-prediction: SD1.x, SD2.x, SDXL); flow models (SD3, Flux) and EDM models with sigma_data != 1 differ."""
    sampling = model.get_model_object("model_sampling")
    kind = type(sampling)
    eps = comfy.model_sampling.EPS
    if (kind.calculate_input is not eps.calculate_input or kind.noise_scaling is not eps.noise_scaling
            or float(getattr(sampling, "sigma_data", 1.0)) != 1.0):
        bases = ", ".join(b.__name__ for b in kind.__mro__[1:-1])
        raise ValueError(
            f"{node}: this MODEL samples with {bases} (sigma_data {getattr(sampling, 'sigma_data', '?')}), not the "
            "variance-preserving epsilon/v-prediction sampling DDIM inversion is defined for. Use an SD1.x, SD2.x "
            "or SDXL checkpoint, without a ModelSampling node that switches it to flow/EDM sampling.")


def inversion_sampler(box: dict, clean_sigma: float):
    """A KSAMPLER sampler function: runs the inversion from `clean_sigma` with the CFG denoiser ComfyUI gives it
    and returns the inverted latent at the highest sigma; the trajectory goes into box['trajectory']."""
    def sample_ddim_inversion(model, x, sigmas, extra_args=None, callback=None, disable=None):
        extra_args = {} if extra_args is None else extra_args
        s_in = x.new_ones([x.shape[0]])

        def denoise(x_in, sigma):
            comfy.model_management.throw_exception_if_processing_interrupted()
            return model(x_in, sigma * s_in, **extra_args)

        def step_done(step, total, x_now, denoised):
            if callback is not None:  # ComfyUI's progress bar (and latent preview)
                callback({"i": step, "x": x_now, "denoised": denoised})

        trajectory = ddim_invert(denoise, x, sigmas, clean_sigma, callback=step_done)
        box["trajectory"] = trajectory
        return trajectory.start.to(x)
    return sample_ddim_inversion


class DDIMInversionNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MasaCtrlDDIMInversion",
            display_name="DDIM Inversion (MasaCtrl)",
            category="MasaCtrl",
            description="Invert a photo's latent (VAE Encode) with deterministic DDIM inversion, as MasaCtrl does for "
                        "real-image editing. start_latent is the noise the photo came from: sample it WITHOUT added "
                        "noise (KSamplerAdvanced add_noise disable, same steps and scheduler) with a model through "
                        "Follow Inversion (MasaCtrl) and MasaCtrl.",
            inputs=[
                io.Model.Input("model", tooltip="The checkpoint's model (SD1.x, SD2.x, SDXL), before MasaCtrl and "
                                                "Follow Inversion."),
                io.Conditioning.Input("positive", tooltip="The source prompt: a description of the photo."),
                io.Conditioning.Input("negative", tooltip="The negative prompt (usually empty)."),
                io.Latent.Input("latent", tooltip="The photo's latent (VAE Encode of one image)."),
                io.Int.Input("steps", default=50, min=1, max=1000,
                             tooltip="Inversion steps; sample with the same number of steps."),
                io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance of the inversion (MasaCtrl's reference: 7.5). "
                                       "1.0 skips the negative prompt and inverts more exactly."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="ddim_uniform",
                               tooltip="Sigma schedule of the inversion; sample with the same scheduler."),
                io.Int.Input("batch_size", default=2, min=1, max=64,
                             tooltip="Copies of the start latent in the output: the source (image 0) plus the "
                                     "targets. Match the number of prompts in Batch Conditioning."),
            ],
            outputs=[
                io.Latent.Output(display_name="start_latent",
                                 tooltip="The inverted noise, batch_size copies. Sample with add_noise disabled."),
                Inversion_.Output(display_name="inversion",
                                  tooltip="The inversion trajectory, for Follow Inversion (MasaCtrl)."),
            ],
        )

    @classmethod
    def execute(cls, model, positive, negative, latent, steps, cfg, scheduler, batch_size) -> io.NodeOutput:
        node = "DDIM Inversion (MasaCtrl)"
        samples = latent["samples"]
        if samples.shape[0] != 1:
            raise ValueError(f"{node}: the latent input holds {samples.shape[0]} images; it inverts one photo. "
                             "VAE Encode a single image, or pick one with Latent From Batch.")
        if steps < 1:
            raise ValueError(f"{node}: steps is {steps}; use 1 or more (MasaCtrl's reference: 50).")
        if batch_size < 1:
            raise ValueError(f"{node}: batch_size is {batch_size}; use 2 for one source and one target.")
        check_vp_sampling(model, node)
        sampling = model.get_model_object("model_sampling")
        sigmas = comfy.samplers.calculate_sigmas(sampling, scheduler, steps).cpu()
        # The reference starts from the first level of the training schedule (alphas_cumprod[0]), which is the
        # model's smallest sigma, not from sigma 0: see attention/inversion.py.
        clean_sigma = float(sampling.sigma_min)
        try:  # the schedule's checks, before the model is loaded
            Trajectory(sigmas, torch.zeros(len(sigmas), 1), clean_sigma)
        except ValueError as error:
            raise ValueError(f"{node}: scheduler {scheduler} with {steps} steps: {error} Use ddim_uniform or "
                             "normal.") from None

        latent_image = comfy.sample.fix_empty_latent_channels(model, samples)
        guider = comfy.samplers.CFGGuider(model)
        guider.set_conds(positive, negative)
        guider.set_cfg(cfg)
        box = {}
        callback = latent_preview.prepare_callback(model, len(sigmas) - 1)
        start = guider.sample(torch.zeros_like(latent_image), latent_image,
                              comfy.samplers.KSAMPLER(inversion_sampler(box, clean_sigma)), sigmas, callback=callback,
                              disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=0)
        start = start.to(comfy.model_management.intermediate_device())
        inversion = DDIMInversion(box["trajectory"], steps, scheduler, cfg)
        reps = (batch_size,) + (1,) * (start.ndim - 1)
        return io.NodeOutput({"samples": start.repeat(reps)}, inversion)


class FollowTrajectory:
    """APPLY_MODEL wrapper: in every model call, the source rows (row `source_index` of each cond/uncond chunk)
    get the inversion's latent at the call's sigma as input, so MasaCtrl's self-attention reads the photo's
    keys and values, and the trajectory-implied denoised as output, so an Euler/DDIM step lands on the next
    point of the trajectory and the source ends exactly at the photo's latent."""
    node = "Follow Inversion (MasaCtrl)"

    def __init__(self, inversion: DDIMInversion, source_index: int):
        self.inversion = inversion
        self.source_index = source_index

    def __call__(self, executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={},
                 **kwargs):
        trajectory = self.inversion.trajectory
        chunks = len(transformer_options.get("cond_or_uncond") or [0])
        per = x.shape[0] // chunks
        if self.source_index >= per:
            raise ValueError(f"{self.node}: source_index {self.source_index} names image {self.source_index}, but "
                             f"the latent batch has {per} image(s): lower source_index, or raise DDIM Inversion's "
                             "batch_size.")
        if tuple(x.shape[1:]) != tuple(trajectory.latents.shape[2:]):
            raise ValueError(f"{self.node}: the sampled latent is {list(x.shape[1:])} but the inversion's is "
                             f"{list(trajectory.latents.shape[2:])}: sample DDIM Inversion's start_latent as it "
                             "is (no resize or crop), without area conditioning.")
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
                    f"{self.node}: image {self.source_index} of the batch does not start from DDIM Inversion's "
                    f"start_latent (max difference {off:.3g}). Connect start_latent to the sampler's latent_image and "
                    "sample with add_noise disabled (KSamplerAdvanced add_noise = disable, start_at_step 0, or "
                    "SamplerCustom add_noise off); KSampler always adds noise.")
        x = x.index_copy(0, rows, latent.expand(len(rows), *latent.shape[1:]))
        out = executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
        denoised = denoised.to(device=out.device, dtype=out.dtype)
        return out.index_copy(0, rows, denoised.expand(len(rows), *denoised.shape[1:]))


class FollowInversionNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MasaCtrlFollowInversion",
            display_name="Follow Inversion (MasaCtrl)",
            category="MasaCtrl",
            description="Make the source image of the batch follow a DDIM inversion back to the photo, so MasaCtrl "
                        "edits the targets with the photo as source. Returns a copy of the model.",
            inputs=[
                io.Model.Input("model", tooltip="The model to sample with (before or after MasaCtrl). It is not "
                                                "changed; a copy is returned."),
                Inversion_.Input("inversion", tooltip="The inversion output of DDIM Inversion (MasaCtrl)."),
                io.Int.Input("source_index", default=0, min=0, max=63,
                             tooltip="Which image of the latent batch is the photo's branch (MasaCtrl's source: 0)."),
            ],
            outputs=[io.Model.Output()],
        )

    @classmethod
    def execute(cls, model, inversion, source_index) -> io.NodeOutput:
        # Duck-typed: the pack can be imported twice under different names (tests), each with its own classes.
        if not hasattr(getattr(inversion, "trajectory", None), "implied_denoised"):
            raise ValueError(f"Follow Inversion (MasaCtrl): the inversion input is a {type(inversion).__name__}; "
                             "connect the inversion output of DDIM Inversion (MasaCtrl).")
        if source_index < 0:
            raise ValueError(f"Follow Inversion (MasaCtrl): source_index is {source_index}; use 0 or more.")
        check_vp_sampling(model, "Follow Inversion (MasaCtrl)")
        patched = model.clone()
        patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, WRAPPER_KEY,
                                     FollowTrajectory(inversion, source_index))
        return io.NodeOutput(patched)
