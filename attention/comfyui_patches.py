"""ComfyUI glue for MasaCtrl: attn1 replace patches on a ModelPatcher clone, and the model's attention
layout read from its UNet. Imports nothing of ComfyUI: the node passes ComfyUI's own attention function
for the steps MasaCtrl leaves alone, so those are bit-identical to an unpatched run."""
from __future__ import annotations

import torch

from .control import MutualSelfAttentionControl
from .equations import mutual_self_attention
from .mask_guidance import masked_attention
from .schedule import UNetLayerMap
from .subject_maps import sites_at_level

# transformer_options keys: the Masks (MasaCtrl) configuration, and the maps of the running evaluation.
MASKS_KEY, MAPS_KEY = "masactrl_masks", "masactrl_maps"
# ComfyUI's generic fallbacks (chosen when pytorch attention is off, e.g. on the CPU): torch's fused
# attention is faster and exact, so MasaCtrl layers use it instead. Every other kernel (pytorch, xformers,
# sage, flash) and any optimized_attention_override runs the MasaCtrl layers too.
SDPA_IS_FASTER = frozenset({"attention_basic", "attention_sub_quad", "attention_split"})


class CondMapsMissing(Exception):
    """An uncond-only UNet call reached a masked layer before the cond call of the same evaluation
    captured its maps; the evaluation wrapper then runs the cond branch first."""


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


def attention_levels(diffusion_model) -> dict:
    """site -> resolution level (0: the latent's size, 1: half, ...), read from where the UNet's
    Downsample/Upsample blocks sit, so it holds for any latent size and aspect ratio."""
    def has(block, name):
        return any(type(m).__name__ == name for m in block.modules())

    def sites(block_name, block_id, block):
        depth = sum(len(m.transformer_blocks) for m in block.modules() if hasattr(m, "transformer_blocks"))
        return [(block_name, block_id, t) for t in range(depth)]

    levels, level = {}, 0
    for i, block in enumerate(diffusion_model.input_blocks):
        level += has(block, "Downsample")
        levels.update({site: level for site in sites("input", i, block)})
    levels.update({site: level for site in sites("middle", 0, diffusion_model.middle_block)})
    for i, block in enumerate(diffusion_model.output_blocks):
        levels.update({site: level for site in sites("output", i, block)})
        level -= has(block, "Upsample")
    return levels


def capture_sites(diffusion_model, level: int, parts) -> dict:
    """layer -> site of the cross-attention layers at resolution `level` in `parts` (Masks (MasaCtrl)'s maps)."""
    levels = attention_levels(diffusion_model)
    return sites_at_level([(site, levels[site]) for site in layer_map_of(diffusion_model).sites], level, parts)


