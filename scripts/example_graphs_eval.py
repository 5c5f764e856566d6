"""Node and link list of the evaluation example: Schedule Sweep (MasaCtrl) over the final step, as in
MasaCtrl's ablations. Used by export_example_workflows.py, which builds it in the real front end, exports it and
screenshots it as its thumbnail."""
from __future__ import annotations

from workflow_graph import CHECKPOINT, NEGATIVE, NOTE, POSITIVE, node

CLIP_MODEL = "clip-vit-large-patch14"
SOURCE_PROMPT = "a photo of a corgi"
TARGET_PROMPT = "a photo of a corgi jumping"
EVAL_NODES = {"color": "#233", "bgcolor": "#355"}  # the pack's evaluation nodes: teal
SWEEP = {"seed": 42, "control_after_generate": "fixed", "steps": 50, "cfg": 7.5, "sampler_name": "ddim",
         "scheduler": "ddim_uniform", "denoise": 1.0, "parameter": "end_step", "values": "off, 10, 20, 30, 40, -1",
         "prompts": f"{SOURCE_PROMPT}\n{TARGET_PROMPT}", "consistency": "clip"}

NOTE_SWEEP = f"""MasaCtrl Suite: consistency vs text alignment, swept over the final step

MasaCtrl trades consistency with the source against following the target prompt. This runs the batch (image 0 "{SOURCE_PROMPT}", image 1 "{TARGET_PROMPT}", same noise) once per end_step value, everything else as the MasaCtrl node sets it (from step 4, layers 10-15, DDIM 50 steps), and scores every run:
- consistency: cosine of CLIP image embeddings, target vs source (DINO too, if loaded);
- text alignment: cosine of CLIP image and text embeddings, target vs its prompt.

The plot shows one labelled point per value ("off" = no MasaCtrl); the grid the images, one row per value; the table the means.

Models: an SD1.5 checkpoint ({CHECKPOINT}) in models/checkpoints; CLIP in models/clip_vision/{CLIP_MODEL}: all files of https://huggingface.co/openai/{CLIP_MODEL} (hf download openai/{CLIP_MODEL} --local-dir models/clip_vision/{CLIP_MODEL}). Optional: DINO (facebook/dinov2-base) in models/dino.

Try: parameter start_step (values 0, 2, 4, 8), step_interval (1, 2, 4), start_layer (0, 5, 10, 13) or layers (encoder, decoder, encoder+decoder). The prompts box lists the batch's prompts, one per line."""


def schedule_sweep():
    C0, C1, C2, C3, C4 = 0, 400, 780, 1140, 1490
    nodes = [
        node("note", "Note", [C0, 0], {"text": NOTE_SWEEP}, "About this workflow", [360, 400], **NOTE),
        node("ckpt", "CheckpointLoaderSimple", [C0, 450], {"ckpt_name": CHECKPOINT}, size=[315, 98]),
        node("latent", "EmptyLatentImage", [C0, 600], {"width": 512, "height": 512, "batch_size": 2}),
        node("source", "CLIPTextEncode", [C1, 0], {"text": SOURCE_PROMPT}, "Source prompt (image 0)", [340, 110],
              **POSITIVE),
        node("target", "CLIPTextEncode", [C1, 150], {"text": TARGET_PROMPT}, "Target prompt (image 1)", [340, 110],
              **POSITIVE),
        node("negative", "CLIPTextEncode", [C1, 300], {"text": ""}, "Negative prompt", [340, 110], **NEGATIVE),
        node("seed_behavior", "LatentBatchSeedBehavior", [C1, 450], {"seed_behavior": "fixed"},
              "Same noise for source and target", [315, 58]),
        node("masactrl", "MasaCtrlMutualSelfAttention", [C2, 0], title="MasaCtrl: the fixed settings",
              size=[320, 322]),
        node("batch", "MasaCtrlBatchConditioning", [C2, 370], size=[280, 50]),
        node("scorers", "MasaCtrlScoreModelLoader", [C2, 470], {"clip_name": CLIP_MODEL, "dino_name": "none"},
              size=[320, 82], **EVAL_NODES),
        node("sweep", "MasaCtrlScheduleSweep", [C3, 0], SWEEP, "Sweep end_step", [320, 480], **EVAL_NODES),
        node("plot", "PreviewImage", [C4, 0], title="Trade-off: one point per end_step", size=[300, 240]),
        node("table", "PreviewAny", [C4, 280], title="Mean scores", size=[300, 120]),
        node("grid", "SaveImage", [C4, 440], {"filename_prefix": "MasaCtrl_sweep"}, "Grid: a row per end_step",
              [300, 200]),
    ]
    links = [
        ("ckpt", "MODEL", "masactrl", "model"),
        ("ckpt", "CLIP", "source", "clip"),
        ("ckpt", "CLIP", "target", "clip"),
        ("ckpt", "CLIP", "negative", "clip"),
        ("source", "CONDITIONING", "batch", "source"),
        ("target", "CONDITIONING", "batch", "target"),
        ("latent", "LATENT", "seed_behavior", "samples"),
        ("masactrl", "MODEL", "sweep", "model"),
        ("ckpt", "VAE", "sweep", "vae"),
        ("batch", "CONDITIONING", "sweep", "positive"),
        ("negative", "CONDITIONING", "sweep", "negative"),
        ("seed_behavior", "LATENT", "sweep", "latent_image"),
        ("scorers", "score_models", "sweep", "score_models"),
        ("sweep", "plot", "plot", "images"),
        ("sweep", "table", "table", "source"),
        ("sweep", "grid", "grid", "images"),
    ]
    return {"nodes": nodes, "links": links}
