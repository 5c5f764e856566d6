"""Thin diffusers adapter: MasaCtrl as attention processors on a UNet2DConditionModel or a pipeline.

    handle = attach_masactrl(pipe, MutualAttentionSchedule(start_step=4, start_layer=10))
    images = pipe([source_prompt, target_prompt], latents=latents).images
    handle.remove()

The step is read from the timestep each UNet call is given (a forward pre-hook) and located in the
scheduler's timesteps, so it does not depend on how often attention is called.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .control import MutualSelfAttentionControl
from .layers import UNetLayerMap
from .mutual import BatchLayout
from .schedule import MutualAttentionSchedule


def _self_attention_modules(unet):
    """(site, Attention) for every self-attention in MasaCtrl's order: down, mid, up."""
    parts = [("input", unet.down_blocks), ("middle", [unet.mid_block]), ("output", unet.up_blocks)]
    found = []
    for block_name, blocks in parts:
        transformers = [t for b in blocks if b is not None for t in getattr(b, "attentions", None) or []]
        for block_id, transformer in enumerate(transformers):
            for index, block in enumerate(transformer.transformer_blocks):
                found.append(((block_name, block_id, index), block.attn1))
    return found


def _step_boundaries(timesteps) -> torch.Tensor:
    """step_index reads a sigma-style schedule: one entry per step plus the end (ComfyUI's sigmas end
    in 0). A scheduler's timesteps have one entry per step only, so close the list with a value below
    the last; without it the final step is counted as the one before it."""
    t = torch.as_tensor(timesteps).detach().float().flatten().cpu()
    return torch.cat([t, t[-1:] - 1])


@dataclass
class _CallState:
    """What the current UNet call was told; written by the pre-hook, read by the processors."""
    timestep: float | None = None
    timesteps: torch.Tensor | None = None
    chunks: int = 2


class MasaCtrlProcessor:
    """Runs mutual self-attention where the schedule is active, the original processor elsewhere."""

    def __init__(self, control: MutualSelfAttentionControl, state: _CallState, original):
        self.control, self.state, self.original = control, state, original

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
        state = self.state
        active = (state.timestep is not None and encoder_hidden_states is None
                  and self.control.step_is_active(state.timestep, state.timesteps))
        if not active:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, **kwargs)
        q, k, v = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        out = self.control.attend(q, k, v, attn.heads, state.chunks)
        return attn.to_out[1](attn.to_out[0](out)) / attn.rescale_output_factor


@dataclass
class MasaCtrlHandle:
    unet: torch.nn.Module
    originals: dict = field(default_factory=dict)
    hook: object = None

    def remove(self):
        """Restore the original processors; the UNet is then exactly as before."""
        for attn, processor in self.originals.items():
            attn.set_processor(processor)
        self.originals.clear()
        if self.hook is not None:
            self.hook.remove()
            self.hook = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def attach_masactrl(pipe_or_unet, schedule: MutualAttentionSchedule = MutualAttentionSchedule(),
                    layout: BatchLayout = BatchLayout(), timesteps=None, chunks=None) -> MasaCtrlHandle:
    """Patch a diffusers pipeline (reads its scheduler's timesteps and whether it runs CFG) or a bare
    UNet2DConditionModel (then pass `timesteps`, the schedule it will be called with, and `chunks`:
    2 when the batch is [uncond, cond], 1 without classifier-free guidance)."""
    pipe = pipe_or_unet if hasattr(pipe_or_unet, "unet") else None
    unet = pipe.unet if pipe is not None else pipe_or_unet
    if pipe is None and (timesteps is None or chunks is None):
        raise ValueError("attach_masactrl on a bare UNet needs timesteps= (the sampling schedule) and "
                         "chunks= (2 with classifier-free guidance, else 1).")
    if schedule.sigma_range is not None:
        raise ValueError("attach_masactrl locates steps by timestep; a sigma_range (ComfyUI's percents) would "
                         "be compared with timesteps. Use start_step/end_step instead.")
    modules = _self_attention_modules(unet)
    control = MutualSelfAttentionControl(schedule, layout, UNetLayerMap(tuple(site for site, _ in modules)))
    state = _CallState()
    bare_unet_steps = None if pipe is not None else _step_boundaries(timesteps)

    def before_unet(module, args, kwargs):
        t = kwargs.get("timestep", args[1] if len(args) > 1 else None)
        state.timestep = float(torch.as_tensor(t).flatten()[0])
        if pipe is not None:
            state.timesteps = _step_boundaries(pipe.scheduler.timesteps)
            state.chunks = 2 if getattr(pipe, "do_classifier_free_guidance", False) else 1
        else:
            state.timesteps, state.chunks = bare_unet_steps, chunks

    handle = MasaCtrlHandle(unet)
    handle.hook = unet.register_forward_pre_hook(before_unet, with_kwargs=True)
    active = set(control.active_sites)
    for site, attn in modules:
        if site in active:
            handle.originals[attn] = attn.processor
            attn.set_processor(MasaCtrlProcessor(control, state, attn.processor))
    return handle
