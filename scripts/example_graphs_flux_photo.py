"""Example graphs of the real-photo pieces on Flux: edit a real photo (Flow Inversion + Follow Inversion +
MasaCtrl on Flux.1 dev) and complete a cropped photo with Flux.1 Fill (BLIP caption, Extend Canvas, Grid
Sampling, RePaint, Paste Back). Built by export_example_workflows.py in the real front end, like the others."""
from __future__ import annotations

from example_graphs_dit import FLUX_MODELS, note_files
from example_graphs_masks import PHOTO, PHOTO_SOURCE, PHOTO_TARGET
from example_graphs_photo import BLIP_MODEL, BLIP_SUFFIX, CAPTION, CROPPED_PHOTO, PHOTO_NODES
from workflow_graph import NOTE, POSITIVE, node

FILL_MODEL = "flux1-fill-dev.safetensors"
TITLES = {"edit": "Edit a real photo with Flux: flow inversion + MasaCtrl",
          "fill": "Complete a cropped photo with Flux.1 Fill"}
STEPS = 28
C0, C1, C2, C3, C4 = 0, 400, 780, 1120, 1450


def _flux_loaders(unet: str, top: int):
    return [
        node("unet", "UNETLoader", [C0, top], {"unet_name": unet, "weight_dtype": "default"}, size=[315, 82]),
        node("clip", "DualCLIPLoader", [C0, top + 130], {"clip_name1": FLUX_MODELS["clip_l"],
                                                        "clip_name2": FLUX_MODELS["t5"], "type": "flux",
                                                        "device": "default"}, size=[315, 130]),
        node("vae", "VAELoader", [C0, top + 310], {"vae_name": FLUX_MODELS["vae"]}, size=[315, 58]),
    ]


NOTE_EDIT = f"""MasaCtrl Suite: {TITLES["edit"]}

{PHOTO} is a drawn stand-in that the pack puts in ComfyUI/input: replace it with your own picture under that name, or pick another in Load Image (sides multiples of 16; 1024 px suits Flux), and describe it as the source prompt.

- Flow Inversion runs Flux backwards from the photo to noise along the sampler's schedule ({STEPS} steps, simple) with FireFlow's solver, and records the path. SamplerCustomAdvanced starts from its noise (a flow model's sampler starts from the noise alone at sigma 1, so a start latent would be lost); its latent output gives the batch (source + target) and size.
- Follow Inversion makes image 0 of the batch follow that path, so it reconstructs the photo exactly, and MasaCtrl's target (image 1, "{PHOTO_TARGET}") reads the photo's image keys and values in the later blocks.
- Sample with the inversion's steps and scheduler (BasicScheduler), euler, FluxGuidance 3.5 as in the inversion.

Files (the Missing Models dialog offers them when absent):
{{files}}"""

NOTE_FILL = f"""MasaCtrl Suite: {TITLES["fill"]}

{CROPPED_PHOTO} is a drawn stand-in that the pack puts in ComfyUI/input: replace it with your own picture under that name, or pick another in Load Image. BLIP: all files of https://huggingface.co/Salesforce/{BLIP_MODEL} in models/blip/{BLIP_MODEL}.

1. BLIP Caption describes the photo (+ "{BLIP_SUFFIX.lstrip(', ')}"), encoded by Flux's text encoders; FluxGuidance 30 (Flux Fill's setting).
2. Extend Canvas adds 256 px at the bottom; InpaintModelConditioning gives Flux Fill the canvas and the mask.
3. Grid Sampling runs Flux Fill on 1024 px tiles, each tile with its own place in the image (positions, Fill channels cropped per tile); KSampler fills the new area.
4. RePaint re-noises KSampler's result to denoise 0.5 along the flow and samples it again with jumps (euler: ddpm is for SD models), to blend the seam.
5. Paste Back keeps the original pixels exactly.

Files (the Missing Models dialog offers them when absent):
{{files}}"""


