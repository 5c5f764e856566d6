"""Mask-guided MasaCtrl: subject words, the Masks (MasaCtrl) patch, and the mask preview."""
from __future__ import annotations

import comfy.ldm.modules.attention as comfy_attention
import comfy.patcher_extension
from comfy_api.v0_0_2 import io, ui

from ..attention.comfyui_conditioning import batch_conditioning, prompt_subject
from ..attention.comfyui_dit_patches import dit_capture_layers, dit_layer_map_of
from ..attention.comfyui_mask_patches import RECORDER_KEY, patch_masks
from ..attention.comfyui_patches import MASKS_KEY, capture_sites
from ..attention.mask_guidance import MaskGuidance
from ..attention.subject_maps import preview
from ..attention.subject_words import Subject, SubjectWordError, parse_words
from .input_checks import custom_type, report, require, rule
from .run_checks import install_latest_run, latest_run_of

Subject_ = custom_type("MASACTRL_SUBJECT", Subject, "connect the subject output of Subject Prompts (MasaCtrl)")
MASKS, PREVIEW = "Masks (MasaCtrl)", "Mask Preview (MasaCtrl)"
MAP_RESOLUTIONS = {"1/4 (paper)": 2, "1/2": 1, "1/1": 0, "1/8": 3}
MAP_LAYERS = {"all": ("encoder", "middle", "decoder"), "encoder": ("encoder",), "decoder": ("decoder",)}


@rule("source_words")
def source_words_given(source_words):
    try:
        parse_words(source_words, "source_words")
    except SubjectWordError as error:
        return str(error)


def _word_missing(words_name: str, words: str, prompt_name: str, prompt: str) -> str | None:
    """A subject word with a part that is not text of the prompt (lower case, as the tokenizer reads it). Checked
    before the text encoder loads; which tokens match is decided when the node runs, with the tokenizer."""
    try:
        wanted = parse_words(words, words_name)
    except SubjectWordError:
        return None  # no words: source_words_given says so
    for word in wanted:
        if any(part not in prompt.lower() for part in word.lower().split()):
            return (f"{words_name}: the word '{word}' is not in the prompt \"{prompt}\" ({prompt_name}); use a word "
                    "that appears in that prompt (spelling as in the prompt), or write it into the prompt.")
    return None


@rule("source_words", "source_prompt")
def source_words_in_prompt(source_words, source_prompt):
    return _word_missing("source_words", source_words, "source_prompt", source_prompt)


@rule("source_words", "target_words", "target_prompt")
def target_words_in_prompt(source_words, target_words, target_prompt):
    if target_words.strip(", "):
        return _word_missing("target_words", target_words, "target_prompt", target_prompt)
    return _word_missing("source_words (used for the target)", source_words, "target_prompt", target_prompt)


class SubjectPrompts(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MasaCtrlSubjectPrompts",
            display_name="Subject Prompts (MasaCtrl)",
            category="MasaCtrl",
            description="Encode the source and target prompts as one batch (source first) and find the subject's "
                        "words in them, for automatic masks (Masks (MasaCtrl)).",
            inputs=[
                io.Clip.Input("clip", tooltip="The checkpoint's text encoder (Load Checkpoint's CLIP): encodes both "
                                              "prompts and tokenizes them to find the subject words."),
                io.String.Input("source_prompt", multiline=True, default="a photo of a corgi",
                                tooltip="The prompt of the source image (batch image 0): the subject as it should "
                                        "look."),
                io.String.Input("target_prompt", multiline=True, default="a photo of a corgi jumping",
                                tooltip="The prompt of the target image (batch image 1): the same subject doing or "
                                        "showing something else."),
                io.String.Input("source_words", default="corgi",
                                tooltip="The subject in the source prompt: words or phrases of it, separated by commas."),
                io.String.Input("target_words", default="",
                                tooltip="The subject in the target prompt; empty: the same words as source_words."),
            ],
            outputs=[io.Conditioning.Output(display_name="conditioning",
                                            tooltip="Both prompts encoded as one batch, source first: the sampler's "
                                                    "positive. Use a latent batch of 2."),
                     Subject_.Output(display_name="subject",
                                     tooltip="Where the subject words sit in each prompt's tokens: for Masks "
                                             "(MasaCtrl)'s subject input.")],
        )

    RULES = (source_words_given, source_words_in_prompt, target_words_in_prompt)

    @classmethod
    def validate_inputs(cls, source_prompt=None, target_prompt=None, source_words=None, target_words=None):
        return report(cls, locals())

    @classmethod
    def execute(cls, clip, source_prompt, target_prompt, source_words, target_words) -> io.NodeOutput:
        if clip is None:
            raise RuntimeError("Subject Prompts: the clip input is None; load a checkpoint that contains a text encoder.")
        require(cls, locals())
        source_tokens, target_tokens = clip.tokenize(source_prompt), clip.tokenize(target_prompt)
        subject = Subject(prompt_subject(clip, source_prompt, source_tokens, source_words, "source_words"),
                          prompt_subject(clip, target_prompt, target_tokens, target_words or source_words,
                                         "target_words" if target_words else "source_words (used for the target)"))
        encode = clip.encode_from_tokens_scheduled
        conditioning = batch_conditioning(encode(source_tokens), encode(target_tokens))
        return io.NodeOutput(conditioning, subject)


class MaskGuidanceNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MasaCtrlMasks",
            display_name=MASKS,
            category="MasaCtrl",
            description="Mask-guided MasaCtrl: the target's foreground reads the source's foreground and its "
                        "background the source's background, so subject and background stop mixing. Masks come "
                        "from the subject words' cross-attention (automatic) or from MASK inputs. Use together with "
                        "the MasaCtrl node, in either order.",
            inputs=[
                io.Model.Input("model", tooltip="The model to sample with (before or after MasaCtrl). It is not "
                                                "changed; a copy is returned."),
                io.Float.Input("threshold", default=0.1, min=0.001, max=0.999, step=0.01,
                               tooltip="Automatic masks: a pixel is subject where its normalised map is at least "
                                       "this (paper: 0.1)."),
                io.Combo.Input("map_resolution", options=list(MAP_RESOLUTIONS), default="1/4 (paper)",
                               tooltip="UNets: which cross-attention layers make the automatic masks, by their "
                                       "size relative to the latent (paper: 16x16 at 512 px, i.e. 1/4). Diffusion "
                                       "transformers have one token grid: not used there."),
                io.Combo.Input("map_layers", options=list(MAP_LAYERS), default="all",
                               tooltip="UNets: use the maps of encoder, decoder or all layers at that resolution. "
                                       "Diffusion transformers: the maps come from every double-stream block."),
                Subject_.Input("subject", optional=True,
                               tooltip="From Subject Prompts: the words that make the automatic masks."),
                io.Mask.Input("source_mask", optional=True,
                              tooltip="The subject in the source image (white), any size; replaces the automatic "
                                      "source mask. One mask, or one per source."),
                io.Mask.Input("target_mask", optional=True,
                              tooltip="Where the subject should be in the target(s), any size; replaces the automatic "
                                      "target mask. One mask, or one per target."),
            ],
            outputs=[io.Model.Output(tooltip="A copy of the model whose MasaCtrl layers read foreground from "
                                             "foreground and background from background; MasaCtrl must be on it "
                                             "too (either order).")],
        )

    @classmethod
    def validate_inputs(cls, map_resolution=None, map_layers=None):
        return report(cls, locals())

    @classmethod
    def execute(cls, model, threshold, map_resolution, map_layers, subject=None, source_mask=None,
                target_mask=None) -> io.NodeOutput:
        require(cls, locals())
        diffusion_model = model.get_model_object("diffusion_model")
        if not hasattr(diffusion_model, "input_blocks"):  # a diffusion transformer: MasaCtrl's patches record
            capture = dit_capture_layers(dit_layer_map_of(diffusion_model))
            guidance = MaskGuidance(threshold, subject, source_mask, target_mask, capture)
            return io.NodeOutput(install_latest_run(cls.patch(model, guidance, {})))
        sites = capture_sites(diffusion_model, MAP_RESOLUTIONS[map_resolution], MAP_LAYERS[map_layers])
        if not sites and (source_mask is None or target_mask is None):
            usable = [name for name, level in MAP_RESOLUTIONS.items()
                      if capture_sites(diffusion_model, level, MAP_LAYERS[map_layers])]
            raise ValueError(f"{MASKS}: this model has no cross-attention layers at map_resolution "
                             f"{map_resolution} in map_layers '{map_layers}'; choose one of {usable}.")
        guidance = MaskGuidance(threshold, subject, source_mask, target_mask, frozenset(sites))
        patched = cls.patch(model, guidance, sites if guidance.needs_maps else {})
        return io.NodeOutput(install_latest_run(patched))  # for Mask Preview: which samples the maps belong to

    @staticmethod
    def patch(model, guidance, sites):
        return patch_masks(model.clone(), guidance, sites, comfy_attention.optimized_attention,
                           comfy.patcher_extension.WrappersMP.CALC_COND_BATCH,
                           comfy.patcher_extension.WrappersMP.OUTER_SAMPLE)


