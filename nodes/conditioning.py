"""Batch prompts: one CONDITIONING whose batch items are the source prompt and the target prompt(s),
so image i of the latent batch is denoised with prompt i."""
from __future__ import annotations

import math

import torch
from comfy_api.latest import io


def _repeat_tokens(tensor: torch.Tensor, length: int) -> torch.Tensor:
    # Repeating the whole token sequence leaves cross-attention unchanged (each key appears the same
    # number of times), which is how ComfyUI itself batches prompts of different lengths.
    return tensor.repeat(1, length // tensor.shape[1], 1)


def batch_conditioning(source, target):
    if len(source) != len(target):
        raise ValueError(f"Batch Conditioning: source has {len(source)} conditioning entries and target has "
                         f"{len(target)}; batch prompts before combining or applying ControlNet to one side.")
    out = []
    for (src, src_opts), (tgt, tgt_opts) in zip(source, target):
        if src.shape[2] != tgt.shape[2]:
            raise ValueError(f"Batch Conditioning: source and target come from different text encoders "
                             f"(width {src.shape[2]} vs {tgt.shape[2]}); encode both with the same CLIP.")
        dropped = sorted(set(tgt_opts) - set(src_opts) - {"pooled_output"})
        if dropped:
            raise ValueError(f"Batch Conditioning: target carries {dropped} that source lacks, and the batch keeps "
                             "source's settings; apply those (e.g. ControlNet) after this node instead.")
        length = math.lcm(src.shape[1], tgt.shape[1])
        opts = dict(src_opts)
        if "pooled_output" in src_opts and "pooled_output" in tgt_opts:
            opts["pooled_output"] = torch.cat([src_opts["pooled_output"], tgt_opts["pooled_output"]])
        out.append([torch.cat([_repeat_tokens(src, length), _repeat_tokens(tgt, length)]), opts])
    return out


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
