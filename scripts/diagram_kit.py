"""Drawing primitives for the explanatory pictures (template thumbnails, README diagrams, example inputs).

Everything is drawn with PIL from simple shapes, so the pictures are reproducible, small, and plainly
diagrams: no model ever ran to make them (no weights exist where they are generated)."""
from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

INK, PAPER, MUTED = (34, 38, 46), (248, 246, 240), (110, 116, 128)
ACCENT, SOURCE, TARGET = (214, 90, 48), (52, 110, 190), (46, 150, 90)
CORGI_FUR, CORGI_WHITE = (214, 132, 56), (250, 240, 225)
_FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/TTF", "/Library/Fonts")


# DejaVu Sans where installed (Debian, most Linux), else PIL's bundled font: the pictures were drawn with DejaVu.
FONT_FILE = next((Path(d) / "DejaVuSans.ttf" for d in _FONT_DIRS if (Path(d) / "DejaVuSans.ttf").is_file()), None)


def font(size: int, bold: bool = False):
    if FONT_FILE is None:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(str(FONT_FILE.with_name("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf")), size)


def wrap(draw, text: str, size: int, width: int, bold=False) -> list[str]:
    lines, words = [], text.split()
    while words:
        line = words.pop(0)
        while words and draw.textlength(f"{line} {words[0]}", font=font(size, bold)) <= width:
            line += " " + words.pop(0)
        lines.append(line)
    return lines


def text(draw, center, value: str, size=20, fill=INK, bold=False, width=10_000, spacing=4):
    """Centered, wrapped to `width` px."""
    lines = wrap(draw, value, size, width, bold)
    height = len(lines) * (size + spacing) - spacing
    y = center[1] - height / 2
    for line in lines:
        draw.text((center[0], y), line, font=font(size, bold), fill=fill, anchor="mt")
        y += size + spacing


def arrow(draw, start, end, fill=INK, width=4, head=12, dashed=False):
    (x0, y0), (x1, y1) = start, end
    angle = math.atan2(y1 - y0, x1 - x0)
    tip_base = (x1 - head * math.cos(angle), y1 - head * math.sin(angle))
    if dashed:
        length = math.dist(start, tip_base)
        for s in range(0, int(length), 14):
            a, b = s / length, min(s + 8, length) / length
            draw.line([(x0 + (tip_base[0] - x0) * a, y0 + (tip_base[1] - y0) * a),
                       (x0 + (tip_base[0] - x0) * b, y0 + (tip_base[1] - y0) * b)], fill=fill, width=width)
    else:
        draw.line([start, tip_base], fill=fill, width=width)
    left = (x1 - head * math.cos(angle - 0.45) * 1.2, y1 - head * math.sin(angle - 0.45) * 1.2)
    right = (x1 - head * math.cos(angle + 0.45) * 1.2, y1 - head * math.sin(angle + 0.45) * 1.2)
    draw.polygon([end, left, right], fill=fill)


def dashed_rect(draw, box, fill=INK, width=3, dash=10):
    x0, y0, x1, y1 = box
    for a, b in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))):
        length = math.dist(a, b)
        for s in range(0, int(length), dash * 2):
            t0, t1 = s / length, min(s + dash, length) / length
            draw.line([(a[0] + (b[0] - a[0]) * t0, a[1] + (b[1] - a[1]) * t0),
                       (a[0] + (b[0] - a[0]) * t1, a[1] + (b[1] - a[1]) * t1)], fill=fill, width=width)


def box_label(draw, box, label, fill=(255, 255, 255), outline=INK, size=18, text_fill=INK, bold=True):
    draw.rounded_rectangle(box, radius=10, fill=fill, outline=outline, width=3)
    text(draw, ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), label, size, text_fill, bold, box[2] - box[0] - 12)


def scene(image, box, ground=(120, 170, 90), sky=((150, 196, 236), (222, 236, 248))):
    """A plain outdoor backdrop: sky gradient over a ground strip (the lower third)."""
    draw = ImageDraw.Draw(image)
    x0, y0, x1, y1 = box
    horizon = y0 + (y1 - y0) * 2 // 3
    for y in range(y0, horizon):
        t = (y - y0) / max(1, horizon - y0)
        draw.line([(x0, y), (x1 - 1, y)], fill=tuple(round(a + (b - a) * t) for a, b in zip(*sky)))
    draw.rectangle([x0, horizon, x1 - 1, y1 - 1], fill=ground)


