"""Example graphs of MasaCtrl on diffusion transformers: consistent synthesis with Flux.1 dev and with SD3.5 large.
Built by export_example_workflows.py in the real front end, like the UNet examples."""
from __future__ import annotations

from workflow_graph import MODEL_DOWNLOADS, NEGATIVE, NOTE, POSITIVE, node

SOURCE_PROMPT = "a photo of a corgi sitting on a wooden porch"
TARGET_PROMPT = "a photo of a corgi running on a beach"
FLUX_MODELS = {"unet": "flux1-dev.safetensors", "clip_l": "clip_l.safetensors", "t5": "t5xxl_fp16.safetensors",
               "vae": "ae.safetensors"}  # download places: workflow_graph.MODEL_DOWNLOADS
SD35_CHECKPOINT = "sd3.5_large_fp8_scaled.safetensors"
TITLES = {"flux": "MasaCtrl on Flux.1 dev: same subject, new scene",
          "sd35": "MasaCtrl on SD3.5 large: same subject, new scene"}

# Columns of the compact layout the other templates use (fits a 1280x800 window at a readable zoom).
C0, C1, C2, C3, C4 = 0, 400, 780, 1120, 1430
FLUX_SAMPLING = "Flux.1 dev is guidance-distilled: FluxGuidance 3.5, KSampler cfg 1, euler / simple, 20 steps."
SD35_SAMPLING = "SD3.5 uses real CFG: KSampler cfg 4.5, euler / sgm_uniform, 28 steps, with a negative prompt."


def note_files(files: list[str]) -> str:
    """One line per model file: where it goes and where it comes from."""
    return "\n".join(f"- models/{MODEL_DOWNLOADS[name]['directory']}/{name}: {MODEL_DOWNLOADS[name]['url']}"
                     for name in files)


def note_text(title: str, files: list[str], sampler: str) -> str:
    where = note_files(files)
    return f"""{title}

One batch of two images: image 0 is the source ("{SOURCE_PROMPT}"), image 1 the target ("{TARGET_PROMPT}").

- Batch Conditioning (MasaCtrl) stacks the two prompts; Latent Batch Seed Behavior = fixed gives both the same noise.
- MasaCtrl: from step 4 on, in the later blocks (start_layer -1 = auto), the target's image tokens read the source's image keys and values, with its own text, and the source placed beside it (positions: beside), so the target keeps the source's dog but runs on a beach. Try positions "same" to keep the source's layout too, or Vital Layers (MasaCtrl) to pick the blocks for your prompt.
- {sampler}

Files (the Missing Models dialog offers them when absent):
{where}"""


def flux_consistent_synthesis():
    files = list(FLUX_MODELS.values())
    nodes = [
        node("note", "Note", [C0, 0], {"text": note_text(TITLES["flux"], files, FLUX_SAMPLING)},
             "About this workflow", [360, 330], **NOTE),
        node("unet", "UNETLoader", [C0, 410], {"unet_name": FLUX_MODELS["unet"], "weight_dtype": "default"},
             size=[315, 82]),
        node("clip", "DualCLIPLoader", [C0, 540], {"clip_name1": FLUX_MODELS["clip_l"],
                                                   "clip_name2": FLUX_MODELS["t5"], "type": "flux",
                                                   "device": "default"}, size=[315, 130]),
        node("vae", "VAELoader", [C0, 720], {"vae_name": FLUX_MODELS["vae"]}, size=[315, 58]),
        node("source", "CLIPTextEncode", [C1, 0], {"text": SOURCE_PROMPT}, "Source prompt (image 0)", [340, 110],
             **POSITIVE),
        node("target", "CLIPTextEncode", [C1, 150], {"text": TARGET_PROMPT}, "Target prompt (image 1)", [340, 110],
             **POSITIVE),
        node("latent", "EmptySD3LatentImage", [C1, 300], {"width": 1024, "height": 1024, "batch_size": 2},
             size=[315, 106]),
        node("seed_behavior", "LatentBatchSeedBehavior", [C1, 450], {"seed_behavior": "fixed"},
             "Same noise for source and target", [315, 58]),
        node("masactrl", "MasaCtrlMutualSelfAttention", [C2, 0], size=[300, 440]),
        node("batch", "MasaCtrlBatchConditioning", [C2, 490], size=[260, 46]),
        node("guidance", "FluxGuidance", [C2, 580], {"guidance": 3.5}, size=[260, 58]),
        node("zero", "ConditioningZeroOut", [C2, 690], title="Negative (unused at cfg 1)", size=[260, 26]),
        node("sampler", "KSampler", [C3, 0],
             {"seed": 42, "control_after_generate": "fixed", "steps": 20, "cfg": 1.0, "sampler_name": "euler",
              "scheduler": "simple", "denoise": 1.0}, size=[270, 262]),
        node("decode", "VAEDecode", [C3, 310]),
        node("save", "SaveImage", [C4, 0], {"filename_prefix": "MasaCtrl_Flux"}, size=[300, 320]),
    ]
    links = [
        ("unet", "MODEL", "masactrl", "model"),
        ("clip", "CLIP", "source", "clip"),
        ("clip", "CLIP", "target", "clip"),
        ("source", "CONDITIONING", "batch", "source"),
        ("target", "CONDITIONING", "batch", "target"),
        ("batch", "CONDITIONING", "guidance", "conditioning"),
        ("source", "CONDITIONING", "zero", "conditioning"),
        ("latent", "LATENT", "seed_behavior", "samples"),
        ("masactrl", "MODEL", "sampler", "model"),
        ("guidance", "CONDITIONING", "sampler", "positive"),
        ("zero", "CONDITIONING", "sampler", "negative"),
        ("seed_behavior", "LATENT", "sampler", "latent_image"),
        ("sampler", "LATENT", "decode", "samples"),
        ("vae", "VAE", "decode", "vae"),
        ("decode", "IMAGE", "save", "images"),
    ]
    return {"nodes": nodes, "links": links}


