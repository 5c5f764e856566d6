"""Pose nodes: Load OpenPose Model, OpenPose Detect (controlnet_aux), the in-node Pose Editor and Render Pose."""
from __future__ import annotations

import comfy.utils
import numpy as np
import torch
from comfy_api.v0_0_2 import io, ui

from ..completion.pose_format import (PoseFormatError, batch_canvas, empty_frame, parse_pose_keypoint, render_frame,
                                      rescale)
from ..model_files.openpose_detector import (DOWNLOAD_PAGE, MODEL_FOLDER, WEIGHTS, OpenPoseModel, detect,
                                             load_openpose, openpose_problem, weight_paths)
from .input_checks import custom_type, require

PoseKeypoint = io.Custom("POSE_KEYPOINT")  # comfyui_controlnet_aux's type, shared with other packs
OpenPoseModel_ = custom_type("MASACTRL_OPENPOSE_MODEL", OpenPoseModel, "connect Load OpenPose Model's output")


def to_image(arrays) -> torch.Tensor:
    return torch.from_numpy(np.stack(arrays)).float() / 255.0


class OpenPoseLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MasaCtrlOpenPoseLoader",
            display_name="Load OpenPose Model (MasaCtrl)",
            category="MasaCtrl/pose",
            description=f"Load controlnet_aux's OpenPose networks from models/{MODEL_FOLDER} (lllyasviel/Annotators: "
                        f"{WEIGHTS['body']}, {WEIGHTS['hand']}, {WEIGHTS['face']}; {DOWNLOAD_PAGE}) or from "
                        "comfyui_controlnet_aux's checkpoints, under ComfyUI's model management, for OpenPose Detect.",
            inputs=[
                io.Boolean.Input("hands", default=True, tooltip=f"Also load the hand network ({WEIGHTS['hand']}), "
                                                                "for OpenPose Detect's detect_hands."),
                io.Boolean.Input("face", default=True, tooltip=f"Also load the face network ({WEIGHTS['face']}), "
                                                               "for OpenPose Detect's detect_face."),
            ],
            outputs=[OpenPoseModel_.Output(display_name="openpose_model",
                                           tooltip="The loaded networks, for OpenPose Detect.")],
        )

    # Only the inputs checked are named: ComfyUI 0.3.64 skips its own checks of every input a validate_inputs
    # names (all of them with **kwargs). A linked switch is not known before the run (None): execute checks again.
    @classmethod
    def validate_inputs(cls, hands=None, face=None):
        return openpose_problem("Load OpenPose Model", hands, face, ("hands", "face")) or True

    @classmethod
    def execute(cls, hands, face) -> io.NodeOutput:
        node = "Load OpenPose Model"
        return io.NodeOutput(load_openpose(weight_paths(hands, face, node, ("hands", "face")), node))


