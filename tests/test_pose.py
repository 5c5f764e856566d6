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


@pytest.fixture
def weight_folders(comfy, tmp_path, monkeypatch):
    """An empty models/openpose and an empty custom_nodes, so that only what a test puts there is found."""
    folders = {"openpose": tmp_path / "models" / "openpose", "custom_nodes": tmp_path / "custom_nodes"}
    for name, folder in folders.items():
        folder.mkdir(parents=True)
        monkeypatch.setitem(comfy.folder_paths.folder_names_and_paths, name, ([str(folder)], set()))
    monkeypatch.delenv("AUX_ANNOTATOR_CKPTS_PATH", raising=False)  # comfyui_controlnet_aux sets it when loaded
    return folders


def detect_graph(detect_face=True):
    detect = {"image": ["image", 0], "detect_hands": False, "detect_face": detect_face, "resolution": 64}
    return {"image": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
            "detect": {"class_type": "MasaCtrlOpenPoseDetect", "inputs": detect},
            "preview": {"class_type": "PreviewImage", "inputs": {"images": ["detect", 0]}}}


def test_missing_weights_are_refused_at_validation_with_the_download(comfy, weight_folders):
    """Before anything runs (ComfyUI's validation): the files, the input needing each, where it looked, the
    download page and a command; the same message if the node is run anyway."""
    folder = weight_folders["openpose"]
    message = node(comfy, "MasaCtrlOpenPoseDetect").validate_inputs(detect_hands=False, detect_face=True)
    assert message.startswith("OpenPose Detect: body_pose_model.pth, facenet.pth (for detect_face; or turn it off) "
                              f"not found. Looked in the openpose model folder ({folder}) and in "
                              "comfyui_controlnet_aux's checkpoints (ckpts/lllyasviel/Annotators: none under ")
    assert "https://huggingface.co/lllyasviel/Annotators/tree/main" in message
    assert message.endswith(f'hf download lllyasviel/Annotators body_pose_model.pth facenet.pth --local-dir "{folder}"')
    with pytest.raises(ValueError, match="Custom validation failed") as refused:
        run_graph(comfy, detect_graph())
    assert "facenet.pth (for detect_face" in str(refused.value)
    import torch

    with pytest.raises(FileNotFoundError) as at_run:
        node(comfy, "MasaCtrlOpenPoseDetect").execute(torch.zeros(1, 64, 64, 3), False, True, 512)
    assert str(at_run.value) == message
    loader = node(comfy, "MasaCtrlOpenPoseLoader").validate_inputs(hands=True, face=None)  # face linked: unknown yet
    assert loader.startswith("Load OpenPose Model: body_pose_model.pth, hand_pose_model.pth (for hands; or turn it "
                             "off) not found") and "facenet" not in loader.split("Download")[1]


@pytest.mark.parametrize("where", ["custom_nodes", "AUX_ANNOTATOR_CKPTS_PATH"])
def test_weights_of_comfyui_controlnet_aux_are_used_where_they_are(comfy, openpose_weights, weight_folders,
                                                                   monkeypatch, where):
    """Its default ckpts/lllyasviel/Annotators in its custom node folder, or the folder its config.yaml sets
    (which that pack exports as AUX_ANNOTATOR_CKPTS_PATH); models/openpose wins where both have a file."""
    root = weight_folders["custom_nodes"] / "comfyui_controlnet_aux" / "ckpts"
    if where == "AUX_ANNOTATOR_CKPTS_PATH":
        root = weight_folders["custom_nodes"].parent / "elsewhere"
        monkeypatch.setenv(where, str(root))
    annotators = root / "lllyasviel" / "Annotators"
    annotators.mkdir(parents=True)
    for name in ("body_pose_model.pth", "hand_pose_model.pth"):
        (annotators / name).symlink_to(openpose_weights / name)
    detect = node(comfy, "MasaCtrlOpenPoseDetect")
    assert detect.validate_inputs(detect_hands=True, detect_face=False) is True
    assert "facenet.pth (for detect_face" in detect.validate_inputs(detect_hands=True, detect_face=True)
    from masactrl_suite.model_files.openpose_detector import weight_paths

    assert weight_paths(True, False) == {"body": str(annotators / "body_pose_model.pth"),
                                         "hand": str(annotators / "hand_pose_model.pth")}
    (weight_folders["openpose"] / "body_pose_model.pth").symlink_to(openpose_weights / "body_pose_model.pth")
    assert weight_paths(False, False) == {"body": str(weight_folders["openpose"] / "body_pose_model.pth")}
    import torch

    _, frames = detect.execute(torch.zeros(1, 64, 64, 3), True, False, 64).result  # the files load and run
    assert frames == [{"people": [], "canvas_width": 64, "canvas_height": 64}]
    assert sorted(p.name for p in annotators.iterdir()) == ["body_pose_model.pth", "hand_pose_model.pth"]  # read only


