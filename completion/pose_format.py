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


class PoseFormatError(ValueError):
    pass


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


def parse_frame(frame, where: str = "pose") -> dict:
    """One frame, validated; coordinates in pixels; keypoint lists as flat lists (or None)."""
    if not isinstance(frame, dict) or not isinstance(frame.get("people", []), list):
        raise PoseFormatError(f"{where} must be an object with a 'people' list")
    size = [frame.get("canvas_width"), frame.get("canvas_height")]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 1 for v in size):
        raise PoseFormatError(f"{where} needs canvas_width and canvas_height (positive numbers), got {size}")
    width, height = int(size[0]), int(size[1])
    people = []
    for i, person in enumerate(frame.get("people", [])):
        if not isinstance(person, dict):
            raise PoseFormatError(f"{where}.people[{i}] must be an object")
        parsed = {}
        for part in PARTS:
            points = _points(person.get(part), f"{where}.people[{i}].{part}")
            if part == PARTS[0] and points is not None and len(points) != len(BODY_POINTS):
                raise PoseFormatError(f"{where}.people[{i}].{part} has {len(points)} points; OpenPose bodies have 18")
            parsed[part] = None if points is None else [v for p in _to_pixels(points, width, height) for v in p]
        people.append(parsed)
    return {"people": people, "canvas_width": width, "canvas_height": height}


def parse_pose_keypoint(value, where: str = "pose") -> list[dict]:
    """A POSE_KEYPOINT (list of frames), a single frame, or either as JSON text -> list of frames."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise PoseFormatError(f"{where} is not valid JSON ({error})") from None
    frames = value if isinstance(value, list) else [value]
    if not frames:
        raise PoseFormatError(f"{where} is an empty list; it needs one frame per image")
    return [parse_frame(frame, f"{where}[{i}]") for i, frame in enumerate(frames)]


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
