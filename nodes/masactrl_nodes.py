"""MasaCtrl: the model patch (MODEL in, a clone with mutual self-attention out) and Batch Conditioning, which
stacks the source and target prompts along the batch."""
from __future__ import annotations

import comfy.ldm.modules.attention as comfy_attention
from comfy_api.v0_0_2 import io

from ..attention import BatchLayout, BatchLayoutError, MutualAttentionSchedule, MutualSelfAttentionControl
from ..attention.comfyui_conditioning import batch_conditioning
from ..attention.comfyui_dit_patches import dit_layer_map_of, patch_dit_model
from ..attention.comfyui_patches import layer_map_of, patch_model
from ..attention.joint_attention import POSITIONS, TEXT_TOKENS, JointAttentionSettings
from ..attention.schedule import ScheduleError, parse_layers
from .input_checks import report, require, rule
from .mode_widgets import mode_widgets
from .run_checks import install_masactrl_run_check

SCHEDULE_BY = ["steps", "percent"]
BLOCKS = {"all": ("double", "single"), "double": ("double",), "single": ("single",)}  # a DiT's parts


@rule("start_step", "end_step")
def steps_in_order(start_step, end_step):
    if end_step != -1 and end_step < start_step:
        return (f"end_step {end_step} is before start_step {start_step}; raise end_step, or use -1 (through the "
                "final step).")


@rule("schedule_by", "start_percent", "end_percent")
def percents_in_order(schedule_by, start_percent, end_percent):
    # An empty window acts on no step at all; percents are read only with schedule_by percent.
    if schedule_by == "percent" and start_percent >= end_percent:
        return (f"start_percent {start_percent:g} is not below end_percent {end_percent:g}, so MasaCtrl would act "
                "on no step; lower start_percent or raise end_percent (0 to 1 is the whole run).")


@rule("start_layer", "end_layer")
def layers_in_order(start_layer, end_layer):
    if end_layer != -1 and end_layer < start_layer:
        return (f"end_layer {end_layer} is before start_layer {start_layer}; raise end_layer, or use -1 (through "
                "the last layer).")


@rule("layers")
def layers_parse(layers):
    try:
        parse_layers(layers)
    except ScheduleError as error:
        return str(error).removeprefix("MasaCtrl ")


@rule("encoder", "middle", "decoder")
def some_part(encoder, middle, decoder):
    if not (encoder or middle or decoder):
        return ("encoder, middle and decoder are all off, so MasaCtrl would act on no layer of a UNet; switch one on "
                "(on a diffusion transformer leave them on and choose its blocks with the blocks input).")


@rule("source_indices")
def source_indices_parse(source_indices):
    try:
        BatchLayout.parse(source_indices)
    except BatchLayoutError:
        return (f"source_indices '{source_indices}' is not a list of batch indices; write the indices of the "
                "source images in increasing order, starting with 0, separated by commas, e.g. '0' or '0,3'.")


