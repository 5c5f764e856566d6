"""BLIP captioning as a prompt source: Load BLIP Caption Model (models/blip) and BLIP Caption (one caption per
image, with prefix/suffix, as prompts and optionally as batched CLIP conditioning)."""
from __future__ import annotations

from comfy_api.v0_0_2 import io

from ..attention.comfyui_conditioning import build_prompts, encode_prompts
from ..model_files.blip_captioner import (
    FOLDER,
    LOADER,
    BlipCaptioner,
    caption_images,
    load_blip,
    missing_model_message,
    model_folders,
)
from .input_checks import custom_type, report, require, rule, unavailable_ui, unproducible

# WAS Suite and Art Venture have a BLIP_MODEL of their own
BlipModel_ = custom_type("MASACTRL_BLIP_MODEL", BlipCaptioner, "connect Load BLIP Caption Model's output")
NO_MODEL = f"(no BLIP model in models/{FOLDER}: see this node's help)"
CONDITIONING_SLOT = 1
CAPTION = "BLIP Caption (MasaCtrl)"


@rule("model_name", own_options=True)
def blip_model_found(model_name):
    # Instead of "not one of its options": where to put which files.
    if model_name not in model_folders():
        message = missing_model_message(None if model_name == NO_MODEL else model_name)
        return f"model_name: {message.removeprefix(f'{LOADER}: ')}"


@rule("min_length", "max_length")
def lengths_in_order(min_length, max_length):
    if min_length > max_length:
        return f"min_length {min_length} is above max_length {max_length}; lower min_length or raise max_length."


class BLIPLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        names = list(model_folders()) or [NO_MODEL]
        return io.Schema(
            node_id="MasaCtrlBLIPLoader",
            display_name=LOADER,
            category="MasaCtrl/photo completion",
            description=f"Load a BLIP captioning model (Hugging Face BlipForConditionalGeneration, base or large) "
                        f"from a sub-folder of models/{FOLDER}. ComfyUI loads it to the GPU when captioning and "
                        "offloads it like its other models.",
            inputs=[
                io.Combo.Input("model_name", options=names, default=names[0],
                               tooltip=f"A model folder in models/{FOLDER} (e.g. blip-image-captioning-large, the "
                                       "files of Salesforce/blip-image-captioning-large from Hugging Face)."),
            ],
            outputs=[BlipModel_.Output(display_name="blip_model", tooltip="The BLIP model, for BLIP Caption.")],
        )

    RULES = (blip_model_found,)

    @classmethod
    def validate_inputs(cls, model_name=None):
        return report(cls, locals())

    @classmethod
    def execute(cls, model_name) -> io.NodeOutput:
        path = model_folders().get(model_name)
        if path is None:  # the folder went away since validation
            raise FileNotFoundError(missing_model_message(None if model_name == NO_MODEL else model_name))
        return io.NodeOutput(load_blip(path))


class BLIPCaption(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MasaCtrlBLIPCaption",
            display_name=CAPTION,
            category="MasaCtrl/photo completion",
            description="Describe each image of a batch with BLIP and build a prompt from each caption: "
                        "prompt_prefix + caption + prompt_suffix. With a CLIP connected, also encodes the prompts "
                        "as one conditioning with one row per image, to sample the whole batch at once.",
            inputs=[
                BlipModel_.Input("blip_model", tooltip="From Load BLIP Caption Model."),
                io.Image.Input("image", tooltip="The image(s) to describe: one caption per image of the batch."),
                io.String.Input("conditional_text", default="a photography of",
                                tooltip="Words BLIP continues (conditional captioning), e.g. 'a photography of'. "
                                        "They steer the caption but are not repeated in it; put them in "
                                        "prompt_prefix to keep them. Empty: unconditional captioning."),
                io.Int.Input("min_length", default=5, min=0, max=500,
                             tooltip="Fewest tokens (word pieces) in each caption, not counting conditional_text."),
                io.Int.Input("max_length", default=30, min=1, max=500,
                             tooltip="Most tokens (word pieces) in each caption, not counting conditional_text."),
                io.Int.Input("num_beams", default=3, min=1, max=16,
                             tooltip="Beam search width (BLIP's captioning: 3); 1 is greedy. Deterministic either "
                                     "way; more beams cost time and memory."),
                io.String.Input("prompt_prefix", default="", multiline=True,
                                tooltip="Text put before each caption, as it is (end it with a space or comma); "
                                        "empty: none."),
                io.String.Input("prompt_suffix", default="", multiline=True,
                                tooltip="Text put after each caption, as it is, e.g. ', full body, feet, high "
                                        "quality'; empty: none."),
                io.Clip.Input("clip", optional=True,
                              tooltip="Optional: a CLIP to encode the prompts with, as CLIP Text Encode does, for "
                                      "the conditioning output."),
            ],
            outputs=[
                io.String.Output(display_name="prompt", is_output_list=True,
                                 tooltip="One prompt per image, as a list: a node connected here runs once per "
                                         "prompt."),
                io.Conditioning.Output(display_name="conditioning",
                                       tooltip="Needs clip: all prompts encoded, row i for image i, for sampling "
                                               "the batch in one KSampler run. Connected without clip: an error."),
                io.String.Output(display_name="all_prompts",
                                 tooltip="All prompts in one text, one line per image, for showing or saving."),
            ],
            hidden=[io.Hidden.prompt, io.Hidden.unique_id],  # which outputs are connected: unproducible()
        )

    RULES = (lengths_in_order,)

    @classmethod
    def validate_inputs(cls, min_length=None, max_length=None):
        return report(cls, locals())

    @classmethod
    def execute(cls, blip_model, image, conditional_text, min_length, max_length, num_beams, prompt_prefix,
                prompt_suffix, clip=None) -> io.NodeOutput:
        require(cls, locals())
        conditioning = None
        if clip is None:  # checked before captioning: a connected conditioning output fails at once
            conditioning = unproducible(cls, CONDITIONING_SLOT, "the conditioning output needs a CLIP: connect the "
                                        "clip input (e.g. from Load Checkpoint), or use the prompt output with CLIP "
                                        "Text Encode.")
        captions = caption_images(blip_model, image, conditional_text, min_length, max_length, num_beams)
        prompts = build_prompts(captions, prompt_prefix, prompt_suffix)
        if clip is not None:
            conditioning = encode_prompts(clip, prompts)
        return io.NodeOutput(prompts, conditioning, "\n".join(prompts), ui=unavailable_ui(conditioning))
