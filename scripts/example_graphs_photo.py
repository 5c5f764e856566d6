"""Node and link lists of the photo-completion examples: complete a cropped photo, BLIP captions as prompts, the
canvas and its masks, grid sampling of a tall canvas, RePaint + Paste Back. Used by export_example_workflows.py,
which builds them in the real front end, exports them and screenshots them as thumbnails."""
from __future__ import annotations

from workflow_graph import CHECKPOINT, NEGATIVE, NOTE, POSITIVE, node

CROPPED_PHOTO = "masactrl_cropped_photo.png"
MASKED_PHOTO = "masactrl_masked_photo.png"
BLIP_MODEL = "blip-image-captioning-large"
BLIP_SUFFIX = ", full body, legs, feet, shoes, high quality"
COMPLETE_NEGATIVE = "cropped, out of frame, extra legs, deformed feet, blurry, border, frame"
TALL_PROMPT = "a photo of a lighthouse on a cliff above the sea, tall, detailed, natural light"
HARMONISE_PROMPT = "a photo, natural light, high quality"
GENERIC_NEGATIVE = "blurry, low quality"
PHOTO_NODES = {"color": "#223", "bgcolor": "#335"}  # the pack's photo-completion nodes: blue

SAMPLER = {"seed": 42, "control_after_generate": "fixed", "steps": 25, "cfg": 7.0, "sampler_name": "dpmpp_2m",
           "scheduler": "karras", "denoise": 1.0}
REPAINT = {"seed": 42, "control_after_generate": "fixed", "steps": 20, "cfg": 7.0, "sampler_name": "ddpm",
           "scheduler": "normal", "denoise": 0.5, "jump_length": 5, "resamplings": 3}
CAPTION = {"conditional_text": "a photography of", "min_length": 5, "max_length": 30, "num_beams": 3,
           "prompt_prefix": "", "prompt_suffix": BLIP_SUFFIX}

MODELS = (f"Models: an SD1.5 checkpoint ({CHECKPOINT}) in models/checkpoints; the BLIP captioner in "
          f"models/blip/{BLIP_MODEL}: all files of https://huggingface.co/Salesforce/{BLIP_MODEL} (hf download "
          f"Salesforce/{BLIP_MODEL} --local-dir models/blip/{BLIP_MODEL}; -base works too).")

NOTE_COMPLETE = f"""MasaCtrl Suite: complete a cropped photo (e.g. feet cut off)

{CROPPED_PHOTO} is a drawn stand-in that the pack puts in ComfyUI/input: replace it with your own picture under that name, or pick another in Load Image. {MODELS}

1. BLIP Caption describes the photo and adds "{BLIP_SUFFIX.lstrip(', ')}": its conditioning is the prompt.
2. Extend Canvas adds 256 px at the bottom (fill blur); its mask = the new area + a seam band, feathered.
3. Grid Sampling runs SD1.5 on 512 px tiles (overlap 128), so the canvas (a 512x512 photo becomes 512x768) stays one image; KSampler inpaints only the masked area (Set Latent Noise Mask, denoise 1.0).
4. RePaint re-noises the result to denoise 0.5 and samples again, resampling (jump 5, 3 times), to blend the seam.
5. Paste Back keeps the original pixels exactly.

Tweak: Extend Canvas sides / target aspect, prompt_suffix, the negative, RePaint denoise (more: more change)."""

NOTE_CAPTION = f"""MasaCtrl Suite: BLIP captions as prompts

{CROPPED_PHOTO} is a drawn stand-in that the pack puts in ComfyUI/input: replace it with your own picture under that name, or pick another in Load Image. {MODELS}

- BLIP Caption writes one caption per image: prompt_prefix + caption + prompt_suffix. conditional_text steers the caption ("a photography of ...") without being repeated.
- all_prompts (one line per image) is shown by Preview Any; prompt is a list, one run per prompt.
- With clip connected, conditioning encodes the prompts (row i for image i) and drives KSampler directly.

Tweak: num_beams (1 is fastest), min/max_length, the suffix."""

