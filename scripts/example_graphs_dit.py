"""Example graphs of MasaCtrl on diffusion transformers: consistent synthesis with Flux.1 dev and with SD3.5 large.
Built by export_example_workflows.py in the real front end, like the UNet examples."""
from __future__ import annotations

from workflow_graph import NEGATIVE, NOTE, POSITIVE, node

SOURCE_PROMPT = "a photo of a corgi sitting on a wooden porch"
TARGET_PROMPT = "a photo of a corgi running on a beach"
# Where ComfyUI's own Flux and SD3.5 templates download these files from (public, no login).
FLUX_MODELS = {
    "unet": ("flux1-dev.safetensors", "diffusion_models",
             "https://huggingface.co/Comfy-Org/flux1-dev/resolve/main/flux1-dev.safetensors"),
    "clip_l": ("clip_l.safetensors", "text_encoders",
               "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors"),
    "t5": ("t5xxl_fp16.safetensors", "text_encoders",
           "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/t5xxl_fp16.safetensors"),
    "vae": ("ae.safetensors", "vae",
            "https://huggingface.co/Comfy-Org/Lumina_Image_2.0_Repackaged/resolve/main/split_files/vae/ae.safetensors"),
}
SD35_CHECKPOINT = ("sd3.5_large_fp8_scaled.safetensors", "checkpoints",
                   "https://huggingface.co/Comfy-Org/stable-diffusion-3.5-fp8/resolve/main/"
                   "sd3.5_large_fp8_scaled.safetensors")

C0, C1, C2, C3, C4, C5 = 0, 420, 880, 1200, 1560, 1900
FLUX_SAMPLING = "Flux.1 dev is guidance-distilled: FluxGuidance 3.5, KSampler cfg 1, euler / simple, 20 steps."
SD35_SAMPLING = "SD3.5 uses real CFG: KSampler cfg 4.5, euler / sgm_uniform, 28 steps, with a negative prompt."


def models(*files) -> dict:
    """properties.models of a loader node: what the front end's Missing Models dialog offers to download."""
    return {"properties": {"models": [{"name": name, "directory": folder, "url": url} for name, folder, url in files]}}


def note_text(model: str, files: list[tuple[str, str, str]], sampler: str) -> str:
    where = "\n".join(f"- models/{folder}/{name}: {url}" for name, folder, url in files)
    return f"""MasaCtrl on {model}: consistent synthesis

One batch of two images: image 0 is the source ("{SOURCE_PROMPT}"), image 1 the target ("{TARGET_PROMPT}").

- Batch Conditioning (MasaCtrl) stacks the two prompts; Latent Batch Seed Behavior = fixed gives both the same noise.
- MasaCtrl: from step 4 on, in the later blocks (start_layer -1 = auto), the target's image tokens read the source's image keys and values, with its own text, and the source placed beside it (positions: beside), so the target keeps the source's dog but runs on a beach. Try positions "same" to keep the source's layout too, or Vital Layers (MasaCtrl) to pick the blocks for your prompt.
- {sampler}

Files (the Missing Models dialog offers them when absent):
{where}"""


def flux_consistent_synthesis():
    files = list(FLUX_MODELS.values())
    nodes = [
        node("note", "Note", [C0, 0], {"text": note_text("Flux.1 dev", files, FLUX_SAMPLING)},
             "About this workflow", [400, 330], **NOTE),
        node("unet", "UNETLoader", [C0, 370], {"unet_name": FLUX_MODELS["unet"][0], "weight_dtype": "default"},
             size=[315, 82], **models(FLUX_MODELS["unet"])),
        node("clip", "DualCLIPLoader", [C0, 490], {"clip_name1": FLUX_MODELS["clip_l"][0],
                                                   "clip_name2": FLUX_MODELS["t5"][0], "type": "flux",
                                                   "device": "default"},
             size=[315, 130], **models(FLUX_MODELS["clip_l"], FLUX_MODELS["t5"])),
        node("vae", "VAELoader", [C0, 660], {"vae_name": FLUX_MODELS["vae"][0]}, size=[315, 58],
             **models(FLUX_MODELS["vae"])),
        node("latent", "EmptySD3LatentImage", [C0, 760], {"width": 1024, "height": 1024, "batch_size": 2}),
        node("source", "CLIPTextEncode", [C1, 370], {"text": SOURCE_PROMPT}, "Source prompt (image 0)", [400, 150],
             **POSITIVE),
        node("target", "CLIPTextEncode", [C1, 560], {"text": TARGET_PROMPT}, "Target prompt (image 1)", [400, 150],
             **POSITIVE),
        node("seed_behavior", "LatentBatchSeedBehavior", [C1, 760], {"seed_behavior": "fixed"},
             "Same noise for source and target"),
        node("masactrl", "MasaCtrlMutualSelfAttention", [C2, 0]),
        node("batch", "MasaCtrlBatchConditioning", [C2, 560], size=[260, 46]),
        node("guidance", "FluxGuidance", [C2, 650], {"guidance": 3.5}),
        node("zero", "ConditioningZeroOut", [C2, 760], title="Negative (unused at cfg 1)"),
        node("sampler", "KSampler", [C3, 370],
             {"seed": 42, "control_after_generate": "fixed", "steps": 20, "cfg": 1.0, "sampler_name": "euler",
              "scheduler": "simple", "denoise": 1.0}),
        node("decode", "VAEDecode", [C4, 370]),
        node("save", "SaveImage", [C5, 370], {"filename_prefix": "MasaCtrl_Flux"}, size=[420, 460]),
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
        node("note", "Note", [C0, 0], {"text": note_text("SD3.5 large", files, SD35_SAMPLING)},
             "About this workflow", [400, 330], **NOTE),
        node("ckpt", "CheckpointLoaderSimple", [C0, 370], {"ckpt_name": SD35_CHECKPOINT[0]}, size=[315, 98],
             **models(SD35_CHECKPOINT)),
        node("latent", "EmptySD3LatentImage", [C0, 520], {"width": 1024, "height": 1024, "batch_size": 2}),
        node("source", "CLIPTextEncode", [C1, 370], {"text": SOURCE_PROMPT}, "Source prompt (image 0)", [400, 150],
             **POSITIVE),
        node("target", "CLIPTextEncode", [C1, 560], {"text": TARGET_PROMPT}, "Target prompt (image 1)", [400, 150],
             **POSITIVE),
        node("negative", "CLIPTextEncode", [C1, 750], {"text": "blurry, lowres"}, "Negative prompt", [400, 150],
             **NEGATIVE),
        node("seed_behavior", "LatentBatchSeedBehavior", [C1, 940], {"seed_behavior": "fixed"},
             "Same noise for source and target"),
        node("masactrl", "MasaCtrlMutualSelfAttention", [C2, 0]),
        node("batch", "MasaCtrlBatchConditioning", [C2, 560], size=[260, 46]),
        node("sampler", "KSampler", [C3, 370],
             {"seed": 42, "control_after_generate": "fixed", "steps": 28, "cfg": 4.5, "sampler_name": "euler",
              "scheduler": "sgm_uniform", "denoise": 1.0}),
        node("decode", "VAEDecode", [C4, 370]),
        node("save", "SaveImage", [C5, 370], {"filename_prefix": "MasaCtrl_SD35"}, size=[420, 460]),
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
