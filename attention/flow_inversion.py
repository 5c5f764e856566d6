"""Inversion of a clean latent on flow models (Flux, Chroma, SD3.x, ...), for editing real images. Pure torch.

ComfyUI's flow convention (comfy/model_sampling.py CONST): x = (1 - s) x0 + s eps, `denoise(x, s)` returns the
model's estimate D of x0, and the velocity of the ODE dx/ds is v(x, s) = (x - D) / s (= eps - x0 for the true
pair). Sampling integrates it from s = 1 down to 0; inversion integrates it upwards along the same schedule,
from the photo's latent to the noise the sampler starts from.

As the DDIM inversion (attention/ddim_inversion.py), the walk starts with the photo at the model's smallest
trained level `clean_sigma` (model_sampling.sigma_min): v cannot be read from D at s = 0. Schedule levels at
or below it hold the clean latent itself. With levels c = s_n' < ... < s_0 above it (h = s_next - s, upwards):

- euler (Stable Flow, Avrahami et al. 2025, inverse Euler): x_next = x + h v(x, s). 1 model call per step.
- rf_solver (RF-Solver, Wang et al. 2024, arXiv 2411.04746, second order): v = v(x, s),
  x_mid = x + h/2 v, v_mid = v(x_mid, s + h/2), x_next = x + h v + h^2/2 (v_mid - v) / (h/2),
  which is the midpoint step x + h v_mid. 2 model calls per step.
- fireflow (FireFlow, Deng et al. 2024, arXiv 2412.07517): the same midpoint step, but v at (x, s) is the
  previous step's v_mid, reused instead of evaluated (the first step evaluates it). 1 model call per step,
  plus one at the start.

The result is the same `Trajectory` as DDIM inversion's (latents at every schedule sigma, latents[n] = x0 at
sigma 0), so Follow Inversion's trajectory-implied denoised (an Euler step x + (s_next - s)(x - D)/s, which is
ComfyUI's euler on flow models too) brings the source image back to the photo exactly.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from .ddim_inversion import Trajectory, check_clean_sigma, check_schedule, is_above_clean

# name -> model calls per step (fireflow: plus one at the start)
SOLVERS = {"euler": 1, "rf_solver": 2, "fireflow": 1}
# FireFlow: second order (as RF-Solver) at the cost of first-order Euler: one model call per step.
DEFAULT_SOLVER = "fireflow"


def check_solver(solver: str) -> str:
    if solver not in SOLVERS:
        raise ValueError(f"Flow inversion: unknown solver {solver!r}; use one of {', '.join(SOLVERS)}.")
    return solver


def flow_invert(denoise: Callable[[torch.Tensor, float], torch.Tensor], x0: torch.Tensor, sigmas,
                clean_sigma: float, solver: str = DEFAULT_SOLVER,
                callback: Callable[[int, int, torch.Tensor, torch.Tensor], None] | None = None) -> Trajectory:
    """Invert the clean latent `x0` ([B, ...]) along the sampler's schedule `sigmas` (descending, ending at 0),
    starting from the level `clean_sigma` (the model's smallest sigma), with `solver` (see the module docstring).

    denoise(x, sigma) -> the model's denoised estimate at `sigma` (a python float), in x-space.
    callback(step, total, x, denoised) runs once per schedule level from the lowest (step 0) up, with the last
    denoised estimate, e.g. for progress and interruption; levels at or below clean_sigma take no model call.
    The arithmetic runs in x0's dtype and device; the trajectory is stored on the CPU."""
    check_solver(solver)
    s = check_schedule(sigmas)
    c = check_clean_sigma(clean_sigma, s)
    n = len(s) - 1
    latents = [None] * (n + 1)
    latents[n] = x0.detach().to("cpu")  # sigma 0, where sampling ends: the photo's latent itself
    last = {}

    def velocity(x, sigma):
        denoised = denoise(x, sigma)
        last["denoised"] = denoised
        return (x - denoised) / sigma

    x, level, reused = x0, c, None
    for step, i in enumerate(range(n - 1, -1, -1)):
        s_next = float(s[i])
        if not is_above_clean(s_next, c):
            x_out, denoised = x0, x0
        else:
            h = s_next - level
            v = reused if reused is not None else velocity(x, level)
            if solver == "euler":
                x = x + h * v
            else:
                v_mid = velocity(x + (h / 2) * v, level + h / 2)
                x = x + h * v_mid
                if solver == "fireflow":
                    reused = v_mid
            level, x_out, denoised = s_next, x, last["denoised"]
        latents[i] = x_out.detach().to("cpu")
        if callback is not None:
            callback(step, n, x_out, denoised)
    return Trajectory(s, torch.stack(latents), c)