class OpenPoseDetect(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MasaCtrlOpenPoseDetect",
            display_name="OpenPose Detect (MasaCtrl)",
            category="MasaCtrl/pose",
            description="Find people's OpenPose keypoints in each image (controlnet_aux's OpenPose, weights in "
                        f"models/openpose or comfyui_controlnet_aux's checkpoints; {DOWNLOAD_PAGE}). Outputs the pose "
                        "drawn for the openpose ControlNet and the keypoints (POSE_KEYPOINT, the format of "
                        "comfyui_controlnet_aux) for the Pose Editor.",
            inputs=[
                io.Image.Input("image", tooltip="The photo(s) to find people in; one pose frame per image."),
                io.Boolean.Input("detect_hands", default=False,
                                 tooltip="Also find the 21 points of each hand (needs hand_pose_model.pth)."),
                io.Boolean.Input("detect_face", default=False,
                                 tooltip="Also find the face landmarks (needs facenet.pth)."),
                io.Int.Input("resolution", default=512, min=64, max=2048, step=64,
                             tooltip="Detect at this size of the image's short side; the keypoints are given in "
                                     "the input image's own pixels whatever this is."),
                OpenPoseModel_.Input("openpose_model", optional=True,
                                     tooltip="From Load OpenPose Model, which keeps the networks loaded between "
                                             "runs; unconnected: the files are read on every run."),
            ],
            outputs=[io.Image.Output(display_name="pose_image",
                                     tooltip="The detected pose drawn in OpenPose colours on black, at the image's "
                                             "size: the openpose ControlNet's hint."),
                     PoseKeypoint.Output(display_name="pose",
                                         tooltip="The keypoints in the image's pixels (POSE_KEYPOINT, one frame per "
                                                 "image): for the Pose Editor or comfyui_controlnet_aux nodes.")],
        )

    @classmethod
    def validate_inputs(cls, detect_hands=None, detect_face=None):
        # A connected openpose_model needs the same files (its loader checks them too), so this checks either way.
        return openpose_problem("OpenPose Detect", detect_hands, detect_face, ("detect_hands", "detect_face")) or True

    @classmethod
    def execute(cls, image, detect_hands, detect_face, resolution, openpose_model=None) -> io.NodeOutput:
        require(cls, locals())
        if openpose_model is None:
            openpose_model = load_openpose(weight_paths(detect_hands, detect_face))
        wanted = {part for part, asked in (("hand", detect_hands), ("face", detect_face)) if asked}
        if not wanted <= openpose_model.parts:
            missing = " and ".join(sorted(wanted - openpose_model.parts))
            raise ValueError(f"OpenPose Detect: the connected openpose_model has no {missing} network; turn on "
                             "hands/face in Load OpenPose Model, or turn off detect_hands/detect_face.")
        frames = detect(openpose_model, image, resolution, detect_hands, detect_face,
                        comfy.utils.ProgressBar(image.shape[0]))
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
            outputs=[PoseKeypoint.Output(display_name="pose",
                                         tooltip="The edited keypoints (POSE_KEYPOINT), scaled to the image's size "
                                                 "where one is connected."),
                     io.Image.Output(display_name="pose_image",
                                     tooltip="The edited pose drawn in OpenPose colours on black, at the image's size "
                                             "(else the pose's canvas): the openpose ControlNet's hint.")],
        )

    @classmethod
    def execute(cls, pose_json, pose=None, image=None) -> io.NodeOutput:
        require(cls, locals())
        node = "Pose Editor"
        received = parse_input(pose, node, "pose", "connect a POSE_KEYPOINT output") if pose is not None else None
        if pose_json.strip():
            frames = parse_input(pose_json, node, "pose_json", "press Reset in the editor to start from the input")
        else:
            height, width = image.shape[1:3] if image is not None else (512, 512)
            frames = received or [empty_frame(width, height)]
        size = (image.shape[2], image.shape[1]) if image is not None else (None, None)
        try:  # without an image, every frame must have one canvas: the rendered batch has one size
            batch_canvas(frames, *size, "pose_json", "connect an image, or give every frame one canvas size")
        except PoseFormatError as error:
            raise ValueError(f"{node}: {error}") from None
        rendered = to_image([render_frame(frame, *size) for frame in frames])
        frames = [rescale(frame, *size) for frame in frames]
        shown = {"input_pose": [received], "canvas": [list(size)]}
        if image is not None:
            shown["background"] = ui.ImageSaveHelper.save_images(image[:1], "masactrl_pose_background",
                                                                 io.FolderType.temp, cls, compress_level=1)
        return io.NodeOutput(frames, rendered, ui=shown)


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
            outputs=[io.Image.Output(display_name="image",
                                     tooltip="One drawing per pose frame, OpenPose colours on black: the openpose "
                                             "ControlNet's hint.")],
        )

    @classmethod
    def execute(cls, pose, width, height, limb_width, draw_body, draw_hands, draw_face) -> io.NodeOutput:
        require(cls, locals())
        frames = parse_input(pose, "Render Pose", "pose", "connect a POSE_KEYPOINT output")
        if len({(width or f["canvas_width"], height or f["canvas_height"]) for f in frames}) > 1:
            raise ValueError("Render Pose: the pose frames have different canvas sizes; set width and height so "
                             "that all images of the batch have one size.")
        return io.NodeOutput(to_image([render_frame(f, width or None, height or None, limb_width, draw_body,
                                                    draw_hands, draw_face) for f in frames]))
