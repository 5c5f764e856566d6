"""DDIM inversion in k-diffusion sigma space, for editing real images with MasaCtrl. Pure torch.

ComfyUI (k-diffusion) samples x = z * sqrt(1 + sigma^2), where z is the variance-preserving latent of
DDPM/DDIM (z = sqrt(a) x0 + sqrt(1 - a) eps, sigma^2 = (1 - a) / a) and `denoise(x, sigma)` returns the
model's estimate of x0. In this space a deterministic DDIM step is an Euler step,
x_next = x + (sigma_next - sigma) * eps with eps = (x - x0_hat) / sigma.

Inversion walks that ODE backwards with the approximation of the MasaCtrl reference (TencentARC/MasaCtrl,
`MasaCtrlPipeline.invert` / `next_step`): the noise of the step from level `prev` to the higher level `next`
is predicted at `next`'s timestep from the CURRENT latent z_prev. Here that means the model is fed
x' = z_prev * sqrt(1 + s_next^2) at sigma s_next, so it sees exactly z_prev, as the reference's UNet does.

Where the walk starts matters: the reference puts the photo's latent at the FIRST level of the training
schedule, alphas_cumprod[0] (SD's DDIMScheduler has set_alpha_to_one=False, so `next_step`'s first step
uses final_alpha_cumprod = alphas_cumprod[0]), i.e. at ComfyUI's smallest sigma sigmas[0] (0.0292 for
SD1.x), not at sigma 0. `clean_sigma` is that level. Schedule sigmas at or below it hold the clean latent
itself (the reference has no level below it), so schedules ending at sigma_min (normal, karras, ...) take
no model call there.

The recorded `Trajectory` lets a sampler's source branch follow the inversion back to the photo:
`latent_at(sigma)` is the inverted latent at a schedule sigma, and `implied_denoised(sigma)` is the
denoised value that makes an Euler/DDIM step from it land exactly on the next point of the trajectory.
The sampler's last step goes to sigma 0, where the trajectory holds the photo's latent unscaled.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

RTOL = 1e-4  # how close a sampler's sigma must be to a schedule sigma (the float32 schedule, re-read)

FOLLOW_FIX = ("Sample with the same steps and scheduler as the inversion, with a sampler that evaluates the "
              "model only at the schedule's sigmas (euler, ddim, dpmpp_2m, heun), and with denoise 1.0 "
              "(KSamplerAdvanced: add_noise disable, start_at_step 0).")


class InversionScheduleError(ValueError):
    """A sampler evaluated the model at a sigma the inversion did not visit; the message names the fix."""


def check_schedule(sigmas: torch.Tensor) -> torch.Tensor:
    """The sampler's descending schedule s[0] > ... > s[n-1] > s[n] = 0, as float64 on the CPU."""
    s = torch.as_tensor(sigmas).detach().to("cpu", torch.float64).flatten()
    if len(s) < 2:
        raise ValueError(f"Inversion needs a schedule of at least 2 sigmas (1 step); got {len(s)}.")
    if float(s[-1]) != 0.0:
        raise ValueError(f"Inversion needs a schedule that ends at sigma 0 (where sampling ends on the photo); it "
                         f"ends at {float(s[-1]):.6g}. Use the full schedule of a scheduler (denoise 1.0).")
    if not bool((s[:-1] > s[1:]).all()):
        raise ValueError("Inversion needs a strictly decreasing schedule of sigmas; got "
                         f"{[round(float(v), 6) for v in s]}.")
    return s


def check_clean_sigma(clean_sigma: float, sigmas: torch.Tensor) -> float:
    """The level of the clean latent: >= 0 and below the schedule's highest sigma (something to invert)."""
    c = float(clean_sigma)
    if not (math.isfinite(c) and c >= 0.0):
        raise ValueError(f"Inversion needs clean_sigma >= 0 (the level of the clean latent: the model's "
                         f"smallest sigma, model_sampling.sigma_min); got {c}.")
    if not is_above_clean(float(sigmas[0]), c):
        raise ValueError(f"Inversion: the schedule's highest sigma {float(sigmas[0]):.6g} is not above the clean "
                         f"latent's level {c:.6g}, so there is nothing to invert. Use more steps or another scheduler.")
    return c


def is_above_clean(sigma: float, clean_sigma: float) -> bool:
    """Whether a schedule sigma is a noisier level than the clean latent's. Within rtol counts as the clean level:
    karras/exponential/normal end at sigma_min re-computed in float32 (off by up to ~1e-6 relative)."""
    return sigma > clean_sigma * (1.0 + RTOL)