NOTE_GRID = f"""MasaCtrl Suite: Grid Sampling for canvases larger than the model

Model: an SD1.5 checkpoint ({CHECKPOINT}) in models/checkpoints.

SD1.5 is trained at 512 px; at 512x1024 it tends to repeat the subject. Grid Sampling runs the UNet on overlapping 512x512 tiles and blends them at every step, so the canvas stays one coherent image.

- tile_width/height: the model's native size (SD1.5 512, SDXL 1024).
- overlap: the least overlap of neighbouring tiles (128 = a quarter); more is smoother and slower.
- blend: linear (fade over the overlap), gaussian (Mixture of Diffusers), uniform (MultiDiffusion).
- tiles_per_batch: 0 = as many per UNet call as memory allows; 1 = least memory."""

NOTE_REPAINT = f"""MasaCtrl Suite: harmonise a region with RePaint + Paste Back

{MASKED_PHOTO} is a drawn stand-in that the pack puts in ComfyUI/input: replace it with your own picture under that name, or pick another in Load Image. It carries a mask (transparent lower left); for your own image paint the region to redo in the Mask Editor (right-click the Load Image node): its MASK output is that region. Sides should be multiples of 8. Model: an SD1.5 checkpoint ({CHECKPOINT}).

Top: RePaint re-noises the latent to denoise 0.5, samples again and re-imposes the unmasked part after every step, resampling every jump_length steps (resamplings times); Paste Back keeps the unmasked pixels exactly.

Bottom, the same with SamplerCustom: Set Latent Noise Mask + RePaint Sampler; BasicScheduler's denoise sets how far back it re-noises.

Tweak: denoise (more: more change), jump_length, resamplings (cost ~ resamplings x steps)."""


def _ckpt(pos):
    return node("ckpt", "CheckpointLoaderSimple", pos, {"ckpt_name": CHECKPOINT}, size=[315, 98])


def _blip(caption_pos, loader_pos, suffix=BLIP_SUFFIX, title="BLIP Caption: the prompt"):
    return [
        node("blip_loader", "MasaCtrlBLIPLoader", loader_pos, {"model_name": BLIP_MODEL}, size=[315, 60],
              **PHOTO_NODES),
        node("caption", "MasaCtrlBLIPCaption", caption_pos, {**CAPTION, "prompt_suffix": suffix}, title,
              [340, 330], **POSITIVE),
    ]


BLIP_LINKS = [
    ("blip_loader", "blip_model", "caption", "blip_model"),
    ("photo", "IMAGE", "caption", "image"),
    ("ckpt", "CLIP", "caption", "clip"),
]