class MasaCtrlAttn1:
    """The attn1 replacement at MasaCtrl's sites: ComfyUI passes q/k/v after the projections.

    Where another pack had already replaced attn1 at a site (`previous`), that patch still runs for
    everything MasaCtrl leaves alone: the steps it skips, and in active steps the source rows, which
    attend to themselves."""

    def __init__(self, control: MutualSelfAttentionControl, fallback_attention, previous: dict | None = None):
        self.control = control
        self.fallback_attention = fallback_attention
        self.previous = dict(previous or {})  # site -> the attn1 replace this patch wraps there
        self._schedule = (None, None)  # (sample_sigmas, its CPU copy): copied once per run, not per layer
        self._step = (None, None, False)  # (sigmas, sample_sigmas, active): decided once per UNet call

    def _schedule_on_cpu(self, sample_sigmas):
        if self._schedule[0] is not sample_sigmas:
            self._schedule = (sample_sigmas, sample_sigmas.detach().float().cpu())
        return self._schedule[1]

    def _step_is_active(self, extra_options) -> bool:
        """The layers of one UNet call share its `sigmas` tensor: look the step up (a device sync on a GPU)
        once per call, not once per layer."""
        sigmas, sample_sigmas = extra_options["sigmas"], extra_options["sample_sigmas"]
        if self._step[0] is not sigmas or self._step[1] is not sample_sigmas:
            active = self.control.step_is_active(float(sigmas.max()), self._schedule_on_cpu(sample_sigmas))
            self._step = (sigmas, sample_sigmas, active)
        return self._step[2]

    def kernel(self, extra_options):
        """The attention function of the mutual passes: ComfyUI's own, as it would run this layer unpatched
        (its attn_precision and optimized_attention_override included), or None (torch's fused attention)
        where ComfyUI fell back to one of its generic kernels."""
        fallback = self.fallback_attention
        if ("optimized_attention_override" not in extra_options
                and getattr(fallback, "__name__", None) in SDPA_IS_FASTER):
            return None
        precision = extra_options.get("attn_precision")
        return lambda q, k, v, heads: fallback(q, k, v, heads, attn_precision=precision,
                                               transformer_options=extra_options)

    def __call__(self, q, k, v, extra_options):
        heads = extra_options["n_heads"]
        chunks = len(extra_options["cond_or_uncond"])
        if "sample_sigmas" not in extra_options:
            raise RuntimeError("MasaCtrl: the sampler gave no sampling schedule (transformer_options"
                               "['sample_sigmas']); run the model through a ComfyUI sampler node.")
        # Checked in every step, not only active ones, so a bad batch fails at once.
        rows = self.control.source_rows(q.shape[0], chunks, q.device)
        site = (extra_options["block"][0], extra_options["block"][1], extra_options["block_index"])
        previous = self.previous.get(site)
        if not self._step_is_active(extra_options):
            if previous is not None:
                return previous(q, k, v, extra_options)
            return self.fallback_attention(q, k, v, heads, attn_precision=extra_options.get("attn_precision"),
                                           transformer_options=extra_options)
        upcast = extra_options.get("attn_precision") == torch.float32
        kernel = self.kernel(extra_options)
        out = None
        guidance = extra_options.get(MASKS_KEY)
        if guidance is not None:
            out = self._masked(q, k, v, heads, chunks, guidance, site, upcast, kernel, extra_options)
        if out is None:
            group = self.control.layout.group_size(q.shape[0] // chunks)
            out = mutual_self_attention(q, k, v, heads, rows, upcast=upcast, group_size=group, attention=kernel)
        if previous is not None:
            own = rows == torch.arange(len(rows), device=rows.device)  # source rows: their own keys, as unpatched
            out = torch.where(own[:, None, None], previous(q, k, v, extra_options).to(out), out)
        return out

    def _masked(self, q, k, v, heads, chunks, guidance, site, upcast, kernel, extra_options):
        maps = extra_options.get(MAPS_KEY)
        layer = self.control.layer_map.index_of(site)
        if guidance.needs_maps:
            if maps is None:
                raise RuntimeError("Masks (MasaCtrl): no cross-attention maps were captured for this model call; "
                                   "sample the model with a ComfyUI sampler node (KSampler, SamplerCustom).")
            if 0 not in extra_options["cond_or_uncond"] and maps.missing(guidance.capture_layers, layer):
                raise CondMapsMissing()
        size = tuple(extra_options["activations_shape"][-2:])
        return masked_attention(self.control, guidance, q, k, v, heads, chunks, layer, size,
                                maps.maps if maps is not None else None, upcast, kernel)


def _attn1_replaces(model_patcher) -> dict:
    return model_patcher.model_options.get("transformer_options", {}).get("patches_replace", {}).get("attn1", {})


def patch_model(model_patcher, control: MutualSelfAttentionControl, fallback_attention):
    """Install MasaCtrl on `model_patcher` (a clone the caller owns) at the schedule's sites only, wrapping
    another pack's attn1 replace where one is installed (a MasaCtrl patch already there is replaced)."""
    replaced = _attn1_replaces(model_patcher)
    previous = {}
    for site in control.active_sites:
        found = replaced.get(site)
        if isinstance(found, MasaCtrlAttn1):
            found = found.previous.get(site)
        if found is not None:
            previous[site] = found
    attn1 = MasaCtrlAttn1(control, fallback_attention, previous)
    for block_name, block_id, transformer_index in control.active_sites:
        model_patcher.set_model_attn1_replace(attn1, block_name, block_id, transformer_index)
    return model_patcher


def installed_patches(model_patcher) -> dict:
    """site -> the MasaCtrl attn1 patch installed there."""
    return {site: patch for site, patch in _attn1_replaces(model_patcher).items() if isinstance(patch, MasaCtrlAttn1)}


def replace_control(model_patcher, control: MutualSelfAttentionControl | None):
    """A clone of a MasaCtrl-patched model whose MasaCtrl patches follow `control` instead (None: removed).
    Other packs' attn1 patches and Masks (MasaCtrl)'s settings stay as they are."""
    installed = installed_patches(model_patcher)
    fallback = next(iter(installed.values())).fallback_attention
    clone = model_patcher.clone()
    replaced = clone.model_options["transformer_options"]["patches_replace"]["attn1"]
    for site, patch in installed.items():
        if site in patch.previous:
            replaced[site] = patch.previous[site]  # another pack's patch, as it was before MasaCtrl
        else:
            del replaced[site]
    return clone if control is None else patch_model(clone, control, fallback)