@dataclass(frozen=True)
class Trajectory:
    """The inversion's latents at every sigma of the schedule.

    sigmas:  [n+1] float64 on the CPU, descending, sigmas[n] = 0 (the sampler's schedule).
    latents: [n+1, B, ...], latents[i] is x at sigmas[i]; latents[n] is the clean latent (where sampling
             ends), latents[0] the inverted noise at the highest sigma (where sampling starts).
    clean_sigma: the level the inversion started from, with the clean latent (see the module's docstring)."""
    sigmas: torch.Tensor
    latents: torch.Tensor
    clean_sigma: float

    def __post_init__(self):
        object.__setattr__(self, "sigmas", check_schedule(self.sigmas))
        object.__setattr__(self, "clean_sigma", check_clean_sigma(self.clean_sigma, self.sigmas))
        if self.latents.shape[0] != len(self.sigmas):
            raise ValueError(f"Trajectory: {self.latents.shape[0]} latents for {len(self.sigmas)} sigmas; "
                             "there must be one latent per sigma of the schedule.")

    @property
    def steps(self) -> int:
        return len(self.sigmas) - 1

    @property
    def start(self) -> torch.Tensor:
        """The inverted latent at the highest sigma: the sampler's starting latent (no noise added)."""
        return self.latents[0]

    @property
    def clean(self) -> torch.Tensor:
        return self.latents[-1]

    def index_of(self, sigma: float) -> int:
        sigma = float(sigma)
        match = torch.isclose(self.sigmas, torch.tensor(sigma, dtype=torch.float64), rtol=RTOL, atol=0.0)
        hits = match.nonzero().flatten()
        if len(hits) == 0:
            shown = ", ".join(f"{float(v):.4g}" for v in self.sigmas)
            raise InversionScheduleError(
                f"the sampler evaluated the model at sigma {sigma:.6g}, which is not in the inversion's schedule "
                f"({self.steps} steps, sigmas {shown}). {FOLLOW_FIX}")
        return int(hits[0])

    def latent_at(self, sigma: float) -> torch.Tensor:
        """The inverted latent x at `sigma` (a sigma of the schedule, within rtol 1e-4)."""
        return self.latents[self.index_of(sigma)]

    def implied_denoised(self, sigma: float) -> torch.Tensor:
        """D_i = x_i - s_i (x_i - x_{i+1}) / (s_i - s_{i+1}): the denoised value for which an Euler/DDIM step
        from x_i at s_i lands on x_{i+1}. At the last step (s_{i+1} = 0) it is the clean latent itself."""
        i = self.index_of(sigma)
        if i == self.steps:
            raise InversionScheduleError(
                "the sampler evaluated the model at sigma 0, where no step is left to take. " + FOLLOW_FIX)
        if i == self.steps - 1:
            return self.latents[-1]
        s, s_next = float(self.sigmas[i]), float(self.sigmas[i + 1])
        x, x_next = self.latents[i].double(), self.latents[i + 1].double()
        return (x - s * (x - x_next) / (s - s_next)).to(self.latents.dtype)


def ddim_invert(denoise: Callable[[torch.Tensor, float], torch.Tensor], x0: torch.Tensor, sigmas,
                clean_sigma: float,
                callback: Optional[Callable[[int, int, torch.Tensor, torch.Tensor], None]] = None) -> Trajectory:
    """Invert the clean latent `x0` ([B, ...]) along the sampler's schedule `sigmas` (descending, ending at 0),
    starting from the level `clean_sigma` (the reference's: the model's smallest sigma, model_sampling.sigma_min).

    denoise(x, sigma) -> the model's denoised estimate at `sigma` (a python float), in x-space.
    callback(step, total, x, denoised) runs once per schedule level from the lowest (step 0) up, e.g. for
    progress and interruption; levels at or below clean_sigma pass the clean latent and take no model call.
    The arithmetic runs in x0's dtype and device; the trajectory is stored on the CPU."""
    s = check_schedule(sigmas)
    c = check_clean_sigma(clean_sigma, s)
    n = len(s) - 1
    latents = [None] * (n + 1)
    latents[n] = x0.detach().to("cpu")  # sigma 0, where sampling ends: the photo's latent itself
    x, s_prev = x0 * math.sqrt(1.0 + c ** 2), c  # the VP latent z = x0 at the clean level, in x-space
    for step, i in enumerate(range(n - 1, -1, -1)):
        s_next = float(s[i])
        if not is_above_clean(s_next, c):
            level, denoised = x0 * math.sqrt(1.0 + s_next ** 2), x0
        else:
            # The model sees the current VP latent z_prev at the next, higher level's timestep.
            x_in = x * (math.sqrt(1.0 + s_next ** 2) / math.sqrt(1.0 + s_prev ** 2))
            denoised = denoise(x_in, s_next)
            eps = (x_in - denoised) / s_next
            x = x + (s_next - s_prev) * eps
            level, s_prev = x, s_next
        latents[i] = level.detach().to("cpu")
        if callback is not None:
            callback(step, n, level, denoised)
    return Trajectory(s, torch.stack(latents), c)