def flux_real_photo_editing():
    files = [FLUX_MODELS["unet"], FLUX_MODELS["clip_l"], FLUX_MODELS["t5"], FLUX_MODELS["vae"]]
    nodes = [
        node("note", "Note", [C0, 0], {"text": NOTE_EDIT.format(files=note_files(files))}, "About this workflow",
             [360, 330], **NOTE),
        *_flux_loaders(FLUX_MODELS["unet"], 380),
        node("photo", "LoadImage", [C1, 0], {"image": PHOTO}, "The photo (source)", [300, 300]),
        node("source", "CLIPTextEncode", [C1, 350], {"text": PHOTO_SOURCE}, "Source prompt: the photo",
             [340, 110], **POSITIVE),
        node("target", "CLIPTextEncode", [C1, 500], {"text": PHOTO_TARGET}, "Target prompt: the edit",
             [340, 110], **POSITIVE),
        node("encode", "VAEEncode", [C1, 650]),
        node("source_guidance", "FluxGuidance", [C1, 740], {"guidance": 3.5}, size=[260, 58]),
        node("invert", "MasaCtrlFlowInversion", [C2, 0],
             {"steps": STEPS, "cfg": 1.0, "scheduler": "simple", "solver": "fireflow", "batch_size": 2},
             size=[300, 230]),
        node("follow", "MasaCtrlFollowInversion", [C2, 280], {"source_index": 0}, size=[300, 80]),
        node("masactrl", "MasaCtrlMutualSelfAttention", [C2, 410], size=[300, 300]),
        node("batch", "MasaCtrlBatchConditioning", [C2, 760], size=[260, 46]),
        node("guidance", "FluxGuidance", [C3, 0], {"guidance": 3.5}, size=[260, 58]),
        node("guider", "BasicGuider", [C3, 110], size=[260, 46]),
        node("select", "KSamplerSelect", [C3, 200], {"sampler_name": "euler"}, size=[260, 58]),
        node("scheduler", "BasicScheduler", [C3, 310], {"scheduler": "simple", "steps": STEPS, "denoise": 1.0},
             "BasicScheduler: the inversion's steps", [260, 110]),
        node("sampler", "SamplerCustomAdvanced", [C4, 0], size=[280, 110]),
        node("decode", "VAEDecode", [C4, 160]),
        node("save", "SaveImage", [C4, 250], {"filename_prefix": "MasaCtrl_Flux_photo"}, size=[300, 320]),
    ]
    links = [
        ("clip", "CLIP", "source", "clip"),
        ("clip", "CLIP", "target", "clip"),
        ("photo", "IMAGE", "encode", "pixels"),
        ("vae", "VAE", "encode", "vae"),
        ("source", "CONDITIONING", "source_guidance", "conditioning"),
        ("unet", "MODEL", "invert", "model"),
        ("source_guidance", "CONDITIONING", "invert", "positive"),
        ("encode", "LATENT", "invert", "latent"),
        ("unet", "MODEL", "follow", "model"),
        ("invert", "inversion", "follow", "inversion"),
        ("follow", "MODEL", "masactrl", "model"),
        ("source", "CONDITIONING", "batch", "source"),
        ("target", "CONDITIONING", "batch", "target"),
        ("batch", "CONDITIONING", "guidance", "conditioning"),
        ("masactrl", "MODEL", "guider", "model"),
        ("guidance", "CONDITIONING", "guider", "conditioning"),
        ("unet", "MODEL", "scheduler", "model"),
        ("invert", "noise", "sampler", "noise"),
        ("guider", "GUIDER", "sampler", "guider"),
        ("select", "SAMPLER", "sampler", "sampler"),
        ("scheduler", "SIGMAS", "sampler", "sigmas"),
        ("invert", "latent", "sampler", "latent_image"),
        ("sampler", "output", "decode", "samples"),
        ("vae", "VAE", "decode", "vae"),
        ("decode", "IMAGE", "save", "images"),
    ]
    return {"nodes": nodes, "links": links}


