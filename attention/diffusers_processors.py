"""diffusers glue: MasaCtrl as attention processors on a UNet2DConditionModel or a pipeline.

    handle = attach_masactrl(pipe, MutualAttentionSchedule(start_step=4, start_layer=10))
    images = pipe([source_prompt, target_prompt], latents=latents).images
    handle.remove()

The step is read from the timestep each UNet call is given (a forward pre-hook) and located in the
scheduler's timesteps, so it does not depend on how often attention is called. The number of CFG chunks
in the UNet batch is never guessed: a pipeline's `do_classifier_free_guidance` where it answers, else the
`chunks` argument, else an error (custom loops such as the reference's MasaCtrlPipeline need `chunks=2`).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import torch

from .control import BatchLayout, MutualSelfAttentionControl
from .mask_guidance import MaskGuidance, masked_attention
from .schedule import PARTS, MutualAttentionSchedule, UNetLayerMap
from .subject_maps import CapturedMaps, record_maps, sites_at_level
from .subject_words import PromptSubject, PromptTokens, find_word, parse_words


def _transformer_blocks(unet):
    """(site, resolution level, BasicTransformerBlock) in MasaCtrl's order: down, mid, up."""
    deepest = len(unet.down_blocks) - 1
    parts = [("input", [(i, b) for i, b in enumerate(unet.down_blocks)]), ("middle", [(deepest, unet.mid_block)]),
             ("output", [(deepest - i, b) for i, b in enumerate(unet.up_blocks)])]
    found = []
    for block_name, blocks in parts:
        transformers = [(level, t) for level, b in blocks if b is not None for t in getattr(b, "attentions", None) or []]
        for block_id, (level, transformer) in enumerate(transformers):
            for index, block in enumerate(transformer.transformer_blocks):
                found.append(((block_name, block_id, index), level, block))
    return found


def _self_attention_modules(unet):
    """(site, Attention) for every self-attention in MasaCtrl's order: down, mid, up."""
    return [(site, block.attn1) for site, _, block in _transformer_blocks(unet)]


def mask_guidance(unet, threshold=0.1, subject=None, source_mask=None, target_mask=None, map_level=2,
                  map_parts=PARTS) -> MaskGuidance:
    """MaskGuidance for this UNet; automatic maps from the cross-attention layers at resolution level
    `map_level` (2: a quarter of the latent, the paper's 16x16 at 512 px) in `map_parts`."""
    layers = sites_at_level([(site, level) for site, level, _ in _transformer_blocks(unet)], map_level, map_parts)
    return MaskGuidance(threshold, subject, source_mask, target_mask, frozenset(layers))


def prompt_subject(tokenizer, prompt: str, words: str) -> PromptSubject:
    """Subject words of `prompt` with a transformers CLIPTokenizer (77-token context)."""
    def tokens(text):
        ids = tokenizer(text, padding="max_length", max_length=tokenizer.model_max_length, truncation=True).input_ids
        special = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}
        return PromptTokens.from_chunks([[(i,) for i in ids]], special,
                                        lambda t: tokenizer.convert_ids_to_tokens(t).endswith("</w>"))

    prompt_tokens = tokens(prompt)
    parsed = parse_words(words, "words")
    positions = tuple(find_word(prompt_tokens, tokens(w), w, prompt, "words") for w in parsed)
    return PromptSubject(parsed, positions, len(prompt_tokens))


def _step_boundaries(timesteps) -> torch.Tensor:
    """step_index reads a sigma-style schedule: one entry per step plus the end (ComfyUI's sigmas end
    in 0). A scheduler's timesteps have one entry per step only, so close the list with a value below
    the last; without it the final step is counted as the one before it."""
    t = torch.as_tensor(timesteps).detach().float().flatten().cpu()
    return torch.cat([t, t[-1:] - 1])


CHUNKS_FIX = ("Pass chunks= to attach_masactrl: 2 when the UNet batch is [uncond, cond] (classifier-free "
              "guidance), 1 without.")


def _has_cfg_property(pipe) -> bool:
    try:
        inspect.getattr_static(pipe, "do_classifier_free_guidance")
        return True
    except AttributeError:
        return False


def _pipeline_chunks(pipe):
    """(2 or 1 as the pipeline states it right now, None) or (None, why it does not). diffusers' pipelines answer
    through the `do_classifier_free_guidance` property, which reads `_guidance_scale`: only their own __call__
    sets it, so in custom sampling loops (the official MasaCtrlPipeline's among them) it raises AttributeError."""
    if not _has_cfg_property(pipe):
        return None, f"{type(pipe).__name__} has no do_classifier_free_guidance"
    try:
        return (2 if pipe.do_classifier_free_guidance else 1), None
    except AttributeError as error:
        return None, f"{type(pipe).__name__}.do_classifier_free_guidance raised AttributeError ({error})"


def _check_chunks(chunks):
    if chunks is not None and (isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 1):
        raise ValueError(f"attach_masactrl: chunks is {chunks!r}. {CHUNKS_FIX}")


def _call_chunks(pipe, chunks, batch) -> int:
    """The CFG chunks of this UNet call: the pipeline's statement, else the argument, else an error naming it."""
    n = chunks
    if pipe is not None:
        stated, why_not = _pipeline_chunks(pipe)
        if stated is None and chunks is None:
            raise ValueError(f"attach_masactrl cannot tell how many CFG chunks the UNet batch holds: {why_not}, as "
                             f"in a custom sampling loop. {CHUNKS_FIX}")
        if stated is not None and chunks is not None and stated != chunks:
            raise ValueError(f"attach_masactrl: chunks={chunks}, but the pipeline's do_classifier_free_guidance "
                             f"says {stated} chunk(s). Leave chunks out, or run the pipeline with matching guidance.")
        n = stated if stated is not None else chunks
    if batch % n:
        raise ValueError(f"attach_masactrl: the UNet batch of {batch} does not split into {n} CFG chunk(s). "
                         f"{CHUNKS_FIX}")
    return n


