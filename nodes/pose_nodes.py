"""Pose: OpenPose detection (controlnet_aux), the in-node pose editor and the pose renderer.

The weights live in models/openpose (registered here with folder_paths), the files of lllyasviel's
Annotators: body_pose_model.pth, and for hands/face hand_pose_model.pth and facenet.pth.
"""
from __future__ import annotations

import os

import comfy.model_management
import comfy.model_patcher
import comfy.utils
import folder_paths
import numpy as np
import torch
from comfy_api.latest import io, ui

from .pose_format import PoseFormatError, empty_frame, parse_pose_keypoint, render_frame

PoseKeypoint = io.Custom("POSE_KEYPOINT")
MODEL_FOLDER = "openpose"
WEIGHTS = {"body": "body_pose_model.pth", "hand": "hand_pose_model.pth", "face": "facenet.pth"}

folder_paths.add_model_folder_path(MODEL_FOLDER, os.path.join(folder_paths.models_dir, MODEL_FOLDER))
_loaded: dict = {}  # the one detector in memory: {"key": (path, mtime)..., "detector", "patcher"}


def weight_paths(hands: bool, face: bool) -> dict[str, str]:
    """part -> file in models/openpose; an error naming the folders and the missing files otherwise."""
    wanted = ["body"] + ["hand"] * hands + ["face"] * face
    paths = {part: folder_paths.get_full_path(MODEL_FOLDER, WEIGHTS[part]) for part in wanted}
    missing = [WEIGHTS[part] for part, path in paths.items() if path is None]
    if missing:
        folders = folder_paths.get_folder_paths(MODEL_FOLDER)
        raise FileNotFoundError(
            f"OpenPose Detect: {', '.join(missing)} not found in the openpose model folder ({', '.join(folders)}). "
            f"Put the files of lllyasviel/Annotators there: {WEIGHTS['body']}, and {WEIGHTS['hand']} for "
            f"detect_hands, {WEIGHTS['face']} for detect_face.")
    return paths


def load_detector(paths: dict[str, str]):
    """controlnet_aux's OpenposeDetector on these files, its networks under ComfyUI's model management."""
    from controlnet_aux.open_pose import Body, Face, Hand, OpenposeDetector

    key = tuple(sorted((part, path, os.path.getmtime(path)) for part, path in paths.items()))
    if _loaded.get("key") != key:
        _loaded.clear()
        body = Body(paths["body"])
        hand = Hand(paths["hand"]) if "hand" in paths else None
        face = Face(paths["face"]) if "face" in paths else None
        nets = torch.nn.ModuleDict({name: part.model for name, part in (("body", body), ("hand", hand),
                                                                        ("face", face)) if part is not None})
        patcher = comfy.model_patcher.ModelPatcher(nets, load_device=comfy.model_management.get_torch_device(),
                                                   offload_device=comfy.model_management.unet_offload_device())
        _loaded.update(key=key, detector=OpenposeDetector(body, hand, face), patcher=patcher)
    comfy.model_management.load_models_gpu([_loaded["patcher"]])
    return _loaded["detector"]


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


def to_image(arrays) -> torch.Tensor:
    return torch.from_numpy(np.stack(arrays)).float() / 255.0


class OpenPoseDetect(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MasaCtrlOpenPoseDetect",
            display_name="OpenPose Detect (MasaCtrl)",
            category="MasaCtrl/pose",
            description="Find people's OpenPose keypoints in each image (controlnet_aux's OpenPose, weights in "
                        "models/openpose). Outputs the pose drawn for the openpose ControlNet and the keypoints "
                        "(POSE_KEYPOINT, the format of comfyui_controlnet_aux) for the Pose Editor.",
            inputs=[
                io.Image.Input("image", tooltip="The photo(s) to find people in; one pose frame per image."),
                io.Boolean.Input("detect_hands", default=False,
                                 tooltip="Also find the 21 points of each hand (needs hand_pose_model.pth)."),
                io.Boolean.Input("detect_face", default=False,
                                 tooltip="Also find the face landmarks (needs facenet.pth)."),
                io.Int.Input("resolution", default=512, min=64, max=2048, step=64,
                             tooltip="Detect at this size of the image's short side; the keypoints are given in "
                                     "the input image's own pixels whatever this is."),
            ],
            outputs=[io.Image.Output(display_name="pose_image"), PoseKeypoint.Output(display_name="pose")],
        )

    @classmethod
    def execute(cls, image, detect_hands, detect_face, resolution) -> io.NodeOutput:
        detector = load_detector(weight_paths(detect_hands, detect_face))
        pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        progress, frames = comfy.utils.ProgressBar(len(pixels)), []
        for picture in pixels:
            comfy.model_management.throw_exception_if_processing_interrupted()
            frames.append(detect_frame(detector, picture, resolution, detect_hands, detect_face))
            progress.update(1)
        rendered = [render_frame(parse_pose_keypoint(f)[0], hands=detect_hands, face=detect_face) for f in frames]
        return io.NodeOutput(to_image(rendered), frames)