def sd35_consistent_synthesis():
    files = [SD35_CHECKPOINT]
    nodes = [
        node("note", "Note", [C0, 0], {"text": note_text(TITLES["sd35"], files, SD35_SAMPLING)},
             "About this workflow", [360, 330], **NOTE),
        node("ckpt", "CheckpointLoaderSimple", [C0, 410], {"ckpt_name": SD35_CHECKPOINT}, size=[315, 98]),
        node("latent", "EmptySD3LatentImage", [C0, 560], {"width": 1024, "height": 1024, "batch_size": 2},
             size=[315, 106]),
        node("source", "CLIPTextEncode", [C1, 0], {"text": SOURCE_PROMPT}, "Source prompt (image 0)", [340, 110],
             **POSITIVE),
        node("target", "CLIPTextEncode", [C1, 150], {"text": TARGET_PROMPT}, "Target prompt (image 1)", [340, 110],
             **POSITIVE),
        node("negative", "CLIPTextEncode", [C1, 300], {"text": "blurry, lowres"}, "Negative prompt", [340, 110],
             **NEGATIVE),
        node("seed_behavior", "LatentBatchSeedBehavior", [C1, 710], {"seed_behavior": "fixed"},
             "Same noise for source and target", [315, 58]),
        node("masactrl", "MasaCtrlMutualSelfAttention", [C2, 0], size=[300, 440]),
        node("batch", "MasaCtrlBatchConditioning", [C2, 490], size=[260, 46]),
        node("sampler", "KSampler", [C3, 0],
             {"seed": 42, "control_after_generate": "fixed", "steps": 28, "cfg": 4.5, "sampler_name": "euler",
              "scheduler": "sgm_uniform", "denoise": 1.0}, size=[270, 262]),
        node("decode", "VAEDecode", [C3, 310]),
        node("save", "SaveImage", [C4, 0], {"filename_prefix": "MasaCtrl_SD35"}, size=[300, 320]),
    ]
    links = [
        ("ckpt", "MODEL", "masactrl", "model"),
        ("ckpt", "CLIP", "source", "clip"),
        ("ckpt", "CLIP", "target", "clip"),
        ("ckpt", "CLIP", "negative", "clip"),
        ("source", "CONDITIONING", "batch", "source"),
        ("target", "CONDITIONING", "batch", "target"),
        ("latent", "LATENT", "seed_behavior", "samples"),
        ("masactrl", "MODEL", "sampler", "model"),
        ("batch", "CONDITIONING", "sampler", "positive"),
        ("negative", "CONDITIONING", "sampler", "negative"),
        ("seed_behavior", "LATENT", "sampler", "latent_image"),
        ("sampler", "LATENT", "decode", "samples"),
        ("ckpt", "VAE", "decode", "vae"),
        ("decode", "IMAGE", "save", "images"),
    ]
    return {"nodes": nodes, "links": links}
