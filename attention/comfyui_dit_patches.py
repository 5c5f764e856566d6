"""ComfyUI glue for MasaCtrl on diffusion transformers (Flux.1, Chroma, SD3.x, Qwen-Image), on ComfyUI's own hooks
only: no model forward or block is copied, so the patch follows core updates of those models.

- `patches_replace["dit"][("double_block" | "single_block", i)]`: ComfyUI's Flux, Chroma, MMDiT (SD3) and
  Qwen-Image forwards hand each selected block its inputs and `original_block`. In an active step the patch runs
  the block (or the patch another pack installed there, which it wraps) with `optimized_attention_override` in
  the block's transformer_options: ComfyUI's attention functions pass every attention call of that block to it,
  and it swaps the targets' image keys and values (joint_attention.py) before calling the very kernel ComfyUI
  chose (or the override another pack set). Inactive steps run the block untouched.
- an APPLY_MODEL wrapper decides once per model call what every block of the call shares: whether the step is
  active, each row's source, the text length, the token grid and, for "beside", RoPE's rotation by one canvas
  width.
- With Masks (MasaCtrl) (its guidance under MASKS_KEY, the evaluation's maps under MAPS_KEY): the double-stream
  blocks record the subject words' maps from the cond rows' image-to-text attention, and active blocks run the
  masked form (joint_attention.masked_joint_attention). So every block is patched; a block with nothing to do
  runs as unpatched.
"""
from __future__ import annotations

from dataclasses import dataclass

import comfy.patcher_extension
import torch

from .comfyui_patches import MAPS_KEY, MASKS_KEY, CondMapsMissing, UnsupportedModelError
from .control import MutualSelfAttentionControl
from .joint_attention import JointAttentionSettings, masked_joint_attention, mutual_keys_values, token_spans
from .schedule import DiTLayerMap
from .subject_maps import record_maps

APPLY_MODEL = comfy.patcher_extension.WrappersMP.APPLY_MODEL
CALL_KEY = "masactrl_dit_call"  # transformer_options: the running model call's DiTCall
OVERRIDE = "optimized_attention_override"
SUPPORTED = "UNet models (SD1.x, SD2.x, SDXL) and the diffusion transformers Flux.1, Chroma, SD3.x and Qwen-Image"


def dit_layer_map_of(diffusion_model) -> DiTLayerMap:
    """The block layout of a Flux-family, SD3 or Qwen-Image diffusion model; any other model is refused, naming it.
    Each calls the dit block patches and hands its attention calls their transformer_options; Wan, HunyuanVideo
    and the rest do too, but run text through a separate cross-attention or other token layouts: not claimed."""
    import comfy.ldm.chroma.model
    import comfy.ldm.flux.model
    import comfy.ldm.modules.diffusionmodules.mmdit
    import comfy.ldm.qwen_image.model

    if isinstance(diffusion_model, comfy.ldm.chroma.model.Chroma):
        return DiTLayerMap.from_depths(len(diffusion_model.double_blocks), len(diffusion_model.single_blocks), "Chroma")
    if isinstance(diffusion_model, comfy.ldm.flux.model.Flux):
        return DiTLayerMap.from_depths(len(diffusion_model.double_blocks), len(diffusion_model.single_blocks), "Flux")
    if isinstance(diffusion_model, comfy.ldm.modules.diffusionmodules.mmdit.MMDiT):
        return DiTLayerMap.from_depths(len(diffusion_model.joint_blocks), 0, "SD3")
    if isinstance(diffusion_model, comfy.ldm.qwen_image.model.QwenImageTransformer2DModel):
        return DiTLayerMap.from_depths(len(diffusion_model.transformer_blocks), 0, "Qwen-Image")
    raise UnsupportedModelError(
        f"MasaCtrl patches {SUPPORTED}; this MODEL's diffusion model is a {type(diffusion_model).__name__}, which "
        "MasaCtrl does not patch yet. Load one of those models.")