@rule("model", "samples")
def samples_of_latest_run(model, samples):
    # The recorder keeps the maps of this model's latest run, whichever prompt ran it: maps shown next to
    # other samples (no sampler in this prompt, another sampler's latent) would be the wrong run's.
    latest = latest_run_of(model)
    if latest is not None and not latest.produced(samples["samples"]):
        return ("samples is not the LATENT output of the latest sampler run with this model (none has finished, or "
                "another run came after it), so the recorded maps would not be this latent's; run the sampler that "
                "uses this model and connect its LATENT output here.")


class MaskPreview(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MasaCtrlMaskPreview",
            display_name=PREVIEW,
            category="MasaCtrl",
            description="Show the subject maps and masks that Masks (MasaCtrl) made during the latest sampling run of "
                        "this model, one per image and word.",
            inputs=[
                io.Model.Input("model", tooltip="The MODEL the sampler used: Masks (MasaCtrl)'s output, or a later "
                                                "patch's."),
                io.Latent.Input("samples", tooltip="The sampler's output: sets the size, and runs this node after it."),
                io.Int.Input("step", default=-1, min=-1, max=10000,
                             tooltip="Which sampling step to show; -1: the last step that made masks."),
                io.Image.Input("images", optional=True, tooltip="Decoded images to lay the maps over."),
            ],
            outputs=[io.Image.Output(display_name="maps",
                                     tooltip="One heat map per image and word (blue low, red high), at image size, "
                                             "half over the images where connected."),
                     io.Mask.Output(display_name="masks",
                                    tooltip="The thresholded masks at image size, one per image and word, in the "
                                            "order of maps."),
                     io.String.Output(display_name="labels",
                                      tooltip="One line per map: its image, word and step.")],
            is_output_node=True,  # it shows its preview even when nothing else uses its outputs
        )

    RULES = (samples_of_latest_run,)

    @classmethod
    def execute(cls, model, samples, step, images=None) -> io.NodeOutput:
        require(cls, locals())
        recorder = model.get_attachment(RECORDER_KEY)
        guidance = model.model_options.get("transformer_options", {}).get(MASKS_KEY)
        if recorder is None or guidance is None:
            raise ValueError(f"{PREVIEW}: this model has no {MASKS}; connect the MODEL output of {MASKS} (the one "
                             "the sampler used).")
        if not recorder.steps:
            raise ValueError(f"{PREVIEW}: no automatic masks were made with this model yet (masks from "
                             "MASK inputs are not recorded; MasaCtrl may not have reached its start step); run the "
                             "sampler first and connect its LATENT to samples.")
        chosen = recorder.last_step() if step == -1 else step
        if chosen not in recorder.steps:
            raise ValueError(f"{PREVIEW}: step {step} made no masks; steps with masks: "
                             f"{sorted(recorder.steps)}.")
        maps, words = recorder.steps[chosen]
        latent = samples["samples"]
        if latent.shape[0] != maps.shape[0]:
            raise ValueError(f"{PREVIEW}: samples has {latent.shape[0]} image(s) but the last run of this "
                             f"model had {maps.shape[0]}; connect the LATENT of the sampler that used this model.")
        shown, masks, picked = preview(maps, words, latent.shape[-2] * 8, latent.shape[-1] * 8, guidance.threshold,
                                       images)
        labels = "\n".join(f"{i}: image {b} '{words[b][w]}' (step {chosen})" for i, (b, w) in enumerate(picked))
        return io.NodeOutput(shown, masks, labels, ui=ui.PreviewImage(shown, cls=cls))
