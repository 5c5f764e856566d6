"""Node and link lists of two MasaCtrl examples: mask-guided synthesis (subject masks from cross-attention) and
editing a real photo (DDIM inversion). Used by export_example_workflows.py, which builds them in the real front
end and exports them."""
from __future__ import annotations

from workflow_graph import CHECKPOINT, NEGATIVE, NOTE, POSITIVE, node

PHOTO = "masactrl_photo.png"
MASK_SOURCE, MASK_TARGET = "a photo of a corgi on the grass", "a photo of a corgi jumping on the beach"
PHOTO_SOURCE, PHOTO_TARGET = "a photo of a sitting corgi", "a photo of a running corgi"

C0, C1, C2, C3, C4 = 0, 400, 780, 1120, 1440
SAMPLER = {"seed": 42, "control_after_generate": "fixed", "steps": 50, "cfg": 7.5, "sampler_name": "ddim",
           "scheduler": "ddim_uniform", "denoise": 1.0}

NOTE_MASKS = f"""MasaCtrl with automatic masks (mask-guided MasaCtrl, Cao et al., ICCV 2023)

Image 0 is the source ("{MASK_SOURCE}"), image 1 the target ("{MASK_TARGET}"), from the same noise.

- Subject Prompts encodes both prompts as one batch and finds the subject word "corgi" in each.
- MasaCtrl: from step 4 the target's decoder self-attention reads the source's keys and values.
- Masks (MasaCtrl): the cross-attention of "corgi" becomes a mask in every step, so the target's corgi reads only the source's corgi and its background only the source's background: the grass does not leak onto the beach.
- Mask Preview (MasaCtrl) shows the map of each word over the result (blue low, red high) and the thresholded masks.

Masks of your own: connect MASK inputs (source_mask, target_mask) on Masks (MasaCtrl) instead of, or besides, the subject."""

NOTE_PHOTO = f"""MasaCtrl on a real photo: DDIM inversion

{PHOTO} is a drawn stand-in that the pack puts in ComfyUI/input: replace it with your own picture under that name, or pick another in Load Image. Use a 512x512 photo and describe it as the source prompt.

- DDIM Inversion runs the model backwards from the photo to noise (same steps and scheduler as the sampler) and records the path.
- Follow Inversion makes image 0 of the batch follow that path, so it reconstructs the photo and MasaCtrl's target reads the photo's keys and values.
- The target prompt ("{PHOTO_TARGET}") changes the pose; MasaCtrl (from step 4, layers 10-15) keeps the photo's corgi.
- KSamplerAdvanced starts from the inverted noise: add_noise disabled, same 50 steps, ddim, ddim_uniform."""


def mask_guided_synthesis():
    nodes = [
        node("note", "Note", [C0, 0], {"text": NOTE_MASKS}, "About this workflow", [360, 330], **NOTE),
        node("ckpt", "CheckpointLoaderSimple", [C0, 380], {"ckpt_name": CHECKPOINT}, size=[315, 98]),
        node("latent", "EmptyLatentImage", [C0, 530], {"width": 512, "height": 512, "batch_size": 2}),
        node("prompts", "MasaCtrlSubjectPrompts", [C1, 0],
              {"source_prompt": MASK_SOURCE, "target_prompt": MASK_TARGET, "source_words": "corgi",
               "target_words": ""}, "Subject Prompts: source (image 0), target (image 1)", [340, 330], **POSITIVE),
        node("negative", "CLIPTextEncode", [C1, 380], {"text": ""}, "Negative prompt", [340, 110], **NEGATIVE),
        node("seed_behavior", "LatentBatchSeedBehavior", [C1, 540], {"seed_behavior": "fixed"},
              "Same noise for source and target", [315, 58]),
        node("masactrl", "MasaCtrlMutualSelfAttention", [C2, 0], size=[300, 322]),
        node("masks", "MasaCtrlMasks", [C2, 370], size=[300, 200]),
        node("sampler", "KSampler", [C3, 0], SAMPLER, size=[270, 262]),
        node("decode", "VAEDecode", [C3, 310]),
        node("save", "SaveImage", [C3, 400], {"filename_prefix": "MasaCtrl"}, size=[280, 240]),
        node("preview", "MasaCtrlMaskPreview", [C4, 0], {"step": -1}, size=[300, 420]),
    ]
    links = [
        ("ckpt", "MODEL", "masactrl", "model"),
        ("ckpt", "CLIP", "prompts", "clip"),
        ("ckpt", "CLIP", "negative", "clip"),
        ("masactrl", "MODEL", "masks", "model"),
        ("prompts", "subject", "masks", "subject"),
        ("masks", "MODEL", "sampler", "model"),
        ("prompts", "conditioning", "sampler", "positive"),
        ("negative", "CONDITIONING", "sampler", "negative"),
        ("latent", "LATENT", "seed_behavior", "samples"),
        ("seed_behavior", "LATENT", "sampler", "latent_image"),
        ("sampler", "LATENT", "decode", "samples"),
        ("ckpt", "VAE", "decode", "vae"),
        ("decode", "IMAGE", "save", "images"),
        ("masks", "MODEL", "preview", "model"),
        ("sampler", "LATENT", "preview", "samples"),
        ("decode", "IMAGE", "preview", "images"),
    ]
    return {"nodes": nodes, "links": links}