def complete_cropped_photo():
    C0, C1, C2, C3, C4 = 0, 400, 780, 1120, 1450
    nodes = [
        node("note", "Note", [C0, 0], {"text": NOTE_COMPLETE}, "About this workflow", [360, 330], **NOTE),
        _ckpt([C0, 380]),
        node("photo", "LoadImage", [C0, 530], {"image": CROPPED_PHOTO}, "The photo (feet cut off)", [300, 300]),
        *_blip([C1, 0], [C0, 880]),
        node("negative", "CLIPTextEncode", [C1, 380], {"text": COMPLETE_NEGATIVE}, "Negative prompt", [340, 110],
              **NEGATIVE),
        node("extend", "MasaCtrlExtendCanvas", [C1, 540],
              {"mode": "pixels", "bottom": 256, "fill": "blur", "feather": 32, "seam_band": 8},
              "Extend Canvas: 256 px at the bottom", [320, 386], **PHOTO_NODES),
        node("grid", "MasaCtrlGridSampling", [C2, 0],
              {"tile_width": 512, "tile_height": 512, "overlap": 128, "blend": "linear", "tiles_per_batch": 0},
              "Grid Sampling: 512 px tiles", [300, 180], **PHOTO_NODES),
        node("encode", "VAEEncode", [C2, 540]),
        node("noise_mask", "SetLatentNoiseMask", [C2, 630], title="Inpaint only the new area", size=[240, 46]),
        node("sampler", "KSampler", [C3, 0], SAMPLER, "1st pass: inpaint the new area", [270, 262]),
        node("decode", "VAEDecode", [C3, 310]),
        node("encode2", "VAEEncode", [C3, 400]),
        node("repaint", "MasaCtrlRePaint", [C3, 490], REPAINT, "2nd pass: RePaint the seam", [300, 330],
              **PHOTO_NODES),
        node("decode2", "VAEDecode", [C4, 0]),
        node("paste", "MasaCtrlPasteBack", [C4, 90], size=[200, 66], **PHOTO_NODES),
        node("save", "SaveImage", [C4, 200], {"filename_prefix": "MasaCtrl_completed"}, size=[300, 300]),
    ]
    links = BLIP_LINKS + [
        ("ckpt", "CLIP", "negative", "clip"),
        ("photo", "IMAGE", "extend", "image"),
        ("ckpt", "MODEL", "grid", "model"),
        ("extend", "image", "encode", "pixels"),
        ("ckpt", "VAE", "encode", "vae"),
        ("encode", "LATENT", "noise_mask", "samples"),
        ("extend", "mask", "noise_mask", "mask"),
        ("grid", "MODEL", "sampler", "model"),
        ("caption", "conditioning", "sampler", "positive"),
        ("negative", "CONDITIONING", "sampler", "negative"),
        ("noise_mask", "LATENT", "sampler", "latent_image"),
        ("sampler", "LATENT", "decode", "samples"),
        ("ckpt", "VAE", "decode", "vae"),
        ("decode", "IMAGE", "encode2", "pixels"),
        ("ckpt", "VAE", "encode2", "vae"),
        ("grid", "MODEL", "repaint", "model"),
        ("caption", "conditioning", "repaint", "positive"),
        ("negative", "CONDITIONING", "repaint", "negative"),
        ("encode2", "LATENT", "repaint", "latent_image"),
        ("extend", "mask", "repaint", "mask"),
        ("repaint", "LATENT", "decode2", "samples"),
        ("ckpt", "VAE", "decode2", "vae"),
        ("extend", "image", "paste", "original"),
        ("decode2", "IMAGE", "paste", "generated"),
        ("extend", "mask", "paste", "mask"),
        ("paste", "image", "save", "images"),
    ]
    return {"nodes": nodes, "links": links}


def blip_caption():
    C0, C1, C2, C3 = 0, 400, 780, 1100
    nodes = [
        node("note", "Note", [C0, 0], {"text": NOTE_CAPTION}, "About this workflow", [360, 330], **NOTE),
        _ckpt([C0, 380]),
        node("photo", "LoadImage", [C0, 530], {"image": CROPPED_PHOTO}, "The photo to describe", [300, 300]),
        *_blip([C1, 0], [C0, 880], suffix=", high quality", title="BLIP Caption"),
        node("negative", "CLIPTextEncode", [C1, 380], {"text": GENERIC_NEGATIVE}, "Negative prompt", [340, 110],
              **NEGATIVE),
        node("latent", "EmptyLatentImage", [C1, 540], {"width": 512, "height": 512, "batch_size": 1}),
        node("sampler", "KSampler", [C2, 0], SAMPLER, size=[270, 262]),
        node("show", "PreviewAny", [C2, 310], title="The prompts (all_prompts)", size=[280, 200]),
        node("decode", "VAEDecode", [C3, 0]),
        node("save", "SaveImage", [C3, 90], {"filename_prefix": "MasaCtrl_blip"}, size=[300, 300]),
    ]
    links = BLIP_LINKS + [
        ("ckpt", "CLIP", "negative", "clip"),
        ("caption", "all_prompts", "show", "source"),
        ("ckpt", "MODEL", "sampler", "model"),
        ("caption", "conditioning", "sampler", "positive"),
        ("negative", "CONDITIONING", "sampler", "negative"),
        ("latent", "LATENT", "sampler", "latent_image"),
        ("sampler", "LATENT", "decode", "samples"),
        ("ckpt", "VAE", "decode", "vae"),
        ("decode", "IMAGE", "save", "images"),
    ]
    return {"nodes": nodes, "links": links}


