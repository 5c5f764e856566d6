"""Pose: the POSE_KEYPOINT format against comfyui_controlnet_aux's JSON, rendering against controlnet_aux's
own drawing, malformed input, and (in the real ComfyUI) detection through controlnet_aux's real OpenPose
code on random weights, the editor and render nodes. The format tests need neither ComfyUI nor torch."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from comfy_harness import run_graph
from masactrl_suite.completion import pose_format as fmt

W, H = 256, 384
# A standing person in pixels (None: not detected): nose, neck, r/l arm, r/l leg, eyes, ears.
BODY = [(128, 60), (128, 100), (100, 100), (92, 150), (88, 200), (156, 100), (164, 150), (168, 200), (112, 200),
        (110, 270), (108, 340), (144, 200), (146, 270), (148, 340), (122, 52), (134, 52), (116, 56), None]


def flat(points, scale=(1, 1)):
    return [v for p in points for v in ((p[0] * scale[0], p[1] * scale[1], 1.0) if p else (0.0, 0.0, 0.0))]


def controlnet_aux_openpose_frame():
    """A frame as comfyui_controlnet_aux's OpenPose node writes it: normalised coordinates, hands absent."""
    return {"people": [{"pose_keypoints_2d": flat(BODY, (1 / W, 1 / H)), "face_keypoints_2d": None,
                        "hand_left_keypoints_2d": None, "hand_right_keypoints_2d": None}],
            "canvas_height": H, "canvas_width": W}


def controlnet_aux_dwpose_frame():
    """As its DWPose node writes it: pixel coordinates."""
    return {"people": [{"pose_keypoints_2d": flat(BODY), "face_keypoints_2d": flat([(125, 58), (131, 58)]),
                        "hand_left_keypoints_2d": flat([(168, 205 + i) for i in range(21)]),
                        "hand_right_keypoints_2d": None}], "canvas_height": H, "canvas_width": W}


def test_normalised_and_pixel_frames_read_the_same():
    from_openpose = fmt.parse_pose_keypoint([controlnet_aux_openpose_frame()])
    from_dwpose = fmt.parse_pose_keypoint(controlnet_aux_dwpose_frame())  # a bare frame is one image
    body = from_openpose[0]["people"][0]["pose_keypoints_2d"]
    assert np.allclose(body, flat(BODY)) and np.allclose(body, from_dwpose[0]["people"][0]["pose_keypoints_2d"])
    assert body[-3:] == [0.0, 0.0, 0.0]  # the missing left ear stays missing
    assert from_dwpose[0]["people"][0]["hand_left_keypoints_2d"][:3] == [168.0, 205.0, 1.0]
    assert (from_openpose[0]["canvas_width"], from_openpose[0]["canvas_height"]) == (W, H)


def test_round_trip_through_json_keeps_everything():
    frames = fmt.parse_pose_keypoint(json.dumps([controlnet_aux_dwpose_frame()] * 2))
    again = fmt.parse_pose_keypoint(json.loads(json.dumps(frames)))
    assert again == frames and len(frames) == 2
    person = frames[0]["people"][0]
    assert set(person) == set(fmt.PARTS) and len(person["pose_keypoints_2d"]) == 54
    # what comfyui_controlnet_aux's decoder needs: confidence 1 for a point to count, flat lists, ints
    assert set(person["pose_keypoints_2d"][2::3]) == {0.0, 1.0}
    assert isinstance(frames[0]["canvas_width"], int)


def test_hidden_point_keeps_its_place_but_is_not_drawn():
    frame = fmt.parse_pose_keypoint(controlnet_aux_dwpose_frame())[0]
    frame["people"][0]["pose_keypoints_2d"][2] = 0.0  # nose hidden: x, y kept, confidence 0
    assert fmt.body_points(frame["people"][0])[0] is None
    assert fmt.parse_pose_keypoint(frame)[0]["people"][0]["pose_keypoints_2d"][:3] == [128.0, 60.0, 0.0]


@pytest.mark.parametrize("value, message", [
    ("{not json", "pose is not valid JSON"),
    ([], "empty list"),
    ([{"people": []}], r"pose\[0\] needs canvas_width and canvas_height"),
    ({"people": "x", "canvas_width": 5, "canvas_height": 5}, "must be an object with a 'people' list"),
    ({"people": [{"pose_keypoints_2d": [1, 2]}], "canvas_width": 5, "canvas_height": 5}, "multiple of 3"),
    ({"people": [{"pose_keypoints_2d": [1, 2, 1] * 17}], "canvas_width": 5, "canvas_height": 5}, "17 points"),
    ({"people": [{"pose_keypoints_2d": ["a", 2, 1] * 18}], "canvas_width": 5, "canvas_height": 5}, "not a number"),
    ({"people": [{"pose_keypoints_2d": [float("nan"), 2, 1] * 18}], "canvas_width": 5, "canvas_height": 5}, "NaN"),
    ({"people": [3], "canvas_width": 5, "canvas_height": 5}, r"people\[0\] must be an object"),
])
def test_malformed_pose_is_refused_with_its_place(value, message):
    with pytest.raises(fmt.PoseFormatError, match=message):
        fmt.parse_pose_keypoint(value)