def flux_fill_complete_cropped_photo():
    files = [FILL_MODEL, FLUX_MODELS["clip_l"], FLUX_MODELS["t5"], FLUX_MODELS["vae"]]
    nodes = [
        node("note", "Note", [C0, 0], {"text": NOTE_FILL.format(files=note_files(files))}, "About this workflow",
             [360, 330], **NOTE),
        *_flux_loaders(FILL_MODEL, 380),
        node("photo", "LoadImage", [C1, 0], {"image": CROPPED_PHOTO}, "The photo (feet cut off)", [300, 300]),
        node("blip_loader", "MasaCtrlBLIPLoader", [C1, 350], {"model_name": BLIP_MODEL}, size=[315, 60],
             **PHOTO_NODES),
        node("caption", "MasaCtrlBLIPCaption", [C1, 450], CAPTION, "BLIP Caption: the prompt", [340, 330],
             **POSITIVE),
        node("guidance", "FluxGuidance", [C2, 0], {"guidance": 30.0}, size=[260, 58]),
        node("zero", "ConditioningZeroOut", [C2, 100], title="Negative (unused at cfg 1)", size=[260, 26]),
        node("extend", "MasaCtrlExtendCanvas", [C2, 170],
             {"mode": "pixels", "bottom": 256, "fill": "blur", "feather": 32, "seam_band": 8},
             "Extend Canvas: 256 px at the bottom", [320, 386], **PHOTO_NODES),
        node("inpaint", "InpaintModelConditioning", [C2, 600], {"noise_mask": True}, size=[260, 138]),
        node("grid", "MasaCtrlGridSampling", [C3, 0],
             {"tile_width": 1024, "tile_height": 1024, "overlap": 256, "blend": "linear", "tiles_per_batch": 0},
             "Grid Sampling: 1024 px tiles", [300, 180], **PHOTO_NODES),
        node("sampler", "KSampler", [C3, 230],
             {"seed": 42, "control_after_generate": "fixed", "steps": STEPS, "cfg": 1.0, "sampler_name": "euler",
              "scheduler": "simple", "denoise": 1.0}, "1st pass: fill the new area", [270, 262]),
        node("repaint", "MasaCtrlRePaint", [C3, 540],
             {"seed": 42, "control_after_generate": "fixed", "steps": 20, "cfg": 1.0, "sampler_name": "euler",
              "scheduler": "simple", "denoise": 0.5, "jump_length": 5, "resamplings": 3},
             "2nd pass: RePaint the seam", [300, 330], **PHOTO_NODES),
        node("decode", "VAEDecode", [C4, 0]),
        node("paste", "MasaCtrlPasteBack", [C4, 90], size=[200, 66], **PHOTO_NODES),
        node("save", "SaveImage", [C4, 200], {"filename_prefix": "MasaCtrl_Flux_fill"}, size=[300, 300]),
    ]
    links = [
        ("blip_loader", "blip_model", "caption", "blip_model"),
        ("photo", "IMAGE", "caption", "image"),
        ("clip", "CLIP", "caption", "clip"),
        ("caption", "conditioning", "guidance", "conditioning"),
        ("caption", "conditioning", "zero", "conditioning"),
        ("photo", "IMAGE", "extend", "image"),
        ("guidance", "CONDITIONING", "inpaint", "positive"),
        ("zero", "CONDITIONING", "inpaint", "negative"),
        ("vae", "VAE", "inpaint", "vae"),
        ("extend", "image", "inpaint", "pixels"),
        ("extend", "mask", "inpaint", "mask"),
        ("unet", "MODEL", "grid", "model"),
        ("grid", "MODEL", "sampler", "model"),
        ("inpaint", "positive", "sampler", "positive"),
        ("inpaint", "negative", "sampler", "negative"),
        ("inpaint", "latent", "sampler", "latent_image"),
        ("grid", "MODEL", "repaint", "model"),
        ("inpaint", "positive", "repaint", "positive"),
        ("inpaint", "negative", "repaint", "negative"),
        ("sampler", "LATENT", "repaint", "latent_image"),
        ("extend", "mask", "repaint", "mask"),
        ("repaint", "LATENT", "decode", "samples"),
        ("vae", "VAE", "decode", "vae"),
        ("extend", "image", "paste", "original"),
        ("decode", "IMAGE", "paste", "generated"),
        ("extend", "mask", "paste", "mask"),
        ("paste", "image", "save", "images"),
    ]
    return {"nodes": nodes, "links": links}