def real_photo_editing():
    nodes = [
        node("note", "Note", [C0, 0], {"text": NOTE_PHOTO}, "About this workflow", [360, 300], **NOTE),
        node("ckpt", "CheckpointLoaderSimple", [C0, 350], {"ckpt_name": CHECKPOINT}, size=[315, 98]),
        node("photo", "LoadImage", [C0, 500], {"image": PHOTO}, "The photo (source)", [300, 300]),
        node("source", "CLIPTextEncode", [C1, 0], {"text": PHOTO_SOURCE}, "Source prompt: the photo", [340, 110],
              **POSITIVE),
        node("target", "CLIPTextEncode", [C1, 150], {"text": PHOTO_TARGET}, "Target prompt: the edit", [340, 110],
              **POSITIVE),
        node("negative", "CLIPTextEncode", [C1, 300], {"text": ""}, "Negative prompt", [340, 110], **NEGATIVE),
        node("encode", "VAEEncode", [C1, 460]),
        node("invert", "MasaCtrlDDIMInversion", [C2, 0],
              {"steps": 50, "cfg": 7.5, "scheduler": "ddim_uniform", "batch_size": 2}, size=[300, 190]),
        node("batch", "MasaCtrlBatchConditioning", [C2, 240], size=[260, 46]),
        node("follow", "MasaCtrlFollowInversion", [C2, 330], {"source_index": 0}, size=[300, 80]),
        node("masactrl", "MasaCtrlMutualSelfAttention", [C2, 460], size=[300, 322]),
        node("sampler", "KSamplerAdvanced", [C3, 0],
              {"add_noise": "disable", "noise_seed": 0, "control_after_generate": "fixed", "steps": 50, "cfg": 7.5,
               "sampler_name": "ddim", "scheduler": "ddim_uniform", "start_at_step": 0, "end_at_step": 10000,
               "return_with_leftover_noise": "disable"}, size=[300, 334]),
        node("decode", "VAEDecode", [C4, 0]),
        node("save", "SaveImage", [C4, 90], {"filename_prefix": "MasaCtrl"}, size=[300, 320]),
    ]
    links = [
        ("ckpt", "CLIP", "source", "clip"),
        ("ckpt", "CLIP", "target", "clip"),
        ("ckpt", "CLIP", "negative", "clip"),
        ("photo", "IMAGE", "encode", "pixels"),
        ("ckpt", "VAE", "encode", "vae"),
        ("ckpt", "MODEL", "invert", "model"),
        ("source", "CONDITIONING", "invert", "positive"),
        ("negative", "CONDITIONING", "invert", "negative"),
        ("encode", "LATENT", "invert", "latent"),
        ("source", "CONDITIONING", "batch", "source"),
        ("target", "CONDITIONING", "batch", "target"),
        ("ckpt", "MODEL", "follow", "model"),
        ("invert", "inversion", "follow", "inversion"),
        ("follow", "MODEL", "masactrl", "model"),
        ("masactrl", "MODEL", "sampler", "model"),
        ("batch", "CONDITIONING", "sampler", "positive"),
        ("negative", "CONDITIONING", "sampler", "negative"),
        ("invert", "start_latent", "sampler", "latent_image"),
        ("sampler", "LATENT", "decode", "samples"),
        ("ckpt", "VAE", "decode", "vae"),
        ("decode", "IMAGE", "save", "images"),
    ]
    return {"nodes": nodes, "links": links}
