"""Schedule Sweep (MasaCtrl): sample the same batch with the same noise once per value of one MasaCtrl schedule
parameter, score every run, and draw the trade-off (text alignment against consistency, one point per value)
and a grid of the results: MasaCtrl's ablations, for the user's own subject."""
from __future__ import annotations

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import torch
from comfy_api.v0_0_2 import io

from ..evaluation.comfyui_sweep import CONSISTENCY, NODE, masactrl_control, run_sweep, sweep_report
from ..evaluation.scores import prompts_per_image
from ..evaluation.sweep_settings import EXAMPLES, PARAMETERS, SweepError, sweep_settings, values_problem
from .input_checks import report, require, rule
from .score_nodes import PROMPTS_TOOLTIP, ScoreModels_, prompts_given


@rule("parameter", "values", "steps")
def values_fit_the_run(parameter, values, steps):
    problem = values_problem(parameter, values, steps)
    if problem and "values" not in problem:  # say where the value is written
        return f"{problem[:-1]}; in values '{values}'."
    return problem


@rule("consistency", "score_models")
def consistency_model_loaded(consistency, score_models):
    if consistency == "dino" and score_models.dino is None:
        return ("consistency is dino, but no DINO model is loaded: choose one in Load Alignment Score Models' "
                "dino_name, or set consistency to clip.")


class ScheduleSweep(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MasaCtrlScheduleSweep",
            display_name=NODE,
            category="MasaCtrl/evaluation",
            description="Sample the batch once per value of one MasaCtrl setting (everything else as the MasaCtrl "
                        "node sets it, same seed and noise), score each run, and plot text alignment against "
                        "consistency, one labelled point per value, next to a grid of the images.",
            inputs=[
                io.Model.Input("model", tooltip="The MasaCtrl node's output: its settings stay fixed but for the "
                                                "swept one."),
                io.Vae.Input("vae", tooltip="To decode each run for scoring."),
                io.Conditioning.Input("positive", tooltip="As for KSampler: one row per image (Batch Conditioning)."),
                io.Conditioning.Input("negative", tooltip="As for KSampler: the negative prompt (one row, or one per "
                                                          "image)."),
                io.Latent.Input("latent_image", tooltip="The batch: sources and targets, as for KSampler."),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=True,
                             tooltip="The same noise for every run, so only the swept setting differs."),
                io.Int.Input("steps", default=20, min=1, max=10000,
                             tooltip="Sampling steps of every run; step values (start_step, end_step) count these."),
                io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance scale of every run, as in KSampler (MasaCtrl's "
                                       "paper: 7.5)."),
                io.Combo.Input("sampler_name", options=comfy.samplers.SAMPLER_NAMES, default="ddim",
                               tooltip="ComfyUI's sampler for every run, as in KSampler (the paper: ddim)."),
                io.Combo.Input("scheduler", options=comfy.samplers.SCHEDULER_NAMES, default="ddim_uniform",
                               tooltip="Sigma schedule of every run, as in KSampler (ddim_uniform: the paper's "
                                       "DDIM steps)."),
                io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="How much of the schedule runs, as in KSampler: 1 samples from pure noise; "
                                       "below 1 starts from latent_image partly noised."),
                io.Combo.Input("parameter", options=list(PARAMETERS), default="end_step",
                               tooltip="The MasaCtrl setting to vary. layers: part names (encoder, middle, "
                                       "decoder, joined by +, or all) or layer ranges such as 10-15."),
                io.String.Input("values", default=EXAMPLES["end_step"],
                                tooltip="The values to try, separated by commas; 'off' adds a run without "
                                        "MasaCtrl. Examples: " + "; ".join(f"{p}: {v}" for p, v in EXAMPLES.items())),
                ScoreModels_.Input("score_models", tooltip="From Load Alignment Score Models."),
                io.String.Input("prompts", multiline=True, default="", tooltip=PROMPTS_TOOLTIP),
                io.Combo.Input("consistency", options=list(CONSISTENCY), default="clip",
                               tooltip="The consistency score on the plot's vertical axis (dino needs a DINO "
                                       "model)."),
            ],
            outputs=[
                io.Image.Output(display_name="images", tooltip="Every run's batch, run after run."),
                io.Image.Output(display_name="grid", tooltip="One row per value, one column per batch image."),
                io.Image.Output(display_name="plot", tooltip="Text alignment against consistency, a point per value."),
                io.String.Output(display_name="table", tooltip="A Markdown table of the mean scores per value."),
                io.String.Output(display_name="json", tooltip="Every setting and score, per image, as JSON."),
            ],
        )

    RULES = (values_fit_the_run, consistency_model_loaded, prompts_given)

    @classmethod
    def validate_inputs(cls, steps=None, sampler_name=None, scheduler=None, parameter=None, values=None, prompts=None,
                        consistency=None):
        return report(cls, locals())

    @classmethod
    def execute(cls, model, vae, positive, negative, latent_image, seed, steps, cfg, sampler_name, scheduler,
                denoise, parameter, values, score_models, prompts, consistency) -> io.NodeOutput:
        require(cls, locals())
        control = masactrl_control(model)
        try:
            settings = sweep_settings(control.schedule, parameter, values, steps, control.layer_map)
            samples = comfy.sample.fix_empty_latent_channels(model, latent_image["samples"])
            owner = control.layout.source_of(samples.shape[0])
        except ValueError as error:  # SweepError, BatchLayoutError
            raise SweepError(f"{NODE}: {error}") from None
        images, runs = run_sweep(model, control, settings, vae, positive, negative, latent_image, samples, seed, steps,
                                 cfg, sampler_name, scheduler, denoise, score_models,
                                 prompts_per_image(prompts, owner, NODE))
        return io.NodeOutput(torch.cat(images), *sweep_report(settings, owner, images, runs, parameter, seed,
                                                              consistency, score_models.dino is not None))