def test_without_controlnet_aux_the_message_says_pip_install(comfy, openpose_weights, monkeypatch):
    """At validation and, should it be run anyway, at load: what is missing and `pip install controlnet_aux`,
    never a bare ModuleNotFoundError."""
    import sys

    for name in [n for n in sys.modules if n == "controlnet_aux" or n.startswith("controlnet_aux.")] + \
            ["controlnet_aux"]:
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: the import fails as if absent
    for node_id, inputs in (("MasaCtrlOpenPoseDetect", {"detect_hands": False, "detect_face": False}),
                            ("MasaCtrlOpenPoseLoader", {"hands": True, "face": True})):
        message = node(comfy, node_id).validate_inputs(**inputs)
        assert "controlnet_aux package, which runs OpenPose, is not installed" in message
        assert "pip install controlnet_aux" in message
    import torch

    with pytest.raises(ImportError, match=r"^OpenPose Detect: the controlnet_aux package.*\(import of "
                                          r"controlnet_aux.* halted; None in sys.modules\).*pip install "
                                          r"controlnet_aux") as error:
        node(comfy, "MasaCtrlOpenPoseDetect").execute(torch.zeros(1, 64, 64, 3), False, False, 64)
    assert type(error.value) is ImportError  # ours, with the fix, not the bare ModuleNotFoundError


def test_detection_runs_controlnet_aux_openpose(comfy, openpose_weights, monkeypatch):
    """Random weights find nobody, but every step is controlnet_aux's real code, under model management."""
    import comfy.model_management as mm
    import torch

    loaded = []  # ComfyUI holds loaded models by weak reference: the one execute made is gone when it returns
    load_models_gpu = mm.load_models_gpu
    monkeypatch.setattr(mm, "load_models_gpu", lambda models, *a, **k: (
        loaded.extend(set(m.model.keys()) for m in models), load_models_gpu(models, *a, **k))[1])
    image = torch.rand(2, 96, 80, 3, generator=torch.Generator().manual_seed(0))
    pose_image, frames = node(comfy, "MasaCtrlOpenPoseDetect").execute(image, True, True, 128).result
    assert pose_image.shape == (2, 96, 80, 3) and pose_image.dtype == torch.float32
    assert frames == [{"people": [], "canvas_width": 80, "canvas_height": 96}] * 2
    assert loaded == [{"body", "hand", "face"}]


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

    assert any(m.model is loaded.patcher for m in mm.current_loaded_models)  # LoadedModel.model: the patcher
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


class _Payload:
    """Unpickling this runs os.system: what a crafted .pth file could carry."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_crafted_weights_file_never_runs_its_payload(comfy, tmp_path):
    """A body_pose_model.pth that carries code is refused as not a plain weights file; the code never runs."""
    import torch

    from masactrl_suite.model_files.openpose_detector import load_openpose

    _controlnet_aux_util()  # or skip with the reason
    marker = tmp_path / "payload-ran"
    crafted = tmp_path / "body_pose_model.pth"
    torch.save({"model0.conv1_1.weight": _Payload(marker)}, crafted)
    with pytest.raises(ValueError, match="is not a plain weights file: loading it would run code"):
        load_openpose({"body": str(crafted)})
    assert not marker.exists()


def test_old_torch_is_refused_before_any_file_is_read(comfy, monkeypatch):
    import torch

    from masactrl_suite.model_files import openpose_detector

    monkeypatch.setattr(torch, "__version__", "2.5.1+cu121")
    with pytest.raises(RuntimeError, match="torch 2.5.1\\+cu121 would load the OpenPose .pth files with pickle"):
        openpose_detector.load_openpose({"body": "/nonexistent/body_pose_model.pth"})
