"""Real-photo editing nodes: DDIM Inversion and Flow Inversion (a photo's latent back to noise, on SD1.x/SDXL and
on flow models) and Follow Inversion (the source image of the batch follows it back to the photo while MasaCtrl
edits the targets)."""
from __future__ import annotations

import comfy.model_management
import comfy.samplers
from comfy_api.v0_0_2 import io

from ..attention.comfyui_flow_inversion import InversionNoise, invert_flow
from ..attention.comfyui_inversion import Inversion, follow_inversion, invert
from ..attention.flow_inversion import DEFAULT_SOLVER, SOLVERS
from .input_checks import custom_type, report, require, rule

Inversion_ = custom_type("MASACTRL_INVERSION", Inversion,
                         "connect the inversion output of DDIM Inversion (MasaCtrl) or Flow Inversion (MasaCtrl)")


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


class FlowInversionNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MasaCtrlFlowInversion",
            display_name="Flow Inversion (MasaCtrl)",
            category="MasaCtrl",
            description="Invert a photo's latent (VAE Encode) on a flow model (Flux, Chroma, SD3.x) back to the noise "
                        "it came from, for real-photo editing with MasaCtrl. Sample with SamplerCustomAdvanced: this "
                        "node's noise and latent, BasicScheduler with the same steps and scheduler, and a model "
                        "through Follow Inversion (MasaCtrl) and MasaCtrl.",
            inputs=[
                io.Model.Input("model", tooltip="The flow model (Flux, Chroma, SD3.x), before MasaCtrl and Follow "
                                                "Inversion."),
                io.Conditioning.Input("positive", tooltip="The source prompt: a description of the photo (with "
                                                          "FluxGuidance for Flux dev)."),
                io.Conditioning.Input("negative", optional=True,
                                      tooltip="The negative prompt, for cfg above 1 (SD3.x). Guidance-distilled Flux "
                                              "runs at cfg 1 without one."),
                io.Latent.Input("latent", tooltip="The photo's latent (VAE Encode of one image)."),
                io.Int.Input("steps", default=28, min=1, max=1000,
                             tooltip="Inversion steps; sample with the same number of steps."),
                io.Float.Input("cfg", default=1.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance of the inversion. 1.0 (no negative pass) inverts "
                                       "most exactly; Flux dev is guidance-distilled and runs at 1.0."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="simple",
                               tooltip="Sigma schedule of the inversion; sample with the same scheduler "
                                       "(BasicScheduler, denoise 1.0)."),
                io.Combo.Input("solver", options=list(SOLVERS), default=DEFAULT_SOLVER,
                               tooltip="ODE solver of the inversion: euler (inverse Euler, 1 model call per step), "
                                       "rf_solver (RF-Solver's second-order midpoint step, 2 calls per step), "
                                       "fireflow (FireFlow: the midpoint step reusing the last velocity, 1 call per "
                                       "step, second order)."),
                io.Int.Input("batch_size", default=2, min=1, max=64,
                             tooltip="Images in the latent output: the source (image 0) plus the targets. Match "
                                     "the number of prompts in Batch Conditioning."),
            ],
            outputs=[
                io.Noise.Output(display_name="noise",
                                tooltip="Starts SamplerCustomAdvanced exactly from the inverted latent in every "
                                        "image of the batch: connect it to SamplerCustomAdvanced's noise."),
                io.Latent.Output(display_name="latent",
                                 tooltip="The photo's latent, batch_size copies: SamplerCustomAdvanced's "
                                         "latent_image (it sets the batch and size)."),
                Inversion_.Output(display_name="inversion",
                                  tooltip="The inversion trajectory, for Follow Inversion (MasaCtrl)."),
            ],
        )

    RULES = (one_photo,)

    @classmethod
    def validate_inputs(cls, scheduler=None, solver=None):
        return report(cls, locals())

    @classmethod
    def execute(cls, model, positive, latent, steps, cfg, scheduler, solver, batch_size,
                negative=None) -> io.NodeOutput:
        require(cls, locals())
        node = cls.define_schema().display_name
        inversion = invert_flow(model, positive, negative, latent["samples"], steps, cfg, scheduler, solver, node)
        photo = latent["samples"]
        batch = {"samples": photo.repeat((batch_size,) + (1,) * (photo.ndim - 1))}
        return io.NodeOutput(InversionNoise(inversion, model.get_model_object("latent_format")), batch, inversion)


class FollowInversionNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MasaCtrlFollowInversion",
            display_name="Follow Inversion (MasaCtrl)",
            category="MasaCtrl",
            description="Make the source image of the batch follow an inversion (DDIM or Flow Inversion) back to "
                        "the photo, so MasaCtrl edits the targets with the photo as source. Returns a copy of the "
                        "model.",
            inputs=[
                io.Model.Input("model", tooltip="The model to sample with (before or after MasaCtrl). It is not "
                                                "changed; a copy is returned."),
                Inversion_.Input("inversion", tooltip="The inversion output of DDIM Inversion (MasaCtrl) or Flow "
                                                      "Inversion (MasaCtrl)."),
                io.Int.Input("source_index", default=0, min=0, max=63,
                             tooltip="Which image of the latent batch is the photo's branch (MasaCtrl's source: 0)."),
            ],
            outputs=[io.Model.Output(tooltip="A copy of the model whose source image retraces the inversion "
                                             "to the photo: sample with KSamplerAdvanced, add_noise disabled (DDIM "
                                             "Inversion), or SamplerCustomAdvanced with Flow Inversion's noise.")],
        )

    @classmethod
    def execute(cls, model, inversion, source_index) -> io.NodeOutput:
        require(cls, locals())  # source_index against the batch: when the sampler runs (follow_inversion)
        return io.NodeOutput(follow_inversion(model, inversion, source_index))
