"""OpenPose detection with controlnet_aux's networks, loaded from ComfyUI's models/openpose folder (the files of
lllyasviel's Annotators: body_pose_model.pth, and for hands/face hand_pose_model.pth and facenet.pth) and run
under ComfyUI's model management. Files comfyui_controlnet_aux already downloaded are used where they are (read
only). controlnet_aux is imported on first load, not when ComfyUI starts."""
from __future__ import annotations

import importlib.util
import os
import pickle
from dataclasses import dataclass

import comfy.model_management
import comfy.model_patcher
import folder_paths
import numpy as np
import torch

from . import hf_folders

MODEL_FOLDER = "openpose"
WEIGHTS = {"body": "body_pose_model.pth", "hand": "hand_pose_model.pth", "face": "facenet.pth"}
HF_REPO = "lllyasviel/Annotators"
DOWNLOAD_PAGE = f"https://huggingface.co/{HF_REPO}/tree/main"
INSTALL = "pip install controlnet_aux"

hf_folders.register(MODEL_FOLDER)


def controlnet_aux_folders() -> list[str]:
    """Where comfyui_controlnet_aux keeps the same files: <ckpts>/lllyasviel/Annotators (its custom_hf_download),
    <ckpts> being $AUX_ANNOTATOR_CKPTS_PATH (which that pack sets from its config.yaml when it loads) or the
    ckpts folder of a custom node folder (its default; any folder name, as Manager and zip installs differ)."""
    roots = [os.environ["AUX_ANNOTATOR_CKPTS_PATH"]] if os.environ.get("AUX_ANNOTATOR_CKPTS_PATH") else []
    for custom_nodes in folder_paths.get_folder_paths("custom_nodes"):
        try:
            roots += [os.path.join(custom_nodes, name, "ckpts") for name in sorted(os.listdir(custom_nodes))]
        except OSError:
            continue
    folders = (os.path.join(root, *HF_REPO.split("/")) for root in roots)
    return list(dict.fromkeys(f for f in folders if os.path.isdir(f)))


def find_weight(name: str) -> str | None:
    """models/openpose (and extra_model_paths.yaml's openpose entries) first, then comfyui_controlnet_aux's."""
    path = folder_paths.get_full_path(MODEL_FOLDER, name)
    if path:
        return path
    return next((os.path.join(f, name) for f in controlnet_aux_folders() if os.path.isfile(os.path.join(f, name))),
                None)


def controlnet_aux_missing(node: str, error: Exception | None = None) -> str:
    detail = f" ({error})" if error else ""
    return (f"{node}: the controlnet_aux package, which runs OpenPose, is not installed or cannot be imported"
            f"{detail}. Install it into the Python that runs ComfyUI: {INSTALL}, then restart ComfyUI.")


def missing_weights(node: str, hands: bool, face: bool, inputs: tuple[str, str]) -> str | None:
    """None when every file asked for is found; else which are missing, where it looked and how to download them.
    `inputs`: the node's names of its hands and face switches, to say which switch needs which file."""
    why = {"body": "", "hand": f" (for {inputs[0]}; or turn it off)", "face": f" (for {inputs[1]}; or turn it off)"}
    missing = [part for part in ["body"] + ["hand"] * bool(hands) + ["face"] * bool(face)
               if find_weight(WEIGHTS[part]) is None]
    if not missing:
        return None
    folders = folder_paths.get_folder_paths(MODEL_FOLDER)
    aux = controlnet_aux_folders()
    looked = ", ".join(aux) if aux else "ckpts/lllyasviel/Annotators: none under custom_nodes"
    names = " ".join(WEIGHTS[p] for p in missing)
    return (f"{node}: {', '.join(WEIGHTS[p] + why[p] for p in missing)} not found. Looked in the openpose model "
            f"folder ({', '.join(folders)}) and in comfyui_controlnet_aux's checkpoints ({looked}). Download the "
            f"file(s) from {DOWNLOAD_PAGE} into {folders[0]}, e.g.: hf download {HF_REPO} {names} "
            f"--local-dir \"{folders[0]}\"")


def openpose_problem(node: str, hands: bool, face: bool, inputs: tuple[str, str]) -> str | None:
    """For validation, before anything runs: controlnet_aux not installed, or files missing; None when all is there."""
    try:
        installed = importlib.util.find_spec("controlnet_aux") is not None  # cheap: nothing is imported
    except ValueError:  # in sys.modules without a spec: imported some other way, so present
        installed = True
    return missing_weights(node, hands, face, inputs) if installed else controlnet_aux_missing(node)


