"""Real-photo editing nodes: DDIM Inversion (a photo's latent back to noise) and Follow Inversion (the source
image of the batch follows it back to the photo while MasaCtrl edits the targets)."""
from __future__ import annotations

import comfy.model_management
import comfy.samplers
from comfy_api.v0_0_2 import io

from ..attention.comfyui_inversion import DDIMInversion, follow_inversion, invert
from .input_checks import custom_type, report, require, rule

Inversion_ = custom_type("MASACTRL_INVERSION", DDIMInversion,
                         "connect the inversion output of DDIM Inversion (MasaCtrl)")


@rule("latent")
def one_photo(latent):
    if latent["samples"].shape[0] != 1:
        return (f"the latent input holds {latent['samples'].shape[0]} images; it inverts one photo. VAE Encode a "
                "single image, or pick one with Latent From Batch.")


class DDIMInversionNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MasaCtrlDDIMInversion",
            display_name="DDIM Inversion (MasaCtrl)",
            category="MasaCtrl",
            description="Invert a photo's latent (VAE Encode) with deterministic DDIM inversion, as MasaCtrl does for "
                        "real-image editing. start_latent is the noise the photo came from: sample it WITHOUT added "
                        "noise (KSamplerAdvanced add_noise disable, same steps and scheduler) with a model through "
                        "Follow Inversion (MasaCtrl) and MasaCtrl.",
            inputs=[
                io.Model.Input("model", tooltip="The checkpoint's model (SD1.x, SD2.x, SDXL), before MasaCtrl and "
                                                "Follow Inversion."),
                io.Conditioning.Input("positive", tooltip="The source prompt: a description of the photo."),
                io.Conditioning.Input("negative", tooltip="The negative prompt (usually empty)."),
                io.Latent.Input("latent", tooltip="The photo's latent (VAE Encode of one image)."),
                io.Int.Input("steps", default=50, min=1, max=1000,
                             tooltip="Inversion steps; sample with the same number of steps."),
                io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance of the inversion (MasaCtrl's reference: 7.5). "
                                       "1.0 skips the negative prompt and inverts more exactly."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="ddim_uniform",
                               tooltip="Sigma schedule of the inversion; sample with the same scheduler."),
                io.Int.Input("batch_size", default=2, min=1, max=64,
                             tooltip="Copies of the start latent in the output: the source (image 0) plus the "
                                     "targets. Match the number of prompts in Batch Conditioning."),
            ],
            outputs=[
                io.Latent.Output(display_name="start_latent",
                                 tooltip="The inverted noise, batch_size copies. Sample with add_noise disabled."),
                Inversion_.Output(display_name="inversion",
                                  tooltip="The inversion trajectory, for Follow Inversion (MasaCtrl)."),
            ],
        )

    RULES = (one_photo,)

    @classmethod
    def validate_inputs(cls, scheduler=None):
        return report(cls, locals())

    @classmethod
    def execute(cls, model, positive, negative, latent, steps, cfg, scheduler, batch_size) -> io.NodeOutput:
        require(cls, locals())
        node = cls.define_schema().display_name
        start, inversion = invert(model, positive, negative, latent["samples"], steps, cfg, scheduler, node)
        start = start.to(comfy.model_management.intermediate_device())
        reps = (batch_size,) + (1,) * (start.ndim - 1)
        return io.NodeOutput({"samples": start.repeat(reps)}, inversion)


class FollowInversionNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MasaCtrlFollowInversion",
            display_name="Follow Inversion (MasaCtrl)",
            category="MasaCtrl",
            description="Make the source image of the batch follow a DDIM inversion back to the photo, so MasaCtrl "
                        "edits the targets with the photo as source. Returns a copy of the model.",
            inputs=[
                io.Model.Input("model", tooltip="The model to sample with (before or after MasaCtrl). It is not "
                                                "changed; a copy is returned."),
                Inversion_.Input("inversion", tooltip="The inversion output of DDIM Inversion (MasaCtrl)."),
                io.Int.Input("source_index", default=0, min=0, max=63,
                             tooltip="Which image of the latent batch is the photo's branch (MasaCtrl's source: 0)."),
            ],
            outputs=[io.Model.Output(tooltip="A copy of the model whose source image retraces the inversion "
                                             "to the photo: sample with KSamplerAdvanced, add_noise disabled.")],
        )

    @classmethod
    def execute(cls, model, inversion, source_index) -> io.NodeOutput:
        require(cls, locals())  # source_index against the batch: when the sampler runs (follow_inversion)
        return io.NodeOutput(follow_inversion(model, inversion, source_index))
