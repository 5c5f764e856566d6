"""MasaCtrl Schedule Sweep: sample the same batch with the same noise once per value of one MasaCtrl schedule
parameter, score every run, and draw the trade-off (text alignment against consistency, one point per value)
and a grid of the results: MasaCtrl's ablations, for the user's own subject."""
from __future__ import annotations

import json
from dataclasses import asdict, replace

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
import numpy as np
import torch
from comfy_api.latest import io

from ..attention.comfyui_adapter import installed_patches, replace_control
from ..attention.scores import prompts_per_image
from ..attention.sweep import EXAMPLES, PARAMETERS, SweepError, sweep_settings
from .hf_folders import to_pil
from .scores import PROMPTS_TOOLTIP, ScoreModels_, check_score_models, number, score_images, table_columns
from .sweep_plot import PlotPoint, labelled_grid, tradeoff_plot

NODE = "MasaCtrl Schedule Sweep"
# consistency input -> (the score on the plot's vertical axis, its axis title)
CONSISTENCY = {"clip": ("image_alignment", "consistency: CLIP image cosine to the source"),
               "dino": ("dino_alignment", "consistency: DINO cosine to the source")}
TEXT_AXIS = "text alignment: CLIP text-image cosine"
CELL = 256  # the grid's longer image side, in pixels


def masactrl_control(model):
    """The MasaCtrl setting the MasaCtrl node installed on `model`."""
    patches = installed_patches(model)
    if not patches:
        raise ValueError(f"{NODE}: the model has no MasaCtrl: connect the MasaCtrl node's output (its settings are "
                         "the sweep's fixed ones; the sweep varies one of them).")
    return next(iter(patches.values())).control


def run_table(parameter: str, labels: list[str], runs: list, with_dino: bool) -> str:
    """A Markdown table: one row per setting, with the means over the targets."""
    columns = table_columns(with_dino)
    lines = [f"| {parameter} | " + " | ".join(title for _, title in columns) + " |",
             "|---|" + "---|" * len(columns)]
    lines += [f"| {label} | " + " | ".join(number(scores.mean(m)) for m, _ in columns) + " |"
              for label, scores in zip(labels, runs)]
    return "\n".join(lines)


def to_image(picture) -> torch.Tensor:
    """A PIL picture as a one-image ComfyUI IMAGE batch."""
    return torch.from_numpy(np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0)[None]


def decode(vae, samples: torch.Tensor) -> torch.Tensor:
    images = vae.decode(samples)
    return images.reshape(-1, *images.shape[-3:]) if images.ndim == 5 else images  # video VAEs: as VAE Decode


def progress_callback(model, runs: int, steps: int):
    """callback_for(run): a sampler callback moving one bar over all runs, with the usual latent previews."""
    progress = comfy.utils.ProgressBar(runs * steps)
    previewer = latent_preview.get_previewer(model.load_device, model.model.latent_format)

    def callback_for(run: int):
        def callback(step, x0, x, total_steps):
            preview = previewer.decode_latent_to_preview_image("JPEG", x0) if previewer else None
            progress.update_absolute(run * total_steps + step + 1, runs * total_steps, preview)
        return callback
    return callback_for


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
                io.Conditioning.Input("negative"),
                io.Latent.Input("latent_image", tooltip="The batch: sources and targets, as for KSampler."),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=True,
                             tooltip="The same noise for every run, so only the swept setting differs."),
                io.Int.Input("steps", default=20, min=1, max=10000),
                io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01),
                io.Combo.Input("sampler_name", options=comfy.samplers.SAMPLER_NAMES, default="ddim"),
                io.Combo.Input("scheduler", options=comfy.samplers.SCHEDULER_NAMES, default="ddim_uniform"),
                io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01),
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

    @classmethod
    def execute(cls, model, vae, positive, negative, latent_image, seed, steps, cfg, sampler_name, scheduler,
                denoise, parameter, values, score_models, prompts, consistency) -> io.NodeOutput:
        control = masactrl_control(model)
        models = check_score_models(score_models, NODE)
        if consistency == "dino" and models.dino is None:
            raise ValueError(f"{NODE}: consistency is dino, but no DINO model is loaded: choose one in Load "
                             "Alignment Score Models' dino_name, or set consistency to clip.")
        try:
            settings = sweep_settings(control.schedule, parameter, values, steps, control.layer_map)
            samples = comfy.sample.fix_empty_latent_channels(model, latent_image["samples"])
            owner = control.layout.source_of(samples.shape[0])
        except ValueError as error:  # SweepError, BatchLayoutError
            raise SweepError(f"{NODE}: {error}") from None
        prompt_of = prompts_per_image(prompts, owner, NODE)
        noise = comfy.sample.prepare_noise(samples, seed, latent_image.get("batch_index"))
        callback_for = progress_callback(model, len(settings), steps)
        images, runs = [], []
        for run, setting in enumerate(settings):
            comfy.model_management.throw_exception_if_processing_interrupted()
            swept = None if setting.schedule is None else replace(control, schedule=setting.schedule)
            out = comfy.sample.sample(replace_control(model, swept), noise.clone(), steps, cfg, sampler_name,
                                      scheduler, positive, negative, samples, denoise=denoise,
                                      noise_mask=latent_image.get("noise_mask"), callback=callback_for(run),
                                      disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
            images.append(decode(vae, out))
            runs.append(score_images(models, images[-1], owner, prompt_of))
        return io.NodeOutput(torch.cat(images), *cls.report(settings, owner, images, runs, parameter, seed,
                                                            consistency, models.dino is not None))

    @staticmethod
    def report(settings, owner, images, runs, parameter, seed, consistency, with_dino):
        """The grid, the plot, the table and the JSON of a finished sweep."""
        labels = [s.label for s in settings]
        columns = [f"{i}: source" if s == i else f"{i}: target" for i, s in enumerate(owner)]
        grid, _ = labelled_grid([[np.asarray(p) for p in to_pil(batch)] for batch in images], labels, columns, CELL)
        metric, axis = CONSISTENCY[consistency]
        points = [PlotPoint(label, scores.mean("text_alignment"), scores.mean(metric))
                  for label, scores in zip(labels, runs)]
        plot, _ = tradeoff_plot(points, TEXT_AXIS, axis, f"MasaCtrl sweep over {parameter} (seed {seed})")
        summary = {"parameter": parameter, "seed": seed, "metric": "cosine similarity, mean over the targets",
                   "runs": [{"setting": s.label, "schedule": asdict(s.schedule) if s.schedule else None,
                             **scores.as_dict()} for s, scores in zip(settings, runs)]}
        return (to_image(grid), to_image(plot), run_table(parameter, labels, runs, with_dino),
                json.dumps(summary, indent=1))
