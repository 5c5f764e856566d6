"""Evaluation: Load Alignment Score Models (CLIP from models/clip_vision, optional DINO from models/dino) and
Alignment Scores (consistency of each target with its source, and of each target with its prompt)."""
from __future__ import annotations

import json

from comfy_api.v0_0_2 import io

from ..attention import BatchLayout
from ..evaluation.scores import prompts_per_image
from ..evaluation.tables import image_table
from ..model_files.score_models import (
    CLIP_FOLDER,
    DINO_FOLDER,
    LOADER,
    ScoreModels,
    clip_folders,
    dino_folders,
    load_clip,
    load_dino,
    missing_model_message,
    score_images,
)
from .input_checks import custom_type, report, require, rule, unavailable_ui, unproducible
from .masactrl_nodes import source_indices_parse  # the same rule as MasaCtrl's, defined once

ScoreModels_ = custom_type("MASACTRL_SCORE_MODELS", ScoreModels, "connect Load Alignment Score Models' output")
NO_CLIP = f"(no CLIP model folder in models/{CLIP_FOLDER}: see this node's help)"
NO_DINO = "none"
SCORES = "Alignment Scores (MasaCtrl)"
DINO_SLOT = 4
PROMPTS_TOOLTIP = ("The prompts the images were made with, one per line: one line per image of the batch (sources "
                   "included), one per target, or a single line for every target.")


# Instead of "not one of its options": where to put which files.
@rule("clip_name", own_options=True)
def clip_model_found(clip_name):
    if clip_name not in clip_folders():
        message = missing_model_message("CLIP", None if clip_name == NO_CLIP else clip_name)
        return f"clip_name: {message.removeprefix(f'{LOADER}: ')}"


@rule("dino_name", own_options=True)
def dino_model_found(dino_name):
    if dino_name != NO_DINO and dino_name not in dino_folders():
        message = missing_model_message("DINO", dino_name)
        return f"dino_name: {message.removeprefix(f'{LOADER}: ')}"


@rule("prompts")
def prompts_given(prompts):
    if not prompts.strip():
        return ("prompts is empty; write the prompts the images were made with, one per line (one per image, one "
                "per target, or one for every target).")


class ScoreModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        clips = list(clip_folders()) or [NO_CLIP]
        return io.Schema(
            node_id="MasaCtrlScoreModelLoader",
            display_name=LOADER,
            category="MasaCtrl/evaluation",
            description=f"Load the models that score MasaCtrl results: a CLIP (Hugging Face CLIPModel folder, "
                        f"image and text towers) from models/{CLIP_FOLDER}, and optionally DINO (DINOv2 or DINO "
                        f"ViT folder) from models/{DINO_FOLDER}. ComfyUI loads them to the GPU when scoring and "
                        "offloads them like its other models.",
            inputs=[
                io.Combo.Input("clip_name", options=clips, default=clips[0],
                               tooltip=f"A CLIPModel folder in models/{CLIP_FOLDER}, e.g. clip-vit-large-patch14 "
                                       "(all files of openai/clip-vit-large-patch14 from Hugging Face)."),
                io.Combo.Input("dino_name", options=[NO_DINO] + list(dino_folders()), default=NO_DINO,
                               tooltip=f"Optional: a DINO folder in models/{DINO_FOLDER} (facebook/dinov2-base or "
                                       "facebook/dino-vits16) for DINO image consistency; none: CLIP only."),
            ],
            outputs=[ScoreModels_.Output(display_name="score_models",
                                         tooltip="For Alignment Scores and Schedule Sweep (MasaCtrl).")],
        )

    RULES = (clip_model_found, dino_model_found)

    @classmethod
    def validate_inputs(cls, clip_name=None, dino_name=None):
        return report(cls, locals())

    @classmethod
    def execute(cls, clip_name, dino_name) -> io.NodeOutput:
        clip_path = clip_folders().get(clip_name)
        if clip_path is None:
            raise FileNotFoundError(missing_model_message("CLIP", None if clip_name == NO_CLIP else clip_name))
        dino = None
        if dino_name != NO_DINO:
            dino_path = dino_folders().get(dino_name)
            if dino_path is None:
                raise FileNotFoundError(missing_model_message("DINO", dino_name))
            dino = load_dino(dino_path)
        return io.NodeOutput(ScoreModels(load_clip(clip_path), dino))


class AlignmentScoresNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MasaCtrlAlignmentScores",
            display_name=SCORES,
            category="MasaCtrl/evaluation",
            description="Score a MasaCtrl batch: consistency of each target with its source (cosine of CLIP image "
                        "embeddings, and of DINO's where loaded) and text alignment of each target with its prompt "
                        "(cosine of CLIP image and text embeddings). Higher is closer; the two usually trade off.",
            inputs=[
                ScoreModels_.Input("score_models", tooltip="From Load Alignment Score Models."),
                io.Image.Input("images", tooltip="The decoded batch: sources and targets, as MasaCtrl sampled it."),
                io.String.Input("prompts", multiline=True, default="", tooltip=PROMPTS_TOOLTIP),
                io.String.Input("source_indices", default="0",
                                tooltip="As in the MasaCtrl node: the batch indices of the sources, e.g. '0' or "
                                        "'0,3'; every other image is scored against the nearest source before it."),
            ],
            outputs=[
                io.String.Output(display_name="table", tooltip="A Markdown table: every image, then the means."),
                io.String.Output(display_name="json", tooltip="Every score, per image and averaged, as JSON."),
                io.Float.Output(display_name="image_alignment", tooltip="Mean CLIP image cosine, target vs source."),
                io.Float.Output(display_name="text_alignment", tooltip="Mean CLIP text cosine, target vs prompt."),
                io.Float.Output(display_name="dino_alignment",
                                tooltip="Mean DINO cosine, target vs source; needs a DINO model (connected without "
                                        "one: an error)."),
            ],
            hidden=[io.Hidden.prompt, io.Hidden.unique_id],  # which outputs are connected: unproducible()
        )

    RULES = (source_indices_parse, prompts_given)

    @classmethod
    def validate_inputs(cls, prompts=None, source_indices=None):
        return report(cls, locals())

    @classmethod
    def execute(cls, score_models, images, prompts, source_indices) -> io.NodeOutput:
        require(cls, locals())
        dino = None
        if score_models.dino is None:  # checked before scoring: a connected dino_alignment fails at once
            dino = unproducible(cls, DINO_SLOT, "dino_alignment needs a DINO model: choose one in Load Alignment "
                                "Score Models' dino_name.")
        try:
            owner = BatchLayout.parse(source_indices).source_of(images.shape[0])
        except ValueError as error:
            raise ValueError(f"{SCORES}: {error}") from None
        scores = score_images(score_models, images, owner, prompts_per_image(prompts, owner, SCORES))
        summary = scores.summary()
        if dino is None:
            dino = summary["dino_alignment"]
        return io.NodeOutput(image_table(scores, score_models.dino is not None),
                             json.dumps(scores.as_dict(), indent=1), summary["image_alignment"],
                             summary["text_alignment"], dino, ui=unavailable_ui(dino))