def grid_outpaint():
    C0, C1, C2, C3, C4 = 0, 420, 860, 1180, 1380
    nodes = [
        node("note", "Note", [C0, 0], {"text": NOTE_GRID}, "About this workflow", [380, 440], **NOTE),
        _ckpt([C0, 500]),
        node("latent", "EmptyLatentImage", [C0, 660], {"width": 512, "height": 1024, "batch_size": 1},
              "Canvas: 512x1024"),
        node("positive", "CLIPTextEncode", [C1, 0], {"text": TALL_PROMPT}, "Prompt", [400, 150], **POSITIVE),
        node("negative", "CLIPTextEncode", [C1, 190], {"text": GENERIC_NEGATIVE}, "Negative prompt", [400, 150],
              **NEGATIVE),
        node("grid", "MasaCtrlGridSampling", [C1, 400],
              {"tile_width": 512, "tile_height": 512, "overlap": 128, "blend": "linear", "tiles_per_batch": 0},
              "Grid Sampling: 512 px tiles", [300, 180], **PHOTO_NODES),
        node("sampler", "KSampler", [C2, 0], SAMPLER),
        node("decode", "VAEDecode", [C3, 0]),
        node("save", "SaveImage", [C4, 0], {"filename_prefix": "MasaCtrl_grid"}, size=[300, 540]),
    ]
    links = [
        ("ckpt", "CLIP", "positive", "clip"),
        ("ckpt", "CLIP", "negative", "clip"),
        ("ckpt", "MODEL", "grid", "model"),
        ("grid", "MODEL", "sampler", "model"),
        ("positive", "CONDITIONING", "sampler", "positive"),
        ("negative", "CONDITIONING", "sampler", "negative"),
        ("latent", "LATENT", "sampler", "latent_image"),
        ("sampler", "LATENT", "decode", "samples"),
        ("ckpt", "VAE", "decode", "vae"),
        ("decode", "IMAGE", "save", "images"),
    ]
    return {"nodes": nodes, "links": links}


NOTE_CANVAS = f"""MasaCtrl Suite: Extend Canvas, the canvas and its masks

{CROPPED_PHOTO} is a drawn stand-in that the pack puts in ComfyUI/input: replace it with your own picture under that name, or pick another in Load Image. No model needed.

- Extend Canvas adds 256 px at the bottom (mode pixels; or target size / target aspect such as 2:3 with anchor top). Canvas sides are rounded up to multiples of 8; the photo's pixels are copied unchanged.
- fill: what the new area starts as (edge, mirror, blur, noise).
- mask: the new area plus seam_band px of the photo, then a linear feather into it: for Set Latent Noise Mask, RePaint and Paste Back.
- new_area: exactly the added pixels."""


def extend_canvas():
    C0, C1, C2, C3 = 0, 400, 760, 1000
    nodes = [
        node("note", "Note", [C0, 0], {"text": NOTE_CANVAS}, "About this workflow", [360, 300], **NOTE),
        node("photo", "LoadImage", [C0, 350], {"image": CROPPED_PHOTO}, "The photo", [300, 300]),
        node("canvas", "MasaCtrlExtendCanvas", [C1, 0],
              {"mode": "pixels", "left": 0, "top": 0, "right": 0, "bottom": 256, "target_width": 768,
               "target_height": 1024, "aspect": "2:3", "anchor": "top", "fill": "blur", "feather": 32,
               "seam_band": 8, "seed": 0}, "Extend Canvas: 256 px downwards", [320, 420], **PHOTO_NODES),
        node("mask_image", "MaskToImage", [C2, 0], title="mask as an image", size=[200, 46]),
        node("area_image", "MaskToImage", [C2, 120], title="new_area as an image", size=[200, 46]),
        node("save", "SaveImage", [C3, 0], {"filename_prefix": "MasaCtrl_canvas"}, "The canvas", [260, 280]),
        node("mask_preview", "PreviewImage", [C3 + 290, 0], title="mask", size=[240, 280]),
        node("area_preview", "PreviewImage", [C3 + 560, 0], title="new_area", size=[240, 280]),
    ]
    links = [
        ("photo", "IMAGE", "canvas", "image"),
        ("canvas", "image", "save", "images"),
        ("canvas", "mask", "mask_image", "mask"),
        ("canvas", "new_area", "area_image", "mask"),
        ("mask_image", "IMAGE", "mask_preview", "images"),
        ("area_image", "IMAGE", "area_preview", "images"),
    ]
    return {"nodes": nodes, "links": links}


