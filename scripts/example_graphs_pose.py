"""Node and link list of the pose repair example: repair the legs of an extended photo with an edited pose.
Used by export_example_workflows.py, which builds it in the real front end and exports it."""
from __future__ import annotations

from workflow_graph import CHECKPOINT, NEGATIVE, NOTE, OPENPOSE_CONTROLNET, POSITIVE, node

POSE_PHOTO = "masactrl_pose_photo.png"
LEGS_PROMPT = "a full-body photo of a person standing, legs, trousers, shoes, natural light"
LEGS_NEGATIVE = "extra legs, three legs, crossed legs, deformed feet, blurry"

C0, C1, C2, C3, C4, C5, C6, C7, C8 = 0, 420, 880, 1220, 1740, 2100, 2460, 2720, 3020

NOTE_POSE = f"""MasaCtrl Suite: repair the legs of an extended photo with an edited pose

Put a photo whose feet are cut off in ComfyUI/input as {POSE_PHOTO}; the OpenPose weights (body_pose_model.pth from lllyasviel/Annotators) in models/openpose; {OPENPOSE_CONTROLNET} in models/controlnet.

1. Extend Canvas adds 256 px at the bottom (mask = the new area, feathered).
2. OpenPose Detect finds the person on the extended canvas (the legs it cannot see are missing).
3. Pose Editor: press Run once to show the detected pose over the image, then drag the hips, knees and ankles to where the legs should be (delete or hide wrong points, + Person if nobody was found; Ctrl+Z undoes). Your edit is saved in the workflow.
4. The edited pose image guides the openpose ControlNet while the sampler inpaints only the masked new area (Set Latent Noise Mask); Paste Back keeps the original pixels bit-exact.

Run again after editing: only the editor and what follows it re-run."""


def pose_repair():
    nodes = [
        node("note", "Note", [C0, 0], {"text": NOTE_POSE}, "About this workflow", [380, 420], **NOTE),
        node("ckpt", "CheckpointLoaderSimple", [C0, 480], {"ckpt_name": CHECKPOINT}, size=[315, 98]),
        node("photo", "LoadImage", [C0, 640], {"image": POSE_PHOTO}, "The photo (feet cut off)", [315, 314]),
        node("extend", "MasaCtrlExtendCanvas", [C1, 0], {"mode": "pixels", "bottom": 256}),
        node("positive", "CLIPTextEncode", [C1, 640], {"text": LEGS_PROMPT}, "Prompt: the whole person",
              [400, 150], **POSITIVE),
        node("negative", "CLIPTextEncode", [C1, 830], {"text": LEGS_NEGATIVE}, "Negative prompt", [400, 150],
              **NEGATIVE),
        node("detect", "MasaCtrlOpenPoseDetect", [C2, 0],
              {"detect_hands": False, "detect_face": False, "resolution": 512}, size=[280, 130]),
        node("encode", "VAEEncode", [C2, 640]),
        node("editor", "MasaCtrlPoseEditor", [C3, 0], title="Pose Editor: fix the legs here", size=[460, 620]),
        node("noise_mask", "SetLatentNoiseMask", [C3, 700], title="Inpaint only the new area"),
        node("controlnet", "ControlNetLoader", [C3, 830], {"control_net_name": OPENPOSE_CONTROLNET},
              size=[315, 58]),
        node("pose_preview", "PreviewImage", [C4, 0], title="Edited pose (ControlNet hint)", size=[300, 330]),
        node("apply", "ControlNetApplyAdvanced", [C4, 640],
              {"strength": 1.0, "start_percent": 0.0, "end_percent": 1.0}),
        node("sampler", "KSampler", [C5, 300],
              {"seed": 42, "control_after_generate": "fixed", "steps": 25, "cfg": 7.0, "sampler_name": "dpmpp_2m",
               "scheduler": "karras", "denoise": 1.0}),
        node("decode", "VAEDecode", [C6, 300]),
        node("paste", "MasaCtrlPasteBack", [C7, 300], size=[260, 70]),
        node("save", "SaveImage", [C8, 300], {"filename_prefix": "MasaCtrl_pose_repair"}, size=[420, 460]),
    ]
    links = [
        ("photo", "IMAGE", "extend", "image"),
        ("ckpt", "CLIP", "positive", "clip"),
        ("ckpt", "CLIP", "negative", "clip"),
        ("extend", "image", "detect", "image"),
        ("extend", "image", "editor", "image"),
        ("detect", "pose", "editor", "pose"),
        ("extend", "image", "encode", "pixels"),
        ("ckpt", "VAE", "encode", "vae"),
        ("encode", "LATENT", "noise_mask", "samples"),
        ("extend", "mask", "noise_mask", "mask"),
        ("editor", "pose_image", "pose_preview", "images"),
        ("positive", "CONDITIONING", "apply", "positive"),
        ("negative", "CONDITIONING", "apply", "negative"),
        ("controlnet", "CONTROL_NET", "apply", "control_net"),
        ("editor", "pose_image", "apply", "image"),
        ("ckpt", "MODEL", "sampler", "model"),
        ("apply", "positive", "sampler", "positive"),
        ("apply", "negative", "sampler", "negative"),
        ("noise_mask", "LATENT", "sampler", "latent_image"),
        ("sampler", "LATENT", "decode", "samples"),
        ("ckpt", "VAE", "decode", "vae"),
        ("extend", "image", "paste", "original"),
        ("decode", "IMAGE", "paste", "generated"),
        ("extend", "mask", "paste", "mask"),
        ("paste", "image", "save", "images"),
    ]
    return {"nodes": nodes, "links": links}