def _controlnet_aux_util():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from controlnet_aux.open_pose import util
            from controlnet_aux.open_pose.body import Keypoint
    except Exception as error:  # e.g. a CUDA-only torchvision next to the CPU torch
        pytest.skip(f"controlnet_aux cannot be imported ({error}); pip install -r requirements-dev.txt")
    return util, Keypoint


def test_render_matches_controlnet_aux_drawing_bit_for_bit():
    util, Keypoint = _controlnet_aux_util()
    frame = fmt.parse_pose_keypoint(controlnet_aux_dwpose_frame())[0]
    ours = fmt.render_frame(frame, hands=False)
    theirs = np.zeros((H, W, 3), np.uint8)
    util.draw_bodypose(theirs, [Keypoint(p[0] / W, p[1] / H) if p else None for p in BODY])
    util.draw_facepose(theirs, [Keypoint(125 / W, 58 / H), Keypoint(131 / W, 58 / H)])
    assert ours.shape == (H, W, 3) and ours.any()
    assert np.array_equal(ours, theirs)


def test_render_size_limb_width_and_parts():
    frame = fmt.parse_pose_keypoint(controlnet_aux_dwpose_frame())[0]
    standard = fmt.render_frame(frame, hands=False, face=False)
    double = fmt.render_frame(frame, W * 2, H * 2, hands=False, face=False)
    assert double.shape == (H * 2, W * 2, 3)
    # the left knee (146, 270) lands at twice its place, in its OpenPose colour
    assert tuple(double[540, 292]) == fmt.COLORS[12] == tuple(standard[270, 146])
    thick = fmt.render_frame(frame, limb_width=10, hands=False, face=False)
    assert (thick.any(-1)).sum() > 1.5 * (standard.any(-1)).sum()
    hands = fmt.render_frame(frame, body=False, face=False)
    assert tuple(hands[205, 168]) == (0, 0, 255) and not hands[60, 128].any()  # hand joints blue, no body
    empty = fmt.render_frame(fmt.empty_frame(32, 16))
    assert empty.shape == (16, 32, 3) and not empty.any()


# ----------------------------------------------------------------------------------------------------
# In the real ComfyUI


@pytest.fixture(scope="module")
def openpose_weights(comfy, tmp_path_factory):
    """Random-weight OpenPose body, hand and face networks made with controlnet_aux's own classes, saved as
    the Annotators files, in a folder registered as models/openpose."""
    import torch

    _controlnet_aux_util()  # or skip with the reason

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from controlnet_aux.open_pose.face import FaceNet
        from controlnet_aux.open_pose.model import bodypose_model, handpose_model
    folder = tmp_path_factory.mktemp("openpose")
    torch.manual_seed(0)
    for name, net, prefixed in (("body_pose_model.pth", bodypose_model(), True),
                                ("hand_pose_model.pth", handpose_model(), True), ("facenet.pth", FaceNet(), False)):
        state = net.state_dict()  # the Annotators files lack the first part of the key (controlnet_aux's transfer)
        torch.save({k.split(".", 1)[1] if prefixed else k: v for k, v in state.items()}, folder / name)
    comfy.folder_paths.add_model_folder_path("openpose", str(folder), is_default=True)
    return folder


def node(comfy, name):
    return comfy.nodes.NODE_CLASS_MAPPINGS[name]


def test_missing_weights_name_the_folder_and_files(comfy, tmp_path, monkeypatch):
    monkeypatch.setitem(comfy.folder_paths.folder_names_and_paths, "openpose", ([str(tmp_path)], set()))
    import torch

    with pytest.raises(FileNotFoundError, match=rf"body_pose_model.pth, facenet.pth not found in the openpose "
                                                rf"model folder \({tmp_path}\)"):
        node(comfy, "MasaCtrlOpenPoseDetect").execute(torch.zeros(1, 64, 64, 3), False, True, 512)


def test_detection_runs_controlnet_aux_openpose(comfy, openpose_weights):
    """Random weights find nobody, but every step is controlnet_aux's real code, under model management."""
    import torch

    image = torch.rand(2, 96, 80, 3, generator=torch.Generator().manual_seed(0))
    pose_image, frames = node(comfy, "MasaCtrlOpenPoseDetect").execute(image, True, True, 128).result
    assert pose_image.shape == (2, 96, 80, 3) and pose_image.dtype == torch.float32
    assert frames == [{"people": [], "canvas_width": 80, "canvas_height": 96}] * 2
    import comfy.model_management as mm

    loaded = [set(getattr(m.model.model, "keys", list)()) for m in mm.current_loaded_models]
    assert {"body", "hand", "face"} in loaded