def parse_input(value, node: str, name: str, fix: str) -> list[dict]:
    try:
        return parse_pose_keypoint(value, name)
    except PoseFormatError as error:
        raise ValueError(f"{node}: {error}; {fix}") from None


class PoseEditor(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MasaCtrlPoseEditor",
            display_name="Pose Editor (MasaCtrl)",
            category="MasaCtrl/pose",
            description="Edit OpenPose keypoints by hand in the node: drag joints, hide, delete or restore single "
                        "points, add or remove people, mirror, undo. Starts from the pose input (e.g. OpenPose "
                        "Detect) over the image; the edits are saved in the workflow. Run once to show the input.",
            inputs=[
                PoseKeypoint.Input("pose", optional=True,
                                   tooltip="The pose to start from (POSE_KEYPOINT, e.g. from OpenPose Detect or "
                                           "comfyui_controlnet_aux); shown in the editor after a run."),
                io.Image.Input("image", optional=True,
                               tooltip="Shown behind the pose; sets the canvas size of the output."),
                io.String.Input("pose_json", default="",
                                tooltip="The edited pose (OpenPose JSON), written by the editor; empty: the pose "
                                        "input unchanged."),
            ],
            outputs=[PoseKeypoint.Output(display_name="pose"), io.Image.Output(display_name="pose_image")],
        )

    @classmethod
    def execute(cls, pose_json, pose=None, image=None) -> io.NodeOutput:
        node = "Pose Editor"
        received = parse_input(pose, node, "pose", "connect a POSE_KEYPOINT output") if pose is not None else None
        if pose_json.strip():
            frames = parse_input(pose_json, node, "pose_json", "press Reset in the editor to start from the input")
        else:
            height, width = image.shape[1:3] if image is not None else (512, 512)
            frames = received or [empty_frame(width, height)]
        size = (image.shape[2], image.shape[1]) if image is not None else (None, None)
        rendered = to_image([render_frame(frame, *size) for frame in frames])
        frames = [rescale(frame, *size) for frame in frames]
        shown = {"input_pose": [received], "canvas": [list(size)]}
        if image is not None:
            shown["background"] = ui.ImageSaveHelper.save_images(image[:1], "masactrl_pose_background",
                                                                 io.FolderType.temp, cls, compress_level=1)
        return io.NodeOutput(frames, rendered, ui=shown)


def rescale(frame: dict, width: int | None, height: int | None) -> dict:
    """The frame moved onto a width x height canvas (unchanged for None)."""
    if width is None or (width, height) == (frame["canvas_width"], frame["canvas_height"]):
        return frame
    sx, sy = width / frame["canvas_width"], height / frame["canvas_height"]
    people = [{part: None if values is None else [v * (sx, sy, 1)[i % 3] for i, v in enumerate(values)]
               for part, values in person.items()} for person in frame["people"]]
    return {"people": people, "canvas_width": width, "canvas_height": height}


class PoseRender(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MasaCtrlPoseRender",
            display_name="Render Pose (MasaCtrl)",
            category="MasaCtrl/pose",
            description="Draw POSE_KEYPOINT in the standard OpenPose colours on black, the hint image of the "
                        "openpose ControlNet; one image per frame.",
            inputs=[
                PoseKeypoint.Input("pose", tooltip="Keypoints from OpenPose Detect, the Pose Editor or "
                                                   "comfyui_controlnet_aux."),
                io.Int.Input("width", default=0, min=0, max=16384, step=8,
                             tooltip="Output width in pixels; 0: the pose's canvas width."),
                io.Int.Input("height", default=0, min=0, max=16384, step=8,
                             tooltip="Output height in pixels; 0: the pose's canvas height."),
                io.Int.Input("limb_width", default=4, min=1, max=64,
                             tooltip="Half-thickness of the limbs in pixels (OpenPose standard: 4)."),
                io.Boolean.Input("draw_body", default=True, tooltip="Draw the 18 body points and limbs."),
                io.Boolean.Input("draw_hands", default=True, tooltip="Draw the hand keypoints, where present."),
                io.Boolean.Input("draw_face", default=True, tooltip="Draw the face keypoints, where present."),
            ],
            outputs=[io.Image.Output(display_name="image")],
        )

    @classmethod
    def execute(cls, pose, width, height, limb_width, draw_body, draw_hands, draw_face) -> io.NodeOutput:
        frames = parse_input(pose, "Render Pose", "pose", "connect a POSE_KEYPOINT output")
        if len({(width or f["canvas_width"], height or f["canvas_height"]) for f in frames}) > 1:
            raise ValueError("Render Pose: the pose frames have different canvas sizes; set width and height so "
                             "that all images of the batch have one size.")
        return io.NodeOutput(to_image([render_frame(f, width or None, height or None, limb_width, draw_body,
                                                    draw_hands, draw_face) for f in frames]))