class MasaCtrl(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return mode_widgets(io.Schema(
            node_id="MasaCtrlMutualSelfAttention",
            display_name="MasaCtrl",
            category="MasaCtrl",
            description="Mutual self-attention control (Cao et al., ICCV 2023): target images of the batch read "
                        "keys and values from the source image's self-attention, so they keep its subject "
                        "and textures while following their own prompts. No fine-tuning.",
            inputs=[
                io.Model.Input("model", tooltip="A UNet model (SD1.x, SD2.x, SDXL) or a diffusion transformer "
                               "(Flux.1, Chroma, SD3.x, Qwen-Image). The input is not changed; a patched copy is "
                               "returned."),
                io.Combo.Input("schedule_by", options=SCHEDULE_BY, default="steps",
                               tooltip="steps: start_step/end_step count the steps of the sampler running this "
                                       "model. percent: start_percent/end_percent of the denoising process, for "
                                       "split samplers (KSamplerAdvanced start/end)."),
                io.Int.Input("start_step", default=4, min=0, max=10000,
                             tooltip="First step with MasaCtrl (paper: 4). Earlier steps lay out the target "
                                     "freely, which is what lets its pose differ from the source."),
                io.Int.Input("end_step", default=-1, min=-1, max=10000,
                             tooltip="Last step with MasaCtrl, inclusive; -1: through the final step."),
                io.Int.Input("step_interval", default=1, min=1, max=1000,
                             tooltip="Use MasaCtrl on every n-th step from the start (1: every step)."),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.001,
                               tooltip="With schedule_by=percent: where MasaCtrl starts (0: the first step)."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.001,
                               tooltip="With schedule_by=percent: where MasaCtrl ends (1: the last step)."),
                io.Int.Input("start_layer", default=-1, min=-1, max=200,
                             tooltip="First layer with MasaCtrl, in execution order (SD1.x/SD2.x: 0-15; SDXL: "
                                     "0-69; Flux.1/Chroma: double blocks 0-18 then single blocks 19-56; SD3.x, "
                                     "Qwen-Image: their joint blocks). -1 (auto): the paper's 10 on SD1.x/SD2.x, "
                                     "the official script's 44 on SDXL, the first single block (19) on "
                                     "Flux.1/Chroma, the second half of the joint blocks on SD3.x/Qwen-Image."),
                io.Int.Input("end_layer", default=-1, min=-1, max=200,
                             tooltip="Last layer with MasaCtrl, inclusive; -1: the last layer."),
                io.Boolean.Input("encoder", default=True, tooltip="Allow layers of the UNet encoder (input blocks)."),
                io.Boolean.Input("middle", default=True, tooltip="Allow layers of the UNet middle block."),
                io.Boolean.Input("decoder", default=True, tooltip="Allow layers of the UNet decoder (output blocks)."),
                io.String.Input("source_indices", default="0",
                                tooltip="Batch indices of the source images, e.g. '0' or '0,3'. Every other "
                                        "image is a target of the nearest source before it."),
                io.Combo.Input("blocks", options=list(BLOCKS), default="all", optional=True,
                               tooltip="Diffusion transformers: which blocks may run MasaCtrl (Flux.1/Chroma: "
                                       "double-stream blocks, where text and image have their own weights, and "
                                       "single-stream blocks; SD3.x and Qwen-Image have double-stream (joint) "
                                       "blocks only). UNets use encoder/middle/decoder instead."),
                io.Combo.Input("text_tokens", options=list(TEXT_TOKENS), default="target", optional=True,
                               tooltip="Diffusion transformers: whose text keys a target's joint attention reads. "
                                       "target: its own prompt, with the source's image keys (the prompt still "
                                       "steers it). source: the source's text and image keys, the paper's rule "
                                       "taken literally (the target's prompt is muted in active blocks)."),
                io.Combo.Input("positions", options=list(POSITIONS), default="beside", optional=True,
                               tooltip="Flux.1/Chroma/Qwen-Image (rotary positions): beside: the source's image "
                                       "keys sit one canvas to the right, like a panel beside the target, so the "
                                       "target keeps "
                                       "the subject without copying its layout. same: the source's own "
                                       "coordinates, so the target follows its layout too. SD3.x and UNets carry "
                                       "positions in their features: no effect there."),
                io.String.Input("layers", default="", optional=True,
                                tooltip="An explicit layer list, e.g. '0,1,17-18' (connect Vital Layers' "
                                        "selection here): MasaCtrl runs in exactly these layers and start_layer/"
                                        "end_layer are ignored. Empty: start_layer/end_layer decide."),
            ],
            outputs=[io.Model.Output(tooltip="A copy of the model with MasaCtrl: connect it to the sampler (or to "
                                             "Masks (MasaCtrl) or Grid Sampling (MasaCtrl) first).")],
        ), schedule_by={"steps": ("start_step", "end_step"), "percent": ("start_percent", "end_percent")})

    RULES = (steps_in_order, percents_in_order, layers_in_order, layers_parse, some_part, source_indices_parse)

    @classmethod
    def validate_inputs(cls, schedule_by=None, start_step=None, end_step=None, start_percent=None, end_percent=None,
                        start_layer=None, end_layer=None, encoder=None, middle=None, decoder=None,
                        source_indices=None, blocks=None, text_tokens=None, positions=None, layers=None):
        return report(cls, locals())

    @classmethod
    def execute(cls, model, schedule_by, start_step, end_step, step_interval, start_percent, end_percent,
                start_layer, end_layer, encoder, middle, decoder, source_indices, blocks="all", text_tokens="target",
                positions="beside", layers="") -> io.NodeOutput:
        require(cls, locals())
        sigma_range = None
        if schedule_by == "percent":
            sampling = model.get_model_object("model_sampling")
            sigma_range = (sampling.percent_to_sigma(start_percent), sampling.percent_to_sigma(end_percent))
        diffusion_model = model.get_model_object("diffusion_model")
        is_unet = hasattr(diffusion_model, "input_blocks")
        layer_map = layer_map_of(diffusion_model) if is_unet else dit_layer_map_of(diffusion_model)
        parts = tuple(p for p, on in (("encoder", encoder), ("middle", middle), ("decoder", decoder)) if on)
        if start_layer == -1:
            start_layer = layer_map.auto_start_layer
        schedule = MutualAttentionSchedule(start_step, end_step, step_interval, start_layer, end_layer,
                                           parts + BLOCKS[blocks], sigma_range, parse_layers(layers))
        control = MutualSelfAttentionControl(schedule, BatchLayout.parse(source_indices), layer_map)
        # ComfyUI's own attention (whichever backend it chose) runs the steps MasaCtrl leaves alone. Whether the
        # schedule acts on the run's steps is known only when a sampler starts: the run check refuses it there.
        if is_unet:
            patched = patch_model(model.clone(), control, comfy_attention.optimized_attention)
        else:
            patched = patch_dit_model(model.clone(), control, JointAttentionSettings(text_tokens, positions))
        return io.NodeOutput(install_masactrl_run_check(patched))


class BatchConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MasaCtrlBatchConditioning",
            display_name="Batch Conditioning (MasaCtrl)",
            category="MasaCtrl",
            description="Stack prompts along the batch: item 0 is the source prompt, then the target prompt(s). "
                        "Chain the node to add more targets; match the latent batch size to the prompt count.",
            inputs=[
                io.Conditioning.Input("source", tooltip="The source prompt (or an already batched conditioning)."),
                io.Conditioning.Input("target", tooltip="The target prompt(s), appended after the source."),
            ],
            outputs=[io.Conditioning.Output(tooltip="One row per image: the source prompt, then the targets'. "
                                                    "The latent batch needs as many images as it has rows.")],
        )

    @classmethod
    def execute(cls, source, target) -> io.NodeOutput:
        require(cls, locals())  # the batch against the latent's size is checked when MasaCtrl's sampler starts
        return io.NodeOutput(batch_conditioning(source, target))
