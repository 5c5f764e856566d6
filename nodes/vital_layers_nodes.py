"""Vital Layers: rank a diffusion transformer's blocks by how much bypassing each changes the user's own image
(Stable Flow's method), with a plot, and a layer selection for the MasaCtrl node's `layers` input."""
from __future__ import annotations

import comfy.samplers
import numpy as np
import torch
from comfy_api.v0_0_2 import io

from ..evaluation.comfyui_vital_layers import block_names, measure_vital_layers
from ..evaluation.vital_layers import change_plot, layers_text, most_vital, ranking_table
from .input_checks import report, require


class VitalLayers(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MasaCtrlVitalLayers",
            display_name="Vital Layers (MasaCtrl)",
            category="MasaCtrl/evaluation",
            description="Stable Flow's vital layers on your own model and prompt: sample once with every block, then "
                        "once per block with that block bypassed (same noise), and rank the blocks by how much the "
                        "result changes. The selection feeds the MasaCtrl node's layers input. Flux.1, Chroma, "
                        "SD3.x, Qwen-Image. Costs one sampling run per block plus one.",
            inputs=[
                io.Model.Input("model", tooltip="A diffusion transformer, before the MasaCtrl node."),
                io.Conditioning.Input("positive", tooltip="The prompt(s) the ranking is made for, as for KSampler."),
                io.Conditioning.Input("negative", tooltip="As for KSampler; unused at cfg 1 (Flux.1 dev, Chroma)."),
                io.Latent.Input("latent_image", tooltip="The size and batch to sample, as for KSampler."),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff,
                             tooltip="The same noise for every run, so only the bypassed block differs."),
                io.Int.Input("steps", default=12, min=1, max=10000,
                             tooltip="Steps of every run. Fewer than your final sampler is fine: the ranking "
                                     "needs the layout and the subject, not fine detail."),
                io.Float.Input("cfg", default=1.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="As for KSampler: 1 for guidance-distilled models (Flux.1 dev/schnell, "
                                       "Chroma's default), 3-5 for SD3.x, Qwen-Image."),
                io.Combo.Input("sampler_name", options=comfy.samplers.SAMPLER_NAMES, default="euler",
                               tooltip="As for KSampler."),
                io.Combo.Input("scheduler", options=comfy.samplers.SCHEDULER_NAMES, default="simple",
                               tooltip="As for KSampler (simple or beta for flow models)."),
                io.Int.Input("top_k", default=8, min=1, max=200,
                             tooltip="How many of the most vital blocks to select (Stable Flow found 9 of Flux.1 "
                                     "dev's 57)."),
            ],
            outputs=[
                io.String.Output(display_name="layers",
                                 tooltip="The selected blocks, e.g. '0-1,17-18': connect to MasaCtrl's layers input."),
                io.String.Output(display_name="ranking",
                                 tooltip="Markdown table: every block from the most to the least vital, with its "
                                         "change."),
                io.Image.Output(display_name="plot",
                                tooltip="The change per block in execution order; the selected blocks dark."),
            ],
        )

    @classmethod
    def validate_inputs(cls, sampler_name=None, scheduler=None):
        return report(cls, locals())

    @classmethod
    def execute(cls, model, positive, negative, latent_image, seed, steps, cfg, sampler_name, scheduler,
                top_k) -> io.NodeOutput:
        require(cls, locals())
        layer_map, changes = measure_vital_layers(model, positive, negative, latent_image, seed, steps, cfg,
                                                  sampler_name, scheduler)
        selected = most_vital(changes, min(top_k, len(changes)))
        names = block_names(layer_map)
        picture = change_plot(changes, names, selected, f"Vital layers of this {layer_map.family} model: change of "
                                                        "the result when each block is bypassed")
        plot = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0)[None]
        return io.NodeOutput(layers_text(selected), ranking_table(changes, names, selected), plot)
