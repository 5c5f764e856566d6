"""POSE_KEYPOINT, the OpenPose JSON that comfyui_controlnet_aux passes between nodes, and its rendering.

A POSE_KEYPOINT is a list with one frame per image:
    {"people": [{"pose_keypoints_2d": [x, y, c] * 18, "face_keypoints_2d": [...] | None,
                 "hand_left_keypoints_2d": [...] | None, "hand_right_keypoints_2d": [...] | None}],
     "canvas_width": W, "canvas_height": H}
Body points are in OpenPose/COCO order (BODY_POINTS). We write pixel coordinates and confidence 1 for a
present point, [0, 0, 0] for a missing one; a point whose confidence is 0 but whose x, y are kept is a
point the user hid in the editor (every consumer treats it as missing). We read pixel or normalised
(0..1) coordinates, deciding per keypoint list as comfyui_controlnet_aux's renderer does.
Pure numpy/cv2: no ComfyUI import, testable alone.
"""
from __future__ import annotations

import colorsys
import json
import math
import re

import cv2
import numpy as np

BODY_POINTS = ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
               "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
               "right_eye", "left_eye", "right_ear", "left_ear")
# Limbs (0-based point pairs) and the 18 colours, in the order of controlnet_aux's draw_bodypose: the
# openpose ControlNet was trained on exactly these.
LIMBS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
         (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))
COLORS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
          (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
          (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))
HAND_EDGES = tuple((0 if i % 4 == 0 else i, i + 1) for i in range(20))
PARTS = ("pose_keypoints_2d", "face_keypoints_2d", "hand_left_keypoints_2d", "hand_right_keypoints_2d")

# Bounds, so that a hand-edited or hostile document fails with its place instead of exhausting memory.
MAX_CANVAS_SIDE = 16384  # ComfyUI's MAX_RESOLUTION: its own size inputs stop there
# All canvases together: 16 of the largest, or 2000 Full-HD video frames (51 GiB as a float IMAGE batch).
MAX_BATCH_PIXELS = 16 * MAX_CANVAS_SIDE * MAX_CANVAS_SIDE
MAX_FRAMES = 4096  # ComfyUI's largest batch_size
MAX_PEOPLE = 100  # per frame
MAX_POINTS = {"pose_keypoints_2d": (18, 18), "hand_left_keypoints_2d": (21, 21),
              "hand_right_keypoints_2d": (21, 21), "face_keypoints_2d": (1, 70)}  # (fewest, most) when present
MAX_JSON_CHARS = 64 * 1024 * 1024
MAX_JSON_DEPTH = 8  # the format needs 5: frames, frame, people, person, keypoints
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')  # strings (skipped whole) and brackets


class PoseFormatError(ValueError):
    pass


def _json_depth(text: str) -> int:
    """The deepest nesting of brackets outside strings, counted without recursion (json.loads recurses, and a
    document nested 10^5 deep would end in RecursionError)."""
    depth = deepest = 0
    for token in _JSON_TOKEN.finditer(text):
        bracket = token.group()
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                break
        elif bracket in "]}":
            depth -= 1
    return deepest


def _load_json(text: str, where: str):
    if len(text) > MAX_JSON_CHARS:
        raise PoseFormatError(f"{where} is {len(text)} characters long, more than {MAX_JSON_CHARS} (a pose of "
                              f"{MAX_FRAMES} frames fits in far less)")
    if _json_depth(text) > MAX_JSON_DEPTH:
        raise PoseFormatError(f"{where} nests lists or objects more than {MAX_JSON_DEPTH} deep; OpenPose JSON needs "
                              "5 (frames, frame, people, person, keypoints)")
    try:
        return json.loads(text)
    except ValueError as error:  # JSONDecodeError, and numbers past Python's digit limit
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise PoseFormatError(f"{where} is not valid JSON ({error}): {shown!r}") from None


def _points(values, where: str) -> list[list[float]] | None:
    """[x, y, c, ...] -> [[x, y, c], ...] as floats; None/empty stay None."""
    if values is None or (isinstance(values, list) and not values):
        return None
    if not isinstance(values, list) or len(values) % 3:
        raise PoseFormatError(f"{where} must be a flat list [x, y, confidence, ...] (a multiple of 3 numbers)")
    try:
        flat = [float(v) for v in values]
    except (TypeError, ValueError):
        raise PoseFormatError(f"{where} holds something that is not a number") from None
    if not all(math.isfinite(v) for v in flat):
        raise PoseFormatError(f"{where} holds NaN or infinity")
    return [flat[i:i + 3] for i in range(0, len(flat), 3)]