def test_loader_keeps_the_networks_for_detect(comfy, openpose_weights):
    """Load OpenPose Model's networks run OpenPose Detect under model management; a loader without the face
    network is refused by a detect that asks for faces, naming both fixes."""
    import torch

    loaded = node(comfy, "MasaCtrlOpenPoseLoader").execute(True, False).result[0]
    assert loaded.parts == {"body", "hand"}
    image = torch.rand(1, 96, 80, 3, generator=torch.Generator().manual_seed(0))
    with_loader = node(comfy, "MasaCtrlOpenPoseDetect").execute(image, True, False, 128, openpose_model=loaded).result
    alone = node(comfy, "MasaCtrlOpenPoseDetect").execute(image, True, False, 128).result
    assert with_loader[1] == alone[1] and torch.equal(with_loader[0], alone[0])
    import comfy.model_management as mm

    assert any(m.model is loaded.patcher.model for m in mm.current_loaded_models)
    with pytest.raises(ValueError, match="openpose_model has no face network; turn on hands/face in Load OpenPose "
                                         "Model, or turn off detect_hands/detect_face"):
        node(comfy, "MasaCtrlOpenPoseDetect").execute(image, False, True, 128, openpose_model=loaded)


def test_detected_people_in_pixels(comfy):
    """controlnet_aux's results (normalised, None or negative where missing) -> pixel keypoints."""
    from masactrl_suite.model_files.openpose_detector import _flat

    _, Keypoint = _controlnet_aux_util()
    points = _flat([Keypoint(0.5, 0.25), None, Keypoint(-1 / W, 0.5)], W, H)
    assert points == [128.0, 96.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0] and _flat(None, W, H) is None


def editor_graph(pose_json, image=True):
    graph = {
        "image": {"class_type": "EmptyImage", "inputs": {"width": W // 2, "height": H // 2, "batch_size": 1,
                                                         "color": 0}},
        "detect": {"class_type": "MasaCtrlOpenPoseDetect",
                   "inputs": {"image": ["image", 0], "detect_hands": False, "detect_face": False, "resolution": 128}},
        "editor": {"class_type": "MasaCtrlPoseEditor", "inputs": {"pose": ["detect", 1], "pose_json": pose_json}},
        "render": {"class_type": "MasaCtrlPoseRender",
                   "inputs": {"pose": ["editor", 0], "width": 0, "height": 0, "limb_width": 4, "draw_body": True,
                              "draw_hands": True, "draw_face": True}},
        "preview": {"class_type": "PreviewImage", "inputs": {"images": ["render", 0]}},
    }
    if image:
        graph["editor"]["inputs"]["image"] = ["image", 0]
    return graph


def test_editor_outputs_the_edit_on_the_images_canvas(comfy, openpose_weights):
    edited = json.dumps([controlnet_aux_dwpose_frame()])  # drawn on a W x H canvas, the image is half that
    outputs = run_graph(comfy, editor_graph(edited))
    shown = outputs["editor"]
    assert shown["input_pose"] == [[{"people": [], "canvas_width": W // 2, "canvas_height": H // 2}]]
    assert shown["background"][0]["type"] == "temp"
    from PIL import Image

    preview = outputs["preview"]["images"][0]
    with Image.open(comfy.work / "temp" / preview["subfolder"] / preview["filename"]) as png:
        rendered = np.asarray(png.convert("RGB"))
    assert rendered.shape == (H // 2, W // 2, 3)
    assert tuple(rendered[135, 73]) == fmt.COLORS[12]  # the left knee (146, 270), halved


def test_editor_without_edits_passes_the_input_on(comfy, openpose_weights):
    editor = node(comfy, "MasaCtrlPoseEditor")
    pose, image = editor.execute("", pose=[controlnet_aux_openpose_frame()]).result
    assert np.allclose(pose[0]["people"][0]["pose_keypoints_2d"], flat(BODY))  # in pixels now
    assert image.shape == (1, H, W, 3)
    pose, image = editor.execute("").result  # nothing at all: an empty 512 x 512 pose
    assert pose == [fmt.empty_frame(512, 512)] and not image.any()


def test_editor_and_render_refuse_malformed_json_naming_the_input(comfy):
    with pytest.raises(ValueError, match="Pose Editor: pose_json is not valid JSON .*press Reset in the editor"):
        node(comfy, "MasaCtrlPoseEditor").execute("[{]")
    with pytest.raises(ValueError, match=r"Render Pose: pose\[0\] needs canvas_width"):
        node(comfy, "MasaCtrlPoseRender").execute([{"people": []}], 0, 0, 4, True, True, True)
    two_sizes = [fmt.empty_frame(8, 8), fmt.empty_frame(16, 8)]
    with pytest.raises(ValueError, match="different canvas sizes; set width and height"):
        node(comfy, "MasaCtrlPoseRender").execute(two_sizes, 0, 0, 4, True, True, True)
    assert node(comfy, "MasaCtrlPoseRender").execute(two_sizes, 24, 12, 4, True, True, True).result[0].shape == \
        (2, 12, 24, 3)
