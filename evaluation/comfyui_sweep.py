"""ComfyUI glue for the schedule sweep: the MasaCtrl setting on a model, one sampling run per setting (same
seed and noise), decoded and scored, on one progress bar, and the sweep's grid, plot, table and JSON."""
from __future__ import annotations

import json
from dataclasses import asdict, replace

import comfy.model_management
import comfy.sample
import comfy.utils
import latent_preview
import numpy as np
import torch

from ..attention.comfyui_dit_patches import installed_dit_patches, replace_dit_control
from ..attention.comfyui_patches import installed_patches, replace_control
from ..model_files.hf_folders import to_pil
from ..model_files.score_models import ScoreModels, score_images
from .plots import PlotPoint, labelled_grid, tradeoff_plot
from .tables import run_table

NODE = "Schedule Sweep (MasaCtrl)"  # the node's display name
# consistency input -> (the score on the plot's vertical axis, its axis title)
CONSISTENCY = {"clip": ("image_alignment", "consistency: CLIP image cosine to the source"),
               "dino": ("dino_alignment", "consistency: DINO cosine to the source")}
TEXT_AXIS = "text alignment: CLIP text-image cosine"
CELL = 256  # the grid's longer image side, in pixels


def masactrl_control(model):
    """The MasaCtrl setting the MasaCtrl node installed on `model`."""
    unet, dit = installed_patches(model), installed_dit_patches(model)
    if not (unet or dit):
        raise ValueError(f"{NODE}: the model has no MasaCtrl: connect the MasaCtrl node's output (its settings are "
                         "the sweep's fixed ones; the sweep varies one of them).")
    return next(iter(unet.values())).control if unet else next(iter(dit.values())).dit.control


def with_control(model, control):
    """A clone of the MasaCtrl-patched `model` whose MasaCtrl follows `control` (None: removed)."""
    return replace_control(model, control) if installed_patches(model) else replace_dit_control(model, control)


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


def run_sweep(model, control, settings, vae, positive, negative, latent_image: dict, samples, seed: int,
              steps: int, cfg: float, sampler_name: str, scheduler: str, denoise: float, models: ScoreModels,
              prompt_of: list) -> tuple[list, list]:
    """Sample, decode and score the batch once per setting, with the same noise: (images, scores) per run.
    Each run samples a fresh clone whose MasaCtrl follows the setting; the input model is not changed."""
    owner = control.layout.source_of(samples.shape[0])
    noise = comfy.sample.prepare_noise(samples, seed, latent_image.get("batch_index"))
    callback_for = progress_callback(model, len(settings), steps)
    images, runs = [], []
    for run, setting in enumerate(settings):
        comfy.model_management.throw_exception_if_processing_interrupted()
        swept = None if setting.schedule is None else replace(control, schedule=setting.schedule)
        out = comfy.sample.sample(with_control(model, swept), noise.clone(), steps, cfg, sampler_name,
                                  scheduler, positive, negative, samples, denoise=denoise,
                                  noise_mask=latent_image.get("noise_mask"), callback=callback_for(run),
                                  disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
        images.append(decode(vae, out))
        runs.append(score_images(models, images[-1], owner, prompt_of))
    return images, runs


def sweep_report(settings, owner, images, runs, parameter, seed, consistency, with_dino):
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
