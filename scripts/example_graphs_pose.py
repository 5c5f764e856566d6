"""Node and link list of the pose repair example: repair the legs of an extended photo with an edited pose.
Used by export_example_workflows.py, which builds it in the real front end and exports it."""
from __future__ import annotations

from workflow_graph import CHECKPOINT, NEGATIVE, NOTE, OPENPOSE_CONTROLNET, POSITIVE, node

POSE_PHOTO = "masactrl_pose_photo.png"
LEGS_PROMPT = "a full-body photo of a person standing, legs, trousers, shoes, natural light"
LEGS_NEGATIVE = "extra legs, three legs, crossed legs, deformed feet, blurry"

C0, C1, C2, C3, C4, C5 = 0, 360, 690, 980, 1350, 1650

NOTE_POSE = f"""MasaCtrl Suite: repair the legs of an extended photo with an edited pose

{POSE_PHOTO} (a person cut off at the knees) is a drawn stand-in that the pack puts in ComfyUI/input: replace it with your own picture under that name, or pick another in Load Image.
Models: the OpenPose weights in models/openpose: https://huggingface.co/lllyasviel/Annotators/resolve/main/body_pose_model.pth; {OPENPOSE_CONTROLNET} in models/controlnet (the Missing Models dialog offers it).

1. Extend Canvas adds 256 px at the bottom (mask = the new area, feathered).
2. OpenPose Detect finds the person on the extended canvas (the legs it cannot see are missing).
3. Pose Editor: press Run once to show the detected pose over the image, then drag the hips, knees and ankles to where the legs should be (delete or hide wrong points, + Person if nobody was found; Ctrl+Z undoes). Your edit is saved in the workflow.
4. The edited pose image guides the openpose ControlNet while the sampler inpaints only the masked new area (Set Latent Noise Mask); Paste Back keeps the original pixels bit-exact.

Run again after editing: only the editor and what follows it re-run."""


def pose_repair():
    nodes = [
        node("note", "Note", [C0, 0], {"text": NOTE_POSE}, "About this workflow", [330, 360], **NOTE),
        node("ckpt", "CheckpointLoaderSimple", [C0, 410], {"ckpt_name": CHECKPOINT}, size=[315, 98]),
        node("photo", "LoadImage", [C0, 560], {"image": POSE_PHOTO}, "The photo (feet cut off)", [300, 300]),
        node("extend", "MasaCtrlExtendCanvas", [C1, 0], {"mode": "pixels", "bottom": 256}, size=[300, 386]),
        node("positive", "CLIPTextEncode", [C1, 440], {"text": LEGS_PROMPT}, "Prompt: the whole person",
              [300, 110], **POSITIVE),
        node("negative", "CLIPTextEncode", [C1, 590], {"text": LEGS_NEGATIVE}, "Negative prompt", [300, 110],
              **NEGATIVE),
        node("detect", "MasaCtrlOpenPoseDetect", [C2, 0],
              {"detect_hands": False, "detect_face": False, "resolution": 512}, size=[260, 130]),
        node("encode", "VAEEncode", [C2, 180]),
        node("noise_mask", "SetLatentNoiseMask", [C2, 270], title="Inpaint only the new area", size=[240, 46]),
        node("controlnet", "ControlNetLoader", [C2, 360], {"control_net_name": OPENPOSE_CONTROLNET},
              size=[260, 58]),
        node("editor", "MasaCtrlPoseEditor", [C3, 0], title="Pose Editor: fix the legs here", size=[340, 460]),
        node("pose_preview", "PreviewImage", [C3, 510], title="Edited pose (ControlNet hint)", size=[240, 200]),
        node("apply", "ControlNetApplyAdvanced", [C4, 0],
              {"strength": 1.0, "start_percent": 0.0, "end_percent": 1.0}, size=[270, 186]),
        node("sampler", "KSampler", [C4, 230],
              {"seed": 42, "control_after_generate": "fixed", "steps": 25, "cfg": 7.0, "sampler_name": "dpmpp_2m",
               "scheduler": "karras", "denoise": 1.0}, size=[270, 262]),
        node("decode", "VAEDecode", [C5, 0]),
        node("paste", "MasaCtrlPasteBack", [C5, 90], size=[210, 66]),
        node("save", "SaveImage", [C5, 200], {"filename_prefix": "MasaCtrl_pose_repair"}, size=[210, 260]),
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
