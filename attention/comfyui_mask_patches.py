"""ComfyUI glue for mask-guided MasaCtrl (imports nothing of ComfyUI; the node passes its functions).

Three pieces, all on a ModelPatcher clone:
- attn2 replace patches at the capture layers record the cond branch's subject maps (UNets; on a diffusion
  transformer MasaCtrl's own block patches record them in the capture blocks, comfyui_dit_patches.py);
- a calc_cond_batch wrapper gives every denoising evaluation fresh maps (the reference clears them
  after each step) and makes sure the cond branch runs before the uncond branch reads them;
- the MasaCtrl attn1 patch (comfyui_patches.MasaCtrlAttn1) finds the configuration under MASKS_KEY
  in transformer_options, so the MasaCtrl and Masks (MasaCtrl) nodes work in either order.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .comfyui_dit_patches import MasaCtrlDiTBlock
from .comfyui_patches import MAPS_KEY, MASKS_KEY, CondMapsMissing, MasaCtrlAttn1
from .control import BatchLayout
from .mask_guidance import MaskGuidance
from .schedule import step_index
from .subject_maps import CapturedMaps, MapRecorder, record_maps

WRAPPER_KEY = "masactrl_masks"
RECORDER_KEY = "masactrl_mask_maps"


@dataclass
class EvaluationMaps:
    """What one denoising evaluation captured, handed to the patches through transformer_options."""
    layout: BatchLayout
    maps: CapturedMaps = field(default_factory=CapturedMaps)
    _selections: dict = field(default_factory=dict)

    def missing(self, capture_layers, layer: int) -> bool:
        return any(i < layer and i not in self.maps.layers for i in capture_layers)

    def selection(self, guidance: MaskGuidance, batch: int, context_length: int, device):
        key = (batch, context_length, str(device))
        if key not in self._selections:
            owner = self.layout.source_of(batch)
            self._selections[key] = guidance.token_selection(owner, context_length).to(device)
        return self._selections[key]


class CrossAttentionCapture:
    """attn2 replacement at one capture layer: the output is ComfyUI's own (or the patch it replaced),
    and the cond branch's subject-token probabilities are recorded on the side."""

    def __init__(self, layer: int, fallback_attention, replaced=None):
        self.layer, self.fallback_attention, self.replaced = layer, fallback_attention, replaced

    def __call__(self, q, k, v, extra_options):
        if self.replaced is not None:
            out = self.replaced(q, k, v, extra_options)
        else:
            out = self.fallback_attention(q, k, v, extra_options["n_heads"],
                                          attn_precision=extra_options.get("attn_precision"),
                                          transformer_options=extra_options)
        state, guidance = extra_options.get(MAPS_KEY), extra_options.get(MASKS_KEY)
        chunks = extra_options["cond_or_uncond"]
        if state is not None and guidance is not None and 0 in chunks:
            batch = q.shape[0] // len(chunks)
            rows = slice(chunks.index(0) * batch, (chunks.index(0) + 1) * batch)
            selection = state.selection(guidance, batch, k.shape[1], q.device)
            record_maps(state.maps, self.layer, q[rows], k[rows], extra_options["n_heads"], selection,
                        tuple(extra_options["activations_shape"][-2:]))
        return out


def masactrl_layout(transformer_options) -> BatchLayout:
    replaced = transformer_options.get("patches_replace", {})
    layouts = {p.control.layout for p in replaced.get("attn1", {}).values() if isinstance(p, MasaCtrlAttn1)}
    layouts |= {p.dit.control.layout for p in replaced.get("dit", {}).values() if isinstance(p, MasaCtrlDiTBlock)}
    if not layouts:
        raise ValueError("Masks (MasaCtrl) only guides MasaCtrl: add a MasaCtrl node to this model (before or "
                         "after this one).")
    return sorted(layouts, key=lambda layout: layout.sources)[0]


class MaskedEvaluation:
    """calc_cond_batch wrapper: fresh maps per evaluation, cond before uncond, recording for preview."""

    def __init__(self, recorder: MapRecorder):
        self.recorder = recorder
        self._cond_first_run = None  # the sample_sigmas of a run known to split cond and uncond

    def __call__(self, executor, model, conds, x_in, timestep, model_options):
        options = model_options.get("transformer_options", {})
        guidance = options.get(MASKS_KEY)
        if guidance is None:
            return executor(model, conds, x_in, timestep, model_options)
        layout = masactrl_layout(options)
        if not guidance.needs_maps:
            return executor(model, conds, x_in, timestep, model_options)
        sample_sigmas = options.get("sample_sigmas")
        state = EvaluationMaps(layout)
        run = {**model_options, "transformer_options": {**options, MAPS_KEY: state}}
        try:
            if self._cond_first_run is not None and self._cond_first_run is sample_sigmas:
                raise CondMapsMissing()
            out = executor(model, conds, x_in, timestep, run)
        except CondMapsMissing:
            # ComfyUI ran uncond alone and first (it splits when memory is short): rerun this
            # evaluation as cond, then everything else, with the same fresh maps.
            self._cond_first_run = sample_sigmas
            state = EvaluationMaps(layout)
            run["transformer_options"] = {**options, MAPS_KEY: state}
            first = executor(model, [c if i == 0 else None for i, c in enumerate(conds)], x_in, timestep, run)
            rest = executor(model, [None if i == 0 else c for i, c in enumerate(conds)], x_in, timestep, run)
            out = [first[0]] + list(rest[1:])
        if sample_sigmas is not None:
            step = step_index(float(timestep.max()), sample_sigmas)
            self.recorder.record(step, state.maps, guidance.words_of(layout.source_of(x_in.shape[0])))
        return out

    def start_run(self, executor, *args, **kwargs):
        """outer_sample wrapper: the recording always belongs to the latest run."""
        self.recorder.reset()
        self._cond_first_run = None
        return executor(*args, **kwargs)


def patch_masks(model_patcher, guidance: MaskGuidance, capture_sites: dict, fallback_attention,
                calc_cond_batch: str, outer_sample: str):
    """Install mask guidance on `model_patcher` (a clone the caller owns). capture_sites: layer -> site.
    calc_cond_batch/outer_sample: ComfyUI's wrapper type names."""
    replaced = model_patcher.model_options.get("transformer_options", {}).get("patches_replace", {}).get("attn2", {})
    for layer, (block_name, block_id, index) in capture_sites.items():
        previous = replaced.get((block_name, block_id, index))
        if isinstance(previous, CrossAttentionCapture):
            previous = previous.replaced
        model_patcher.set_model_attn2_replace(CrossAttentionCapture(layer, fallback_attention, previous),
                                              block_name, block_id, index)
    model_patcher.model_options.setdefault("transformer_options", {})[MASKS_KEY] = guidance
    recorder = MapRecorder()
    evaluation = MaskedEvaluation(recorder)
    for kind, fn in ((calc_cond_batch, evaluation), (outer_sample, evaluation.start_run)):
        model_patcher.remove_wrappers_with_key(kind, WRAPPER_KEY)
        model_patcher.add_wrapper_with_key(kind, WRAPPER_KEY, fn)
    model_patcher.set_attachments(RECORDER_KEY, recorder)
    return model_patcher