def weight_paths(hands: bool, face: bool, node: str = "OpenPose Detect",
                 inputs: tuple[str, str] = ("detect_hands", "detect_face")) -> dict[str, str]:
    """part -> weight file; FileNotFoundError with missing_weights' message otherwise."""
    problem = missing_weights(node, hands, face, inputs)
    if problem:
        raise FileNotFoundError(problem)
    return {part: find_weight(WEIGHTS[part]) for part in ["body"] + ["hand"] * bool(hands) + ["face"] * bool(face)}


@dataclass
class OpenPoseModel:
    """controlnet_aux's OpenposeDetector and a ModelPatcher holding its networks (what the loader node outputs)."""
    detector: object
    patcher: comfy.model_patcher.ModelPatcher
    parts: frozenset

    def load(self):
        """The detector, its networks moved where ComfyUI's model management puts them."""
        comfy.model_management.load_models_gpu([self.patcher])
        return self.detector


SAFE_TORCH = (2, 6)  # torch.load reads only tensors and plain containers by default from 2.6 on


def check_safe_loading(node: str):
    """controlnet_aux reads the .pth files with plain torch.load; before torch 2.6 that unpickles anything, so
    a crafted file would run its code. Refuse there instead of pinning torch (an upgrade through ComfyUI
    Manager could replace a user's CUDA build)."""
    version = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
    if version < SAFE_TORCH:
        raise RuntimeError(f"{node}: torch {torch.__version__} would load the OpenPose .pth files with pickle, which "
                           "can run code hidden in a file; update torch to 2.6 or newer (the ComfyUI install guide "
                           "has the command for your GPU) to use OpenPose.")


def load_openpose(paths: dict[str, str], node: str = "OpenPose Detect") -> OpenPoseModel:
    """controlnet_aux's OpenposeDetector on these files (part -> path)."""
    try:
        from controlnet_aux.open_pose import Body, Face, Hand, OpenposeDetector
    except ImportError as error:  # also a broken install (a dependency of its own missing): say what to do
        raise ImportError(controlnet_aux_missing(node, error)) from error

    check_safe_loading(node)
    try:
        body = Body(paths["body"])
        hand = Hand(paths["hand"]) if "hand" in paths else None
        face = Face(paths["face"]) if "face" in paths else None
    except pickle.UnpicklingError as error:  # torch's weights-only loader met a pickle that would run code
        raise ValueError(f"{node}: one of {', '.join(paths.values())} is not a plain weights file: loading it "
                         f"would run code it carries ({str(error).splitlines()[0]}). Delete it and download the "
                         f"file again from {DOWNLOAD_PAGE}.") from None
    nets = torch.nn.ModuleDict({name: part.model for name, part in (("body", body), ("hand", hand), ("face", face))
                                if part is not None})
    patcher = comfy.model_patcher.ModelPatcher(nets, load_device=comfy.model_management.get_torch_device(),
                                               offload_device=comfy.model_management.unet_offload_device())
    return OpenPoseModel(OpenposeDetector(body, hand, face), patcher, frozenset(nets.keys()))


def _flat(keypoints, width: int, height: int):
    """controlnet_aux keypoints (normalised, None or negative when missing) -> pixel [x, y, c] * n."""
    if not keypoints:
        return None
    return [v for k in keypoints for v in ((k.x * width, k.y * height, 1.0) if k is not None and k.x >= 0
                                           and k.y >= 0 else (0.0, 0.0, 0.0))]


def detect_frame(detector, image: np.ndarray, resolution: int, hands: bool, face: bool) -> dict:
    """One RGB uint8 image -> a POSE_KEYPOINT frame in the image's pixels. Detection runs with the short
    side at `resolution` (rounded to 64, as controlnet_aux does)."""
    from controlnet_aux.util import resize_image

    height, width = image.shape[:2]
    poses = detector.detect_poses(resize_image(image, resolution), include_hand=hands, include_face=face)
    people = [{"pose_keypoints_2d": _flat(p.body.keypoints, width, height),
               "face_keypoints_2d": _flat(p.face, width, height),
               "hand_left_keypoints_2d": _flat(p.left_hand, width, height),
               "hand_right_keypoints_2d": _flat(p.right_hand, width, height)} for p in poses]
    return {"people": people, "canvas_width": width, "canvas_height": height}


def detect(model: OpenPoseModel, images: torch.Tensor, resolution: int, hands: bool, face: bool, progress):
    """One POSE_KEYPOINT frame per image of a ComfyUI IMAGE batch; progress.update(1) after each, Cancel between."""
    detector = model.load()
    pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    frames = []
    for picture in pixels:
        comfy.model_management.throw_exception_if_processing_interrupted()
        frames.append(detect_frame(detector, picture, resolution, hands, face))
        progress.update(1)
    return frames