def dit_capture_layers(layer_map: DiTLayerMap) -> frozenset:
    """Where Masks (MasaCtrl) records the subject maps on a diffusion transformer: the double-stream (joint)
    blocks, whose text tokens are still the prompt's own stream (in Flux's single-stream blocks text and image
    share one stream), all of them, so that every later block has the maps of the blocks before it."""
    return frozenset(i for i, site in enumerate(layer_map.sites) if site[0] == "double_block")


@dataclass
class DiTCall:
    """What every block of one model call shares."""
    active: bool
    source_rows: torch.Tensor
    text_tokens: int
    rotation: torch.Tensor | None  # R_delta for "beside" on RoPE models
    grid: tuple[int, int] = (0, 0)  # the image tokens' (rows, columns)
    cond_or_uncond: tuple = (0,)
    dit: MasaCtrlDiT | None = None  # the setting that made it (grid sampling re-derives the call per tile batch)


class MasaCtrlDiT:
    """One MasaCtrl setting on a diffusion transformer: the APPLY_MODEL wrapper and the block patches' state."""

    def __init__(self, control: MutualSelfAttentionControl, settings: JointAttentionSettings, diffusion_model):
        self.control, self.settings = control, settings
        self.patch_size = getattr(diffusion_model, "patch_size", 1)
        self.registers = getattr(diffusion_model, "register_length", 0)  # MMDiT's learned tokens before the text
        self.pe_embedder = getattr(diffusion_model, "pe_embedder", None)  # RoPE (Flux, Chroma, Qwen); SD3: none
        self._rotation = (None, None)  # (canvas width in tokens, its rotation)

    def rotation(self, width: int, device) -> torch.Tensor | None:
        if self.pe_embedder is None or self.settings.positions != "beside":
            return None
        if self._rotation[0] != (width, str(device)):
            delta = torch.tensor([[[0.0, 0.0, float(width)]]], device=device)  # (index, row, column) offsets
            self._rotation = ((width, str(device)), self.pe_embedder(delta))
        return self._rotation[1]

    def apply_model(self, executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None,
                    **kwargs):
        options = transformer_options if transformer_options is not None else {}
        if "sample_sigmas" not in options:
            raise RuntimeError("MasaCtrl: the sampler gave no sampling schedule (transformer_options"
                               "['sample_sigmas']); run the model through a ComfyUI sampler node.")
        active = self.control.step_is_active(float(t.max()), options["sample_sigmas"])
        text = (c_crossattn.shape[1] if c_crossattn is not None else 0) + self.registers
        call = self.call(x.shape[0], options["cond_or_uncond"], active, text, self.token_grid(x.shape[-2:]), x.device)
        return executor(x, t, c_concat, c_crossattn, control, {**options, CALL_KEY: call}, **kwargs)

    def token_grid(self, latent_size) -> tuple[int, int]:
        """The image tokens' (rows, columns) of a latent of `latent_size` (height, width), as the models round."""
        return tuple((side + self.patch_size // 2) // self.patch_size for side in latent_size)

    def call(self, rows: int, cond_or_uncond, active: bool, text: int, grid: tuple[int, int], device) -> DiTCall:
        """The DiTCall of a model call of `rows` rows in len(cond_or_uncond) chunks over a `grid` of image tokens."""
        sources = self.control.source_rows(rows, len(cond_or_uncond), device)  # a bad batch fails in every step
        return DiTCall(active, sources, text, self.rotation(grid[1], device) if active else None, grid,
                       tuple(cond_or_uncond), self)


def tiled_call_options(transformer_options: dict, rows: int, cond_or_uncond, latent_size) -> dict:
    """transformer_options for one call on a batch of tiles (Grid Sampling (MasaCtrl)): MasaCtrl's DiTCall, made
    for the whole batch, re-derived for `rows` = tiles x batch rows, `cond_or_uncond` repeated per tile, and the
    token grid of a tile of `latent_size`, so each (tile, cond/uncond) chunk reads its own source rows. Unchanged
    where MasaCtrl is not on the model, or sits inside the grid (it then sees the tiled call itself)."""
    call = transformer_options.get(CALL_KEY)
    if call is None or call.dit is None:
        return transformer_options
    tiled = call.dit.call(rows, cond_or_uncond, call.active, call.text_tokens, call.dit.token_grid(latent_size),
                          call.source_rows.device)
    return {**transformer_options, CALL_KEY: tiled}


class MasaCtrlDiTBlock:
    """The patch at one block (`layer` in MasaCtrl's numbering, `active` where the schedule acts); `previous` is
    the patch another pack had installed there."""

    def __init__(self, dit: MasaCtrlDiT, site, layer: int, active: bool, previous=None):
        self.dit, self.site, self.layer, self.active, self.previous = dit, site, layer, active, previous

    def __call__(self, args, extra):
        def run(block_args):
            return self.previous(block_args, extra) if self.previous else extra["original_block"](block_args)

        options = args["transformer_options"]
        call = options.get(CALL_KEY)
        if call is None:
            raise RuntimeError("MasaCtrl: this model call did not pass through MasaCtrl's model wrapper; sample "
                               "the patched MODEL with a ComfyUI sampler node.")
        guidance, maps = options.get(MASKS_KEY), options.get(MAPS_KEY)
        capture = (maps is not None and guidance is not None and self.layer in guidance.capture_layers
                   and 0 in call.cond_or_uncond)
        mutual = self.active and call.active
        if not (capture or mutual):
            return run(args)
        if "txt" in args:  # a double-stream block: its own text and image
            text, image = args["txt"].shape[1], args["img"].shape[1]
        else:  # a single-stream block: one sequence, the text first
            text, image = call.text_tokens, args["img"].shape[1] - call.text_tokens
        override = JointMutualAttention(self.dit, call, self.layer, text, image, mutual, capture, guidance, maps,
                                        options.get(OVERRIDE))
        return run({**args, "transformer_options": {**options, OVERRIDE: override}})


class JointMutualAttention:
    """optimized_attention_override for one block call: records the subject maps where asked, then K'/V'
    (joint_attention.py), masked where Masks (MasaCtrl) says so, on the kernel ComfyUI chose."""

    def __init__(self, dit: MasaCtrlDiT, call: DiTCall, layer: int, text: int, image: int, mutual: bool = True,
                 capture: bool = False, guidance=None, maps=None, previous=None):
        self.dit, self.call, self.layer, self.text, self.image = dit, call, layer, text, image
        self.mutual, self.capture, self.guidance, self.maps, self.previous = mutual, capture, guidance, maps, previous

    def __call__(self, func, q, k, v, *args, **kwargs):
        token_dim = 2 if kwargs.get("skip_reshape", False) else 1
        heads = args[0] if args else kwargs["heads"]
        image = token_spans(q.shape[token_dim], self.text, self.image)

        def kernel(q_, k_, v_, keys=None, rows=None):
            """The attention call on (q_, k_, v_); `keys`/`rows`: which keys and rows of the full call these are,
            so an attention mask the model passed is cut to match."""
            options = dict(kwargs)
            mask = options.get("mask")
            if mask is not None and keys is not None:
                mask = mask.index_select(-1, keys)
                options["mask"] = mask.index_select(0, rows) if mask.shape[0] == q.shape[0] > 1 else mask
            if self.previous is not None:
                return self.previous(func, q_, k_, v_, *args, **options)
            return func(q_, k_, v_, *args, **options)

        if self.capture and image.start > 0:  # not SD3.5's image-only attention
            self.record(q, k, heads, token_dim, image)
        if not self.mutual:
            return kernel(q, k, v)
        control = self.dit.control
        k2, v2 = mutual_keys_values(k, v, self.call.source_rows, image, self.dit.settings, self.call.rotation,
                                    token_dim, heads)
        masks = self.masks(q.shape[0]) if self.guidance is not None else None
        if masks is None:
            return kernel(q, k2, v2)
        source_fg, target_weight = masks
        if image.stop - image.start != source_fg.shape[1]:
            raise ValueError(f"Masks (MasaCtrl): this model call has {image.stop - image.start} image tokens but the "
                             f"latent makes {source_fg.shape[1]} (reference images, e.g. Flux Kontext, add their "
                             "own); masks cover a plain latent only: remove the reference latents or the masks.")
        out_dim = 2 if kwargs.get("skip_output_reshape", False) else 1
        return masked_joint_attention(kernel, q, k2, v2, self.call.source_rows, image, token_dim, out_dim,
                                      source_fg, target_weight, control.layout, len(self.call.cond_or_uncond))

    def record(self, q, k, heads, token_dim, image):
        """The cond rows' image-to-text attention of the subject's tokens (Masks (MasaCtrl)' maps)."""
        chunks = self.call.cond_or_uncond
        batch = q.shape[0] // len(chunks)
        rows = slice(chunks.index(0) * batch, (chunks.index(0) + 1) * batch)
        text = slice(0, image.start)

        def tokens_last(t, span):  # [B, tokens, heads*d], whatever layout the kernel got
            t = t[rows]
            t = t[:, :, span].transpose(1, 2) if token_dim == 2 else t[:, span]
            return t.reshape(t.shape[0], t.shape[1], -1)
        selection = self.maps.selection(self.guidance, batch, image.start, q.device)
        record_maps(self.maps.maps, self.layer, tokens_last(q, image), tokens_last(k, text), heads, selection,
                    self.call.grid)

    def masks(self, rows: int):
        """(source_fg, target_weight) per image of the batch for this block, or None (no map yet: plain)."""
        chunks = self.call.cond_or_uncond
        guidance, maps = self.guidance, self.maps
        if guidance.needs_maps and 0 not in chunks and maps.missing(guidance.capture_layers, self.layer):
            raise CondMapsMissing()  # uncond alone and first: the evaluation wrapper runs cond first
        owner = self.dit.control.layout.source_of(rows // len(chunks))
        return guidance.masks_for_layer(self.layer, owner, *self.call.grid, maps.maps if maps is not None else None)


def _dit_replaces(model_patcher) -> dict:
    return model_patcher.model_options.get("transformer_options", {}).get("patches_replace", {}).get("dit", {})


def patch_dit_model(model_patcher, control: MutualSelfAttentionControl, settings: JointAttentionSettings):
    """Install MasaCtrl on `model_patcher` (a clone the caller owns) at every block, acting at the schedule's,
    wrapping another pack's block patch where one is installed (a MasaCtrl patch already there is replaced)."""
    remove_dit_patches(model_patcher)
    dit = MasaCtrlDiT(control, settings, model_patcher.get_model_object("diffusion_model"))
    replaced, active = _dit_replaces(model_patcher), set(control.active_sites)
    for layer, site in enumerate(control.layer_map.sites):  # every block: Masks (MasaCtrl) may record maps there
        patch = MasaCtrlDiTBlock(dit, site, layer, site in active, replaced.get(site))
        model_patcher.set_model_patch_replace(patch, "dit", *site)
    model_patcher.remove_wrappers_with_key(APPLY_MODEL, CALL_KEY)
    model_patcher.add_wrapper_with_key(APPLY_MODEL, CALL_KEY, dit.apply_model)
    return model_patcher


def remove_dit_patches(model_patcher):
    """Take MasaCtrl off `model_patcher` (a clone the caller owns): each block gets back the patch MasaCtrl
    wrapped there, if any. Other packs' patches and wrappers stay."""
    replaced = _dit_replaces(model_patcher)
    for site, patch in installed_dit_patches(model_patcher).items():
        if patch.previous is not None:
            replaced[site] = patch.previous
        else:
            del replaced[site]
    model_patcher.remove_wrappers_with_key(APPLY_MODEL, CALL_KEY)
    return model_patcher


def installed_dit_patches(model_patcher) -> dict:
    """site -> the MasaCtrl block patch installed there (`.active` where its schedule acts)."""
    return {site: patch for site, patch in _dit_replaces(model_patcher).items() if isinstance(patch, MasaCtrlDiTBlock)}


def replace_dit_control(model_patcher, control: MutualSelfAttentionControl | None):
    """A clone of a MasaCtrl-patched diffusion transformer whose MasaCtrl follows `control` instead (None:
    removed), with the same joint-attention settings; other packs' patches stay."""
    settings = next(iter(installed_dit_patches(model_patcher).values())).dit.settings
    clone = remove_dit_patches(model_patcher.clone())
    return clone if control is None else patch_dit_model(clone, control, settings)
