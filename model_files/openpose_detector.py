"""OpenPose detection with controlnet_aux's networks, loaded from ComfyUI's models/openpose folder (the files of
lllyasviel's Annotators: body_pose_model.pth, and for hands/face hand_pose_model.pth and facenet.pth) and run
under ComfyUI's model management. controlnet_aux is imported on first load, not when ComfyUI starts."""
from __future__ import annotations

from dataclasses import dataclass

import comfy.model_management
import comfy.model_patcher
import folder_paths
import numpy as np
import torch

from . import hf_folders

MODEL_FOLDER = "openpose"
WEIGHTS = {"body": "body_pose_model.pth", "hand": "hand_pose_model.pth", "face": "facenet.pth"}

hf_folders.register(MODEL_FOLDER)


def weight_paths(hands: bool, face: bool, node: str = "OpenPose Detect") -> dict[str, str]:
    """part -> file in models/openpose; an error naming the folders and the missing files otherwise."""
    wanted = ["body"] + ["hand"] * hands + ["face"] * face
    paths = {part: folder_paths.get_full_path(MODEL_FOLDER, WEIGHTS[part]) for part in wanted}
    missing = [WEIGHTS[part] for part, path in paths.items() if path is None]
    if missing:
        folders = folder_paths.get_folder_paths(MODEL_FOLDER)
        raise FileNotFoundError(
            f"{node}: {', '.join(missing)} not found in the openpose model folder ({', '.join(folders)}). "
            f"Put the files of lllyasviel/Annotators there: {WEIGHTS['body']}, and {WEIGHTS['hand']} for "
            f"detect_hands, {WEIGHTS['face']} for detect_face.")
    return paths


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


def load_openpose(paths: dict[str, str]) -> OpenPoseModel:
    """controlnet_aux's OpenposeDetector on these files (part -> path)."""
    from controlnet_aux.open_pose import Body, Face, Hand, OpenposeDetector

    body = Body(paths["body"])
    hand = Hand(paths["hand"]) if "hand" in paths else None
    face = Face(paths["face"]) if "face" in paths else None
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

