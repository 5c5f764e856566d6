"""Checks that only a sampling run can make, installed as outer_sample wrappers by the node whose inputs they
concern. A wrapper runs when a sampler starts, before ComfyUI loads the model for the run, and raises
InputError naming that node's input and the fix, so the error reaches /history like any other.

- MasaCtrl: its schedule must act on at least one step of this run (start_step past the run's last step, or
  a percent window between two steps, would silently sample without MasaCtrl); every image must have its own
  prompt row (ComfyUI repeats 2 prompt rows over a batch of 3, so image 2 would get the source prompt, and
  Subject Prompts' word positions would be the wrong prompt's); the batch must fit source_indices.
- Masks (MasaCtrl): the output of the latest run is kept, so that Mask Preview can tell whether the maps it
  would show belong to the samples it is given.
"""
from __future__ import annotations

import comfy.patcher_extension
import torch

from ..attention.comfyui_dit_patches import MasaCtrlDiTBlock
from ..attention.comfyui_patches import MasaCtrlAttn1
from .input_checks import InputError

OUTER_SAMPLE = comfy.patcher_extension.WrappersMP.OUTER_SAMPLE
MASACTRL_RUN_KEY = "masactrl_run_check"
LATEST_RUN_KEY = "masactrl_latest_run"


def _controls(model_options: dict) -> list:
    """The MasaCtrl settings patched into these model options (two chained MasaCtrl nodes: two)."""
    replaced = model_options.get("transformer_options", {}).get("patches_replace", {})
    controls = {}
    for patch in replaced.get("attn1", {}).values():
        if isinstance(patch, MasaCtrlAttn1):
            controls[id(patch.control)] = patch.control
    for patch in replaced.get("dit", {}).values():
        if isinstance(patch, MasaCtrlDiTBlock):
            controls[id(patch.dit.control)] = patch.dit.control
    return list(controls.values())


def schedule_problem(schedule, sigmas: torch.Tensor) -> str | None:
    """Why the schedule acts on no step of a run over `sigmas`, or None when it acts on some."""
    schedule_sigmas = sigmas.detach().float().cpu()
    steps = len(schedule_sigmas) - 1
    if steps < 1 or any(schedule.step_is_active(i, float(schedule_sigmas[i])) for i in range(steps)):
        return None
    if schedule.sigma_range is None:
        return (f"start_step {schedule.start_step} is past the last step of this {steps}-step run (steps 0 to "
                f"{steps - 1}), so MasaCtrl would act on no step; use a start_step below {steps}, or sample with "
                "more steps.")
    high, low = schedule.sigma_range
    return (f"start_percent..end_percent (sigmas {high:.4g} to {low:.4g}) holds none of this run's {steps} steps "
            f"(sigmas {', '.join(f'{float(s):.4g}' for s in schedule_sigmas[:-1])}), so MasaCtrl would act on no "
            "step; widen the range between start_percent and end_percent.")


def prompts_problem(conds: dict, batch: int) -> str | None:
    """A conditioning whose prompt rows ComfyUI would repeat or cut to fit the batch."""
    for side in ("positive", "negative"):
        for cond in conds.get(side) or []:
            rows = cond["cross_attn"].shape[0] if isinstance(cond.get("cross_attn"), torch.Tensor) else 1
            if rows not in (1, batch):
                fate = (f"image {rows} would get prompt 0 (the source's) again" if rows < batch
                        else f"prompt {batch} on would be dropped")
                return (f"the {side} conditioning has {rows} prompts but the latent batch has {batch} images: ComfyUI "
                        f"would repeat or cut the prompts to fit, so {fate}; set the latent batch_size to {rows}, or "
                        "give one prompt per image (chain Batch Conditioning, one Subject Prompts per pair).")
    return None


def check_masactrl_run(executor, noise, latent_image, sampler, sigmas, *args, **kwargs):
    """outer_sample wrapper of the MasaCtrl node: refuse a run MasaCtrl cannot act on as set."""
    guider = executor.class_obj
    for control in _controls(guider.model_options):
        control.layout.source_of(noise.shape[0])  # BatchLayoutError names source_indices and the batch size
        problem = schedule_problem(control.schedule, sigmas) or prompts_problem(guider.conds, noise.shape[0])
        if problem:
            raise InputError(f"MasaCtrl: {problem}")
    return executor(noise, latent_image, sampler, sigmas, *args, **kwargs)


def install_masactrl_run_check(model_patcher):
    model_patcher.remove_wrappers_with_key(OUTER_SAMPLE, MASACTRL_RUN_KEY)
    model_patcher.add_wrapper_with_key(OUTER_SAMPLE, MASACTRL_RUN_KEY, check_masactrl_run)
    return model_patcher


class LatestRun:
    """outer_sample wrapper keeping the output latent of the latest run of a model and its clones (which
    share it, as they share Masks (MasaCtrl)'s map recorder)."""

    def __init__(self):
        self.output: torch.Tensor | None = None

    def __call__(self, executor, *args, **kwargs):
        self.output = None  # a failed run leaves no output to match
        out = executor(*args, **kwargs)
        self.output = out.detach().to("cpu", torch.float32, copy=True)
        return out

    def produced(self, samples: torch.Tensor) -> bool:
        samples = samples.detach().to("cpu", torch.float32)
        return self.output is not None and self.output.shape == samples.shape and torch.equal(self.output, samples)


def install_latest_run(model_patcher):
    latest = LatestRun()
    model_patcher.remove_wrappers_with_key(OUTER_SAMPLE, LATEST_RUN_KEY)
    model_patcher.add_wrapper_with_key(OUTER_SAMPLE, LATEST_RUN_KEY, latest)
    model_patcher.set_attachments(LATEST_RUN_KEY, latest)
    return model_patcher


def latest_run_of(model_patcher) -> LatestRun | None:
    return model_patcher.get_attachment(LATEST_RUN_KEY)