def repaint_harmonise():
    C0, C1, C2, C3, C4 = 0, 400, 780, 1120, 1450
    nodes = [
        node("note", "Note", [C0, 0], {"text": NOTE_REPAINT}, "About this workflow", [360, 330], **NOTE),
        _ckpt([C0, 380]),
        node("photo", "LoadImage", [C0, 530], {"image": MASKED_PHOTO}, "The image + its mask (Mask Editor)",
              [300, 300]),
        node("positive", "CLIPTextEncode", [C1, 0], {"text": HARMONISE_PROMPT}, "Prompt: the image", [340, 110],
              **POSITIVE),
        node("negative", "CLIPTextEncode", [C1, 150], {"text": GENERIC_NEGATIVE}, "Negative prompt", [340, 110],
              **NEGATIVE),
        node("encode", "VAEEncode", [C1, 310]),
        node("repaint", "MasaCtrlRePaint", [C2, 0], REPAINT, "RePaint the masked region", [300, 330],
              **PHOTO_NODES),
        node("decode", "VAEDecode", [C3, 0]),
        node("paste", "MasaCtrlPasteBack", [C3, 90], size=[200, 66], **PHOTO_NODES),
        node("save", "SaveImage", [C4, 0], {"filename_prefix": "MasaCtrl_repaint"}, size=[280, 260]),
        # The SamplerCustom route.
        node("noise_mask", "SetLatentNoiseMask", [C2, 380], title="Regenerate only the mask", size=[240, 46]),
        node("repaint_sampler", "MasaCtrlRePaintSampler", [C2, 470],
              {"sampler_name": "ddpm", "jump_length": 5, "resamplings": 3}, size=[300, 110], **PHOTO_NODES),
        node("scheduler", "BasicScheduler", [C2, 620], {"scheduler": "normal", "steps": 20, "denoise": 0.5},
              "BasicScheduler: denoise 0.5", [300, 110]),
        node("custom", "SamplerCustom", [C3, 200],
              {"add_noise": True, "noise_seed": 42, "control_after_generate": "fixed", "cfg": 7.0},
              "SamplerCustom + RePaint Sampler", [300, 230]),
        node("decode2", "VAEDecode", [C4, 310]),
        node("preview", "PreviewImage", [C4, 400], size=[280, 220]),
    ]
    links = [
        ("ckpt", "CLIP", "positive", "clip"),
        ("ckpt", "CLIP", "negative", "clip"),
        ("photo", "IMAGE", "encode", "pixels"),
        ("ckpt", "VAE", "encode", "vae"),
        ("ckpt", "MODEL", "repaint", "model"),
        ("positive", "CONDITIONING", "repaint", "positive"),
        ("negative", "CONDITIONING", "repaint", "negative"),
        ("encode", "LATENT", "repaint", "latent_image"),
        ("photo", "MASK", "repaint", "mask"),
        ("repaint", "LATENT", "decode", "samples"),
        ("ckpt", "VAE", "decode", "vae"),
        ("photo", "IMAGE", "paste", "original"),
        ("decode", "IMAGE", "paste", "generated"),
        ("photo", "MASK", "paste", "mask"),
        ("paste", "image", "save", "images"),
        ("encode", "LATENT", "noise_mask", "samples"),
        ("photo", "MASK", "noise_mask", "mask"),
        ("ckpt", "MODEL", "scheduler", "model"),
        ("ckpt", "MODEL", "custom", "model"),
        ("positive", "CONDITIONING", "custom", "positive"),
        ("negative", "CONDITIONING", "custom", "negative"),
        ("repaint_sampler", "SAMPLER", "custom", "sampler"),
        ("scheduler", "SIGMAS", "custom", "sigmas"),
        ("noise_mask", "LATENT", "custom", "latent_image"),
        ("custom", "output", "decode2", "samples"),
        ("ckpt", "VAE", "decode2", "vae"),
        ("decode2", "IMAGE", "preview", "images"),
    ]
    return {"nodes": nodes, "links": links}
