"""RePaint (Lugmayr et al., CVPR 2022), pure torch, written from the paper.

Inpainting by conditioning an unconditional reverse process: after every reverse step to noise level t-1,
the known region is replaced by the original noised to level t-1 (Algorithm 1). Because that replacement
ignores what the model made of the unknown region, the two disagree at the seam; resampling fixes it:
the result is diffused forward again and the reverse steps are repeated, so the generated region gets
several chances to harmonise with the known one. Section 4.2 makes the forward moves jumps of j steps:
every j-step stretch of the schedule is traversed r times.

Positions index the sampler's sigma schedule: position 0 is sigmas[0] (the noisiest), position N =
len(sigmas) - 1 is the end. The paper's time t is N - position.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


class RePaintScheduleError(ValueError):
    pass


def jump_schedule(steps: int, jump_length: int, resamplings: int) -> list[int]:
    """The positions RePaint visits, from 0 to `steps`. Going down one position is one reverse step (one
    denoising evaluation); going up is a forward jump. With times t = steps - position: at each
    t = 0, j, 2j, ... (t + j <= steps), after arriving there, jump back up to t + j and come down again,
    resamplings - 1 times; so every complete j-step stretch is denoised `resamplings` times, and a
    stretch above the highest multiple of j once. resamplings = 1 is RePaint without resampling."""
    if steps < 1:
        raise RePaintScheduleError(f"RePaint needs at least one step, got {steps}.")
    if resamplings < 1:
        raise RePaintScheduleError(f"resamplings is {resamplings}; use 1 (no resampling) or more.")
    if jump_length < 1 or (resamplings > 1 and jump_length > steps):
        raise RePaintScheduleError(
            f"jump_length {jump_length} does not fit a schedule of {steps} steps: use a jump_length from 1 to "
            f"{steps}, or more steps.")
    jumps_left = {t: resamplings - 1 for t in range(0, steps - jump_length + 1, jump_length)}
    t, visits = steps, [0]
    while True:
        if jumps_left.get(t, 0) > 0:
            jumps_left[t] -= 1
            t += jump_length
        elif t == 0:
            return visits
        else:
            t -= 1
        visits.append(steps - t)


def denoising_steps(steps: int, jump_length: int, resamplings: int) -> int:
    """How many reverse steps (model evaluations of a one-evaluation sampler) the schedule makes."""
    visits = jump_schedule(steps, jump_length, resamplings)
    return sum(b > a for a, b in zip(visits, visits[1:]))


@dataclass(frozen=True)
class NoiseLevels:
    """How a clean latent x0 is noised at each position: x = scale * x0 + std * eps. ComfyUI's epsilon/v
    models: scale 1, std sigma. Flow models (Flux, SD3: the rectified-flow interpolation between x0 and
    noise): scale 1 - sigma, std sigma, so sigma = 1 is pure noise (scale 0)."""
    scale: torch.Tensor  # [N + 1]
    std: torch.Tensor  # [N + 1]

    def noised(self, x0: torch.Tensor, position: int, noise: torch.Tensor) -> torch.Tensor:
        return self.scale[position] * x0 + self.std[position] * noise

    def forward(self, x: torch.Tensor, src: int, dst: int, noise: torch.Tensor) -> torch.Tensor:
        """A sample of q(x_dst | x_src) for dst noisier than src: the forward process over a jump,
        x_dst = (a_dst / a_src) x_src + sqrt(s_dst^2 - (a_dst / a_src)^2 s_src^2) eps with a = scale, s = std.
        It is the Gaussian that turns the marginal N(a_src x0, s_src^2) into N(a_dst x0, s_dst^2). Epsilon
        models: x_dst = x_src + sqrt(sigma_dst^2 - sigma_src^2) eps. Flow models (a = 1 - sigma):
        x_dst = (1 - sigma_dst) / (1 - sigma_src) x_src + sqrt(sigma_dst^2 - ((1 - sigma_dst) / (1 - sigma_src))^2
        sigma_src^2) eps; at sigma_dst = 1 that is pure noise, whatever x_src. Where x_src is pure noise
        already (a_src = 0, so a_dst = 0 too: a schedule that starts with sigma 1 twice), it only rescales:
        x_dst = (s_dst / s_src) x_src."""
        if float(self.scale[src]) == 0:  # no signal left to carry: the ratio of the scales is 0 / 0
            return self.std[dst] / self.std[src] * x
        ratio = self.scale[dst] / self.scale[src]
        variance = (self.std[dst] ** 2 - (ratio * self.std[src]) ** 2).clamp(min=0)
        return ratio * x + variance.sqrt() * noise


def paste(x: torch.Tensor, known: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """x where keep is 0, known where it is 1 (both exactly), a blend in between."""
    return x * (1 - keep) + known * keep


def repaint(reverse_step: Callable[[torch.Tensor, int], torch.Tensor], x: torch.Tensor, x0: torch.Tensor,
            keep: torch.Tensor, levels: NoiseLevels, visits: list[int], noise: Callable[[], torch.Tensor],
            on_step: Callable[[int, int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Run RePaint along `visits` (jump_schedule). reverse_step(x, p) takes x from position p to p + 1;
    `keep` (1 = known, from x0; fractions blend) is re-imposed after each reverse step with fresh noise
    from `noise()`; on_step(done, total, x) reports progress after every reverse step."""
    total = sum(b > a for a, b in zip(visits, visits[1:]))
    done = 0
    x = paste(x, levels.noised(x0, visits[0], noise()), keep)  # the known region starts noised as well
    for here, there in zip(visits, visits[1:]):
        if there > here:
            x = paste(reverse_step(x, here), levels.noised(x0, there, noise()), keep)
            done += 1
            if on_step is not None:
                on_step(done, total, x)
        else:
            x = levels.forward(x, here, there, noise())
    return x