def _to_pixels(points, width: int, height: int):
    """comfyui_controlnet_aux's rule: a list whose present points all lie in 0..1 is normalised."""
    present = [p for p in points if p[2] > 0]
    if present and all(0 <= abs(x) <= 1 and 0 <= abs(y) <= 1 for x, y, _ in present):
        return [[x * width, y * height, c] if c > 0 else [x, y, c] for x, y, c in points]
    return points


def _canvas_side(value) -> bool:
    # No float() of an int: a 400-digit canvas_width would overflow before it is compared.
    return 1 <= value <= MAX_CANVAS_SIDE and not (isinstance(value, float) and math.isnan(value))


def _side_text(value) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return text if len(text) <= 16 else f"{text[:6]}... ({len(text)} digits)"


def _point_count_problem(part: str, count: int) -> str | None:
    fewest, most = MAX_POINTS[part]
    if fewest <= count <= most:
        return None
    if part == PARTS[0]:
        return f"has {count} points; OpenPose bodies have 18"
    if fewest == most:
        return f"has {count} points; OpenPose hands have {most}"
    return f"has {count} points; OpenPose faces have at most {most}"


def parse_frame(frame, where: str = "pose") -> dict:
    """One frame, validated; coordinates in pixels; keypoint lists as flat lists (or None)."""
    if not isinstance(frame, dict) or not isinstance(frame.get("people", []), list):
        raise PoseFormatError(f"{where} must be an object with a 'people' list")
    size = [frame.get("canvas_width"), frame.get("canvas_height")]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 1 for v in size):
        raise PoseFormatError(f"{where} needs canvas_width and canvas_height (positive numbers), got {size}")
    if not all(_canvas_side(v) for v in size):
        raise PoseFormatError(f"{where} has a canvas of {_side_text(size[0])} x {_side_text(size[1])} px; "
                              f"canvas_width and canvas_height must be 1 to {MAX_CANVAS_SIDE} (ComfyUI's largest image "
                              "side)")
    width, height = int(size[0]), int(size[1])
    if len(frame.get("people", [])) > MAX_PEOPLE:
        raise PoseFormatError(f"{where} has {len(frame['people'])} people; at most {MAX_PEOPLE} per frame")
    people = []
    for i, person in enumerate(frame.get("people", [])):
        if not isinstance(person, dict):
            raise PoseFormatError(f"{where}.people[{i}] must be an object")
        parsed = {}
        for part in PARTS:
            points = _points(person.get(part), f"{where}.people[{i}].{part}")
            problem = None if points is None else _point_count_problem(part, len(points))
            if problem:
                raise PoseFormatError(f"{where}.people[{i}].{part} {problem}")
            parsed[part] = None if points is None else [v for p in _to_pixels(points, width, height) for v in p]
        people.append(parsed)
    return {"people": people, "canvas_width": width, "canvas_height": height}


def parse_pose_keypoint(value, where: str = "pose") -> list[dict]:
    """A POSE_KEYPOINT (list of frames), a single frame, or either as JSON text -> list of frames."""
    if isinstance(value, str):
        value = _load_json(value, where)
    frames = value if isinstance(value, list) else [value]
    if not frames:
        raise PoseFormatError(f"{where} is an empty list; it needs one frame per image")
    if len(frames) > MAX_FRAMES:
        raise PoseFormatError(f"{where} has {len(frames)} frames; at most {MAX_FRAMES} (one per image of a batch)")
    parsed = [parse_frame(frame, f"{where}[{i}]") for i, frame in enumerate(frames)]
    pixels = sum(f["canvas_width"] * f["canvas_height"] for f in parsed)
    if pixels > MAX_BATCH_PIXELS:
        raise PoseFormatError(f"{where}'s {len(parsed)} canvases hold {pixels} px together, more than "
                              f"{MAX_BATCH_PIXELS} (16 canvases of {MAX_CANVAS_SIDE} x {MAX_CANVAS_SIDE}); use fewer "
                              "frames or smaller canvases")
    return parsed


def batch_canvas(frames: list[dict], width: int | None, height: int | None, where: str, fix: str) -> tuple[int, int]:
    """The one canvas size every frame of a batch is drawn at: width x height where given (0/None: the frame's
    own), which must then agree across frames, since a batch of images has one size."""
    sizes = {(width or f["canvas_width"], height or f["canvas_height"]) for f in frames}
    if len(sizes) > 1:
        shown = ", ".join(f"{w}x{h}" for w, h in sorted(sizes))
        raise PoseFormatError(f"{where}'s frames have different canvas sizes ({shown}); {fix}")
    return sizes.pop()


