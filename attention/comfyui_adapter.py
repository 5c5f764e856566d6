"""Thin ComfyUI adapter: attn1 replace patches on a ModelPatcher clone. Imports nothing of ComfyUI;
the caller passes ComfyUI's own attention function for the steps MasaCtrl leaves alone, so those
are bit-identical to an unpatched run."""
from __future__ import annotations

import torch

from .control import MutualSelfAttentionControl
from .layers import UNetLayerMap
from .mutual import mutual_self_attention


class UnsupportedModelError(ValueError):
    pass


def layer_map_of(diffusion_model) -> UNetLayerMap:
    """Read the attention layout from a ComfyUI UNetModel (SD1.x, SD2.x, SDXL and their fine-tunes)."""
    blocks = [getattr(diffusion_model, name, None) for name in ("input_blocks", "middle_block", "output_blocks")]
    if any(b is None for b in blocks):
        raise UnsupportedModelError(
            f"MasaCtrl patches UNet models (SD1.x, SD2.x, SDXL); this MODEL's diffusion model is a "
            f"{type(diffusion_model).__name__}, which has no UNet self-attention layers. Load a UNet checkpoint.")
    input_blocks, middle_block, output_blocks = blocks

    def depth(block):
        return sum(len(m.transformer_blocks) for m in block.modules() if hasattr(m, "transformer_blocks"))

    inputs = {i: depth(b) for i, b in enumerate(input_blocks) if depth(b)}
    outputs = {i: depth(b) for i, b in enumerate(output_blocks) if depth(b)}
    layer_map = UNetLayerMap.from_depths(inputs, depth(middle_block), outputs)
    if not len(layer_map):
        raise UnsupportedModelError("MasaCtrl: this UNet has no transformer (self-attention) blocks to patch.")
    return layer_map


class MasaCtrlAttn1:
    """The attn1 replacement for one site: ComfyUI passes q/k/v after the projections."""

    def __init__(self, control: MutualSelfAttentionControl, fallback_attention):
        self.control = control
        self.fallback_attention = fallback_attention
        self._schedule = (None, None)  # (sample_sigmas, its CPU copy): copied once per run, not per layer

    def _schedule_on_cpu(self, sample_sigmas):
        if self._schedule[0] is not sample_sigmas:
            self._schedule = (sample_sigmas, sample_sigmas.detach().float().cpu())
        return self._schedule[1]

    def __call__(self, q, k, v, extra_options):
        heads = extra_options["n_heads"]
        chunks = len(extra_options["cond_or_uncond"])
        if "sample_sigmas" not in extra_options:
            raise RuntimeError("MasaCtrl: the sampler gave no sampling schedule (transformer_options"
                               "['sample_sigmas']); run the model through a ComfyUI sampler node.")
        # Checked in every step, not only active ones, so a bad batch fails at once.
        rows = self.control.source_rows(q.shape[0], chunks, q.device)
        sigma = float(extra_options["sigmas"].max())
        if self.control.step_is_active(sigma, self._schedule_on_cpu(extra_options["sample_sigmas"])):
            upcast = extra_options.get("attn_precision") == torch.float32
            return mutual_self_attention(q, k, v, heads, rows, upcast=upcast)
        return self.fallback_attention(q, k, v, heads, attn_precision=extra_options.get("attn_precision"),
                                       transformer_options=extra_options)


def patch_model(model_patcher, control: MutualSelfAttentionControl, fallback_attention):
    """Install MasaCtrl on `model_patcher` (a clone the caller owns) at the schedule's sites only."""
    attn1 = MasaCtrlAttn1(control, fallback_attention)
    for block_name, block_id, transformer_index in control.active_sites:
        model_patcher.set_model_attn1_replace(attn1, block_name, block_id, transformer_index)
    return model_patcher