def corgi(draw, box, pose="stand", fur=CORGI_FUR):
    """A cartoon corgi facing right in `box`; pose: stand, jump, sit or run (the subject kept across images)."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    lift = {"jump": 0.22, "run": 0.05}.get(pose, 0.0) * h
    cx, cy = x0 + w * 0.45, y0 + h * 0.58 - lift
    leg = h * 0.22
    if pose == "sit":
        draw.ellipse([cx - w * 0.22, cy - h * 0.20, cx + w * 0.20, cy + h * 0.22], fill=fur)
        body_front = (cx + w * 0.10, cy - h * 0.16)
        feet = [(cx - w * 0.14, cy + h * 0.22), (cx + w * 0.12, cy + h * 0.22)]
        for fx, fy in feet:
            draw.rounded_rectangle([fx - w * 0.05, fy - leg * 0.2, fx + w * 0.05, fy + h * 0.02], 4, fill=CORGI_WHITE)
    else:
        draw.ellipse([cx - w * 0.32, cy - h * 0.14, cx + w * 0.26, cy + h * 0.12], fill=fur)
        draw.ellipse([cx - w * 0.12, cy - h * 0.02, cx + w * 0.22, cy + h * 0.12], fill=CORGI_WHITE)
        body_front = (cx + w * 0.2, cy - h * 0.08)
        spread = {"jump": 0.55, "run": 0.45}.get(pose, 0.0)
        for i, lx in enumerate((cx - w * 0.24, cx - w * 0.14, cx + w * 0.08, cx + w * 0.18)):
            angle = spread * (1 if i < 2 else -1)
            tip = (lx + math.sin(angle) * leg * (-1), cy + h * 0.08 + math.cos(angle) * leg)
            draw.line([(lx, cy + h * 0.06), tip], fill=fur, width=max(4, int(w * 0.06)))
            draw.ellipse([tip[0] - w * 0.035, tip[1] - w * 0.03, tip[0] + w * 0.035, tip[1] + w * 0.03],
                         fill=CORGI_WHITE)
        draw.line([(cx - w * 0.3, cy - h * 0.06), (cx - w * 0.42, cy - h * 0.16 - lift * 0.2)], fill=fur,
                  width=max(4, int(w * 0.05)))
    hx, hy = body_front[0] + w * 0.1, body_front[1] - h * 0.12
    r = w * 0.13
    draw.polygon([(hx - r * 0.8, hy - r * 0.4), (hx - r * 0.5, hy - r * 1.9), (hx - r * 0.05, hy - r * 0.7)], fill=fur)
    draw.polygon([(hx + r * 0.1, hy - r * 0.7), (hx + r * 0.55, hy - r * 1.9), (hx + r * 0.85, hy - r * 0.4)], fill=fur)
    draw.ellipse([hx - r, hy - r, hx + r, hy + r], fill=fur)
    draw.ellipse([hx - r * 0.1, hy - r * 0.1, hx + r * 1.45, hy + r * 0.75], fill=CORGI_WHITE)
    draw.ellipse([hx + r * 1.25, hy + r * 0.05, hx + r * 1.55, hy + r * 0.35], fill=INK)
    draw.ellipse([hx + r * 0.25, hy - r * 0.45, hx + r * 0.5, hy - r * 0.2], fill=INK)


# A standing person in OpenPose body order (18 points, 0..1 of a box): nose, neck, right arm (shoulder, elbow,
# wrist), left arm, right leg (hip, knee, ankle), left leg, eyes and ears.
STANDING = [(0.5, 0.12), (0.5, 0.22), (0.38, 0.23), (0.33, 0.38), (0.31, 0.52), (0.62, 0.23), (0.67, 0.38),
            (0.69, 0.52), (0.43, 0.52), (0.42, 0.72), (0.42, 0.92), (0.57, 0.52), (0.58, 0.72), (0.58, 0.92),
            (0.48, 0.10), (0.52, 0.10), (0.46, 0.11), (0.54, 0.11)]
LIMBS = [(1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
         (1, 0)]
# The same person jumping (arms up, knees bent) and standing with the legs set apart (the repaired pose).
JUMPING = [(x, y - 0.06) for x, y in STANDING[:2]] + [(0.36, 0.18), (0.28, 0.08), (0.24, -0.02), (0.64, 0.18),
                                                       (0.72, 0.08), (0.76, -0.02), (0.43, 0.46), (0.33, 0.6),
                                                       (0.40, 0.76), (0.57, 0.46), (0.67, 0.6), (0.60, 0.76)]
JUMPING += [(x, y - 0.06) for x, y in STANDING[14:]]
LEGS_FIXED = STANDING[:9] + [(0.40, 0.72), (0.36, 0.92)] + [STANDING[11], (0.60, 0.72), (0.64, 0.92)] + STANDING[14:]

# OpenPose's limb colours, in LIMBS order.
OPENPOSE_COLOURS = [(255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
                    (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255),
                    (255, 0, 85)]
SHIRT, TROUSERS, SKIN, SHOES = (196, 64, 64), (52, 72, 120), (232, 190, 160), (60, 40, 30)


def posed(points, box):
    x0, y0, x1, y1 = box
    return [(x0 + (x1 - x0) * px, y0 + (y1 - y0) * py) for px, py in points]


def person(draw, points, box, legs=True, width=None):
    """A figure drawn along OpenPose keypoints (same clothes in every pose: the subject kept)."""
    p = posed(points, box)
    w = width or max(6, int((box[2] - box[0]) * 0.09))
    torso = [p[2], p[5], p[11], p[8]]
    draw.polygon(torso, fill=SHIRT)
    for a, b in ((2, 3), (3, 4), (5, 6), (6, 7)):
        draw.line([p[a], p[b]], fill=SHIRT if b != 4 and b != 7 else SKIN, width=w)
    if legs:
        for a, b in ((8, 9), (9, 10), (11, 12), (12, 13)):
            draw.line([p[a], p[b]], fill=TROUSERS, width=w + 2)
        for foot in (10, 13):
            draw.ellipse([p[foot][0] - w, p[foot][1] - w / 2, p[foot][0] + w, p[foot][1] + w / 2], fill=SHOES)
    r = w * 1.3
    draw.ellipse([p[0][0] - r, p[0][1] - r * 1.1, p[0][0] + r, p[0][1] + r * 0.9], fill=SKIN)


def skeleton(draw, points, box, width=4):
    """The OpenPose-style stick figure (ControlNet's hint): coloured limbs on black."""
    p = posed(points, box)
    for (a, b), colour in zip(LIMBS, OPENPOSE_COLOURS):
        draw.line([p[a], p[b]], fill=colour, width=width)
    for x, y in p[:14]:
        draw.ellipse([x - width, y - width, x + width, y + width], fill=(255, 255, 255))


def new_canvas(size, background=PAPER):
    image = Image.new("RGB", size, background)
    return image, ImageDraw.Draw(image)


def save_jpeg(image, path: Path, limit=60_000):
    """Save as JPEG at the best quality that stays under `limit` bytes."""
    for quality in (90, 85, 80, 75, 70, 60):
        image.save(path, "JPEG", quality=quality, optimize=True)
        if path.stat().st_size < limit:
            return
    raise ValueError(f"{path} is {path.stat().st_size} bytes even at quality 60")


def photo(image, box, draw_subject, ground=(120, 170, 90)):
    """A framed 'photo': backdrop and subject drawn on their own picture, so the frame crops them."""
    x0, y0, x1, y1 = (round(v) for v in box)
    picture = Image.new("RGB", (x1 - x0, y1 - y0))
    scene(picture, (0, 0, x1 - x0, y1 - y0), ground)
    draw_subject(ImageDraw.Draw(picture), (0, 0, x1 - x0, y1 - y0))
    image.paste(picture, (x0, y0))
    ImageDraw.Draw(image).rectangle(box, outline=INK, width=3)


def dog(pose):
    """Draws a corgi inset in a photo's box, head room above for the jump."""
    return lambda d, b: corgi(d, (b[0] + 0.02 * (b[2] - b[0]), b[1] + 0.3 * (b[3] - b[1]), b[0] + 0.78 * (b[2] - b[0]),
                                   b[3] - 0.02 * (b[3] - b[1])), pose)


def noise(draw, box, seed=0):
    import random

    rng = random.Random(seed)
    for y in range(box[1], box[3], 6):
        for x in range(box[0], box[2], 6):
            v = rng.randint(40, 220)
            draw.rectangle([x, y, x + 5, y + 5], fill=(v, v, v))


def cropped_person(image, box, points=STANDING):
    """A person photo whose legs are cut off at the knees."""
    def subject(d, b):
        height = (b[3] - b[1]) * 1.55
        person(d, points, (b[0] + 10, b[1] + 6, b[2] - 10, b[1] + 6 + height))
    photo(image, box, subject)
