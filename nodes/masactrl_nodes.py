"""MasaCtrl: the model patch (MODEL in, a clone with mutual self-attention out) and Batch Conditioning, which
stacks the source and target prompts along the batch."""
from __future__ import annotations

import comfy.ldm.modules.attention as comfy_attention
from comfy_api.v0_0_2 import io

from ..attention import BatchLayout, MutualAttentionSchedule, MutualSelfAttentionControl
from ..attention.comfyui_conditioning import batch_conditioning
from ..attention.comfyui_patches import layer_map_of, patch_model

SCHEDULE_BY = ["steps", "percent"]


class MasaCtrl(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MasaCtrlMutualSelfAttention",
            display_name="MasaCtrl",
            category="MasaCtrl",
            description="Mutual self-attention control (Cao et al., ICCV 2023): target images of the batch read "
                        "keys and values from the source image's self-attention, so they keep its subject "
                        "and textures while following their own prompts. No fine-tuning.",
            inputs=[
                io.Model.Input("model", tooltip="A UNet model (SD1.x, SD2.x, SDXL). The input is not changed; "
                               "a patched copy is returned."),
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
                io.Int.Input("start_layer", default=10, min=0, max=200,
                             tooltip="First self-attention layer with MasaCtrl, counted in UNet order "
                                     "(SD1.x/SD2.x: 0-15, 10 = the decoder's last six; SDXL: 0-69)."),
                io.Int.Input("end_layer", default=-1, min=-1, max=200,
                             tooltip="Last self-attention layer with MasaCtrl, inclusive; -1: the last layer."),
                io.Boolean.Input("encoder", default=True, tooltip="Allow layers of the UNet encoder (input blocks)."),
                io.Boolean.Input("middle", default=True, tooltip="Allow layers of the UNet middle block."),
                io.Boolean.Input("decoder", default=True, tooltip="Allow layers of the UNet decoder (output blocks)."),
                io.String.Input("source_indices", default="0",
                                tooltip="Batch indices of the source images, e.g. '0' or '0,3'. Every other "
                                        "image is a target of the nearest source before it."),
            ],
            outputs=[io.Model.Output()],
        )

    @classmethod
    def execute(cls, model, schedule_by, start_step, end_step, step_interval, start_percent, end_percent,
                start_layer, end_layer, encoder, middle, decoder, source_indices) -> io.NodeOutput:
        sigma_range = None
        if schedule_by == "percent":
            sampling = model.get_model_object("model_sampling")
            sigma_range = (sampling.percent_to_sigma(start_percent), sampling.percent_to_sigma(end_percent))
        parts = tuple(p for p, on in (("encoder", encoder), ("middle", middle), ("decoder", decoder)) if on)
        schedule = MutualAttentionSchedule(start_step, end_step, step_interval, start_layer, end_layer,
                                           parts, sigma_range)
        layer_map = layer_map_of(model.get_model_object("diffusion_model"))
        control = MutualSelfAttentionControl(schedule, BatchLayout.parse(source_indices), layer_map)
        # ComfyUI's own attention (whichever backend it chose) runs the steps MasaCtrl leaves alone.
        return io.NodeOutput(patch_model(model.clone(), control, comfy_attention.optimized_attention))


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
            outputs=[io.Conditioning.Output()],
        )

    @classmethod
    def execute(cls, source, target) -> io.NodeOutput:
        return io.NodeOutput(batch_conditioning(source, target))