def empty_frame(width: int, height: int) -> dict:
    return {"people": [], "canvas_width": int(width), "canvas_height": int(height)}


def body_points(person: dict, scale=(1.0, 1.0)) -> list[tuple[float, float] | None]:
    """The 18 body points of a parsed person, scaled; None where missing or hidden."""
    return _scaled(person.get("pose_keypoints_2d"), scale) or [None] * len(BODY_POINTS)


def _scaled(values, scale):
    if not values:
        return None
    return [(values[i] * scale[0], values[i + 1] * scale[1]) if values[i + 2] > 0 else None
            for i in range(0, len(values), 3)]


def draw_body(canvas: np.ndarray, points, limb_width: int = 4, radius: int = 4) -> None:
    """controlnet_aux's draw_bodypose with the stick width as a parameter: limbs as ellipses at 60 % of
    the colour, then the joints."""
    for (a, b), color in zip(LIMBS, COLORS):
        if points[a] is None or points[b] is None:
            continue
        (x0, y0), (x1, y1) = points[a], points[b]
        length = ((y0 - y1) ** 2 + (x0 - x1) ** 2) ** 0.5  # as controlnet_aux computes it, to the last bit
        angle = math.degrees(math.atan2(y0 - y1, x0 - x1))
        polygon = cv2.ellipse2Poly((int((x0 + x1) / 2), int((y0 + y1) / 2)), (int(length / 2), int(limb_width)),
                                   int(angle), 0, 360, 1)
        cv2.fillConvexPoly(canvas, polygon, [int(float(c) * 0.6) for c in color])
    for point, color in zip(points, COLORS):
        if point is not None:
            cv2.circle(canvas, (int(point[0]), int(point[1])), radius, color, thickness=-1)


def draw_hand(canvas: np.ndarray, points) -> None:
    """controlnet_aux's draw_handpose: edges in a hue ramp, joints in blue; points at x or y < 1 px skipped."""
    def shown(p):
        return p is not None and int(p[0]) > 0 and int(p[1]) > 0

    for index, (a, b) in enumerate(HAND_EDGES):
        if shown(points[a]) and shown(points[b]):
            color = [v * 255 for v in colorsys.hsv_to_rgb(index / len(HAND_EDGES), 1.0, 1.0)]
            cv2.line(canvas, tuple(int(v) for v in points[a]), tuple(int(v) for v in points[b]), color, thickness=2)
    for p in points:
        if shown(p):
            cv2.circle(canvas, (int(p[0]), int(p[1])), 4, (0, 0, 255), thickness=-1)


def draw_face(canvas: np.ndarray, points) -> None:
    for p in points:
        if p is not None and int(p[0]) > 0 and int(p[1]) > 0:
            cv2.circle(canvas, (int(p[0]), int(p[1])), 3, (255, 255, 255), thickness=-1)


def render_frame(frame: dict, width: int | None = None, height: int | None = None, limb_width: int = 4,
                 body: bool = True, hands: bool = True, face: bool = True) -> np.ndarray:
    """A parsed frame drawn in the standard OpenPose colours on black, [H, W, 3] uint8 RGB, at
    width x height (default: the frame's canvas), the pose scaled to fit."""
    width, height = width or frame["canvas_width"], height or frame["canvas_height"]
    scale = (width / frame["canvas_width"], height / frame["canvas_height"])
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    for person in frame["people"]:
        if body:
            draw_body(canvas, body_points(person, scale), limb_width)
        for part, draw, wanted in (("hand_left_keypoints_2d", draw_hand, hands),
                                   ("hand_right_keypoints_2d", draw_hand, hands),
                                   ("face_keypoints_2d", draw_face, face)):
            points = _scaled(person.get(part), scale)
            if wanted and points:
                draw(canvas, points)
    return canvas


def rescale(frame: dict, width: int | None, height: int | None) -> dict:
    """The frame moved onto a width x height canvas (unchanged for None)."""
    if width is None or (width, height) == (frame["canvas_width"], frame["canvas_height"]):
        return frame
    sx, sy = width / frame["canvas_width"], height / frame["canvas_height"]
    people = [{part: None if values is None else [v * (sx, sy, 1)[i % 3] for i, v in enumerate(values)]
               for part, values in person.items()} for person in frame["people"]]
    return {"people": people, "canvas_width": width, "canvas_height": height}