@dataclass
class _CallState:
    """What the current UNet call was told; written by the pre-hook, read by the processors."""
    timestep: float | None = None
    timesteps: torch.Tensor | None = None
    chunks: int = 2
    latent_size: tuple = (0, 0)
    maps: CapturedMaps | None = None  # this call's cond-branch subject maps (mask guidance)


def _size_at_level(size, level):
    h, w = size
    for _ in range(level):  # diffusers' Downsample2D (3x3, stride 2, padding 1) rounds up
        h, w = (h + 1) // 2, (w + 1) // 2
    return h, w


class MasaCtrlProcessor:
    """Runs mutual self-attention where the schedule is active, the original processor elsewhere."""

    def __init__(self, control: MutualSelfAttentionControl, state: _CallState, original, layer=None, level=None,
                 masks: MaskGuidance | None = None):
        self.control, self.state, self.original = control, state, original
        self.layer, self.level, self.masks = layer, level, masks

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
        state = self.state
        active = (state.timestep is not None and encoder_hidden_states is None
                  and self.control.step_is_active(state.timestep, state.timesteps))
        if not active:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, **kwargs)
        q, k, v = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        out = self._masked(q, k, v, attn.heads) if self.masks is not None else None
        if out is None:
            out = self.control.attend(q, k, v, attn.heads, state.chunks)
        return attn.to_out[1](attn.to_out[0](out)) / attn.rescale_output_factor

    def _masked(self, q, k, v, heads):
        size = _size_at_level(self.state.latent_size, self.level)
        return masked_attention(self.control, self.masks, q, k, v, heads, self.state.chunks, self.layer, size,
                           self.state.maps)


class MapCaptureProcessor:
    """Cross-attention at a capture layer: the original processor's output, and the cond branch's
    subject maps recorded on the side (the cond half is the last chunk of a diffusers CFG batch)."""

    def __init__(self, layer, level, layout: BatchLayout, masks: MaskGuidance, state: _CallState, original):
        self.layer, self.level, self.layout, self.masks, self.state = layer, level, layout, masks, state
        self.original = original

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
        out = self.original(attn, hidden_states, encoder_hidden_states, attention_mask, **kwargs)
        state = self.state
        if state.maps is not None and encoder_hidden_states is not None:
            batch = hidden_states.shape[0] // state.chunks
            cond = slice(hidden_states.shape[0] - batch, None)
            q, k = attn.to_q(hidden_states[cond]), attn.to_k(encoder_hidden_states[cond])
            selection = self.masks.token_selection(self.layout.source_of(batch), k.shape[1])
            size = _size_at_level(state.latent_size, self.level)
            record_maps(state.maps, self.layer, q, k, attn.heads, selection, size)
        return out


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
                    layout: BatchLayout = BatchLayout(), timesteps=None, chunks=None,
                    masks: MaskGuidance | None = None) -> MasaCtrlHandle:
    """Patch a diffusers pipeline (reads its scheduler's timesteps) or a bare UNet2DConditionModel (then pass
    `timesteps`, the schedule it will be called with).
    chunks: 2 when the UNet batch is [uncond, cond], 1 without classifier-free guidance. Needed for a bare
    UNet, and for a pipeline driven by a custom loop (its do_classifier_free_guidance is then unset); a
    pipeline's own __call__ states it, and a `chunks` that contradicts it is an error.
    masks: mask-guided MasaCtrl (see mask_guidance()); automatic masks are made from the cond branch's
    cross-attention maps of the same UNet call."""
    pipe = pipe_or_unet if hasattr(pipe_or_unet, "unet") else None
    unet = pipe.unet if pipe is not None else pipe_or_unet
    _check_chunks(chunks)
    if pipe is None and (timesteps is None or chunks is None):
        raise ValueError("attach_masactrl on a bare UNet needs timesteps= (the sampling schedule) and "
                         "chunks= (2 with classifier-free guidance, else 1).")
    if pipe is not None and chunks is None and not _has_cfg_property(pipe):
        raise ValueError(f"attach_masactrl: {type(pipe).__name__} has no do_classifier_free_guidance, so it cannot "
                         f"say whether it runs classifier-free guidance. {CHUNKS_FIX}")
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
        sample = kwargs.get("sample", args[0] if args else None)
        state.latent_size = tuple(sample.shape[-2:])
        state.maps = CapturedMaps() if masks is not None and masks.needs_maps else None  # per call, as the reference
        state.timesteps = _step_boundaries(pipe.scheduler.timesteps) if pipe is not None else bare_unet_steps
        state.chunks = _call_chunks(pipe, chunks, sample.shape[0])

    handle = MasaCtrlHandle(unet)
    handle.hook = unet.register_forward_pre_hook(before_unet, with_kwargs=True)
    active = set(control.active_sites)
    for layer, (site, level, block) in enumerate(_transformer_blocks(unet)):
        if site in active:
            handle.originals[block.attn1] = block.attn1.processor
            block.attn1.set_processor(MasaCtrlProcessor(control, state, block.attn1.processor, layer, level, masks))
        if masks is not None and masks.needs_maps and layer in masks.capture_layers:
            handle.originals[block.attn2] = block.attn2.processor
            block.attn2.set_processor(MapCaptureProcessor(layer, level, layout, masks, state, block.attn2.processor))
    return handle
