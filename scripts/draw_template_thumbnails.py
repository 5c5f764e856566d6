"""Draw example_workflows/<name>.jpg, the Templates browser's thumbnail of each template: its title, a diagram
of what the workflow does, and its one-line description (from web/example_templates.json).

ComfyUI's front end 1.27 shows a custom pack's template under its file name only, so the thumbnail is where a
user reads what the template is. Diagrams, never results: no weights exist where these are drawn.

    python scripts/draw_template_thumbnails.py [names...]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from diagram_kit import (
    ACCENT,
    INK,
    JUMPING,
    LEGS_FIXED,
    MUTED,
    SOURCE,
    STANDING,
    TARGET,
    arrow,
    box_label,
    corgi,
    cropped_person,
    dashed_rect,
    dog,
    font,
    new_canvas,
    noise,
    person,
    photo,
    save_jpeg,
    scene,
    skeleton,
    text,
)
from PIL import Image, ImageDraw, ImageFilter

PACK_DIR = Path(__file__).resolve().parents[1]
SIZE = 512  # the dialog shows a 256 px square (w-64 h-64, object-contain): 2x for sharp text on HiDPI



def manifest() -> dict[str, dict]:
    data = json.loads((PACK_DIR / "web" / "example_templates.json").read_text())
    return {t["name"]: t for t in data["templates"]}


def frame(title: str, description: str):
    """Title band on top, description at the bottom; returns the picture and the diagram's box."""
    image, draw = new_canvas((SIZE, SIZE))
    draw.rectangle([0, 0, SIZE, 84], fill=INK)
    text(draw, (SIZE / 2, 42), title, 25, (255, 255, 255), True, SIZE - 28)
    text(draw, (SIZE / 2, SIZE - 44), description, 18, MUTED, False, SIZE - 30)
    return image, draw, (14, 96, SIZE - 14, SIZE - 92)


def label(draw, xy, value, fill=INK, size=19):
    text(draw, xy, value, size, fill, True)


def consistent_synthesis(image, draw, area):
    x0, y0, x1, y1 = area
    photo(image, (x0, y0 + 30, x0 + 160, y0 + 210), dog("stand"))
    photo(image, (x1 - 160, y0 + 30, x1, y0 + 210), dog("jump"))
    label(draw, (x0 + 80, y0 + 12), "source", SOURCE)
    label(draw, (x1 - 80, y0 + 12), "target", TARGET)
    arrow(draw, (x0 + 170, y0 + 120), (x1 - 170, y0 + 120), ACCENT, 6, 16)
    text(draw, ((x0 + x1) / 2, y0 + 90), "keys, values", 17, ACCENT, True)
    text(draw, ((x0 + x1) / 2, y0 + 150), "from step 4, decoder layers", 15, ACCENT, False, 140)
    text(draw, (x0 + 80, y1 - 60), '"a photo of a corgi"', 16, SOURCE)
    text(draw, (x1 - 80, y1 - 60), '"... corgi jumping"', 16, TARGET)
    text(draw, ((x0 + x1) / 2, y1 - 14), "same noise, same corgi, new action", 17, INK, True)


def dit_synthesis(model: str, note: str):
    """A diffusion transformer's joint attention: the target's image tokens read [its own text ; the source's
    image tokens]; `note` says what differs between the models (positions on Flux, real CFG on SD3.5)."""
    def draw_it(image, draw, area):
        x0, y0, x1, y1 = area
        photo(image, (x0, y0 + 30, x0 + 160, y0 + 190), dog("stand"), ground=(150, 110, 70))
        photo(image, (x1 - 160, y0 + 30, x1, y0 + 190), dog("jump"), ground=(232, 210, 150))
        label(draw, (x0 + 80, y0 + 12), "source: porch", SOURCE)
        label(draw, (x1 - 80, y0 + 12), "target: beach", TARGET)
        arrow(draw, (x0 + 170, y0 + 110), (x1 - 170, y0 + 110), ACCENT, 6, 16)
        text(draw, ((x0 + x1) / 2, y0 + 80), "image tokens", 17, ACCENT, True)
        text(draw, ((x0 + x1) / 2, y0 + 142), "+ target's own text", 15, ACCENT, False, 150)
        box_label(draw, ((x0 + x1) / 2 - 92, y1 - 96, (x0 + x1) / 2 + 92, y1 - 62), model, size=17)
        text(draw, ((x0 + x1) / 2, y1 - 30), note, 15, INK, False, 300)
    return draw_it


def pose_controlnet(image, draw, area):
    x0, y0, _x1, y1 = area
    for i, (points, colour, name) in enumerate(((STANDING, SOURCE, "source"), (JUMPING, TARGET, "target"))):
        top = y0 + 8 + i * 156
        draw.rectangle([x0, top, x0 + 130, top + 140], fill=(0, 0, 0))
        skeleton(draw, points, (x0 + 10, top + 14, x0 + 120, top + 130), 4)
        arrow(draw, (x0 + 140, top + 70), (x0 + 200, top + 70), INK, 4)
        photo(image, (x0 + 210, top, x0 + 350, top + 140), lambda d, b, p=points: person(d, p, (b[0] + 20, b[1] + 16,
                                                                                              b[2] - 20, b[3] - 6)))
        label(draw, (x0 + 420, top + 60), name, colour)
    arrow(draw, (x0 + 280, y0 + 152), (x0 + 280, y0 + 168), ACCENT, 5, 12)
    text(draw, (x0 + 420, y0 + 160), "keys, values", 16, ACCENT, True)
    text(draw, (x0 + 65, y1 - 12), "OpenPose hints", 15, MUTED, True)


def mask_guided(image, draw, area):
    x0, y0, x1, _y1 = area
    photo(image, (x0, y0 + 26, x0 + 160, y0 + 196), dog("stand"))
    photo(image, (x1 - 160, y0 + 26, x1, y0 + 196), dog("jump"), ground=(232, 210, 150))
    label(draw, (x0 + 80, y0 + 10), "source: grass", SOURCE)
    label(draw, (x1 - 80, y0 + 10), "target: beach", TARGET)
    for bx, pose in ((x0 + 30, "stand"), (x1 - 130, "jump")):
        draw.rectangle([bx, y0 + 206, bx + 100, y0 + 296], fill=(0, 0, 0))
        corgi(draw, (bx + 6, y0 + 236, bx + 80, y0 + 294), pose, fur=(255, 255, 255))
    arrow(draw, (x0 + 170, y0 + 100), (x1 - 170, y0 + 100), ACCENT, 5)
    text(draw, ((x0 + x1) / 2, y0 + 76), "corgi -> corgi", 16, ACCENT, True)
    arrow(draw, (x0 + 170, y0 + 176), (x1 - 170, y0 + 176), MUTED, 5)
    text(draw, ((x0 + x1) / 2, y0 + 152), "grass -> beach", 16, MUTED, True)
    text(draw, ((x0 + x1) / 2, y0 + 252), 'masks of "corgi"', 17, INK, True)


def real_photo(inversion: str, model: str | None = None):
    """Photo -> noise by `inversion`, then source (the photo again) and target (the edit) from that noise;
    `model` names the model family in a box when it is not the UNet default."""
    def draw_it(image, draw, area):
        x0, y0, x1, y1 = area
        photo(image, (x0, y0 + 30, x0 + 140, y0 + 170), dog("sit"))
        label(draw, (x0 + 70, y0 + 12), "your photo")
        arrow(draw, (x0 + 148, y0 + 100), (x0 + 196, y0 + 100), INK, 4)
        noise(draw, (x0 + 204, y0 + 50, x0 + 296, y0 + 142))
        text(draw, (x0 + 250, y0 + 156), inversion, 15, INK, True)
        photo(image, (x1 - 130, y0 + 26, x1, y0 + 146), dog("sit"))
        photo(image, (x1 - 130, y0 + 186, x1, y0 + 306), dog("run"))
        text(draw, (x1 - 65, y0 + 12), "source = photo", 15, SOURCE, True)
        text(draw, (x1 - 65, y0 + 318), "target: running", 15, TARGET, True)
        arrow(draw, (x0 + 300, y0 + 86), (x1 - 136, y0 + 86), SOURCE, 4)
        arrow(draw, (x0 + 300, y0 + 120), (x1 - 136, y0 + 246), TARGET, 4)
        arrow(draw, (x1 - 65, y0 + 150), (x1 - 65, y0 + 182), ACCENT, 5, 12)
        text(draw, (x1 - 170, y0 + 180), "keys, values", 14, ACCENT, True)
        if model is not None:
            box_label(draw, (x0 + 20, y1 - 70, x0 + 220, y1 - 36), model, size=17)
    return draw_it


def complete_photo(model: str | None = None):
    """Caption, extend + tiles, RePaint, paste back; `model` names the model family in a box when given."""
    def draw_it(image, draw, area):
        x0, y0, x1, y1 = area
        cropped_person(image, (x0, y0 + 40, x0 + 100, y0 + 150))
        label(draw, (x0 + 50, y0 + 20), "photo", INK, 16)
        box_label(draw, (x0, y0 + 172, x0 + 150, y0 + 230), '"a man ..., full body, feet"', (255, 250, 220), INK, 13)
        text(draw, (x0 + 75, y0 + 246), "BLIP caption", 15, MUTED, True)
        arrow(draw, (x0 + 106, y0 + 110), (x0 + 150, y0 + 110), INK, 4)
        cx = x0 + 160
        scene(image, (cx, y0 + 30, cx + 110, y0 + 290))
        person(draw, STANDING, (cx + 10, y0 + 36, cx + 100, y0 + 280))
        draw.rectangle([cx, y0 + 150, cx + 110, y0 + 290], fill=(170, 176, 170))
        dashed_rect(draw, (cx, y0 + 150, cx + 110, y0 + 290), ACCENT, 3)
        for ty in (y0 + 30, y0 + 140):
            draw.rectangle([cx + 3, ty, cx + 107, ty + 150], outline=SOURCE, width=2)
        text(draw, (cx + 55, y0 + 14), "extend + tiles", 15, INK, True)
        arrow(draw, (cx + 116, y0 + 160), (x1 - 150, y0 + 160), INK, 4)
        text(draw, ((cx + 116 + x1 - 150) / 2, y0 + 186), "RePaint", 15, ACCENT, True)
        scene(image, (x1 - 140, y0 + 30, x1, y0 + 290))
        person(draw, STANDING, (x1 - 124, y0 + 36, x1 - 16, y0 + 282))
        draw.rectangle([x1 - 140, y0 + 30, x1, y0 + 290], outline=INK, width=3)
        text(draw, (x1 - 70, y0 + 14), "paste back", 15, INK, True)
        text(draw, ((x0 + x1) / 2, y1 - 6), "the photo's own pixels are kept", 15, MUTED, True)
        if model is not None:
            box_label(draw, (x0, y0 + 268, x0 + 150, y0 + 300), model, size=16)
    return draw_it


def pose_repair(image, draw, area):
    x0, y0, x1, y1 = area
    cropped_person(image, (x0, y0 + 40, x0 + 110, y0 + 170))
    label(draw, (x0 + 55, y0 + 18), "photo", INK, 16)
    arrow(draw, (x0 + 116, y0 + 120), (x0 + 156, y0 + 120), INK, 4)
    draw.rectangle([x0 + 164, y0 + 30, x0 + 314, y0 + 300], fill=(0, 0, 0))
    skeleton(draw, STANDING[:9] + [STANDING[8]] * 2 + [STANDING[11]] * 3 + STANDING[14:],
             (x0 + 174, y0 + 36, x0 + 304, y0 + 290), 4)
    skeleton(draw, LEGS_FIXED, (x0 + 174, y0 + 36, x0 + 304, y0 + 290), 4)
    for i in (9, 10, 12, 13):
        px = x0 + 174 + 130 * LEGS_FIXED[i][0]
        py = y0 + 36 + 254 * LEGS_FIXED[i][1]
        draw.ellipse([px - 9, py - 9, px + 9, py + 9], outline=ACCENT, width=3)
    text(draw, (x0 + 239, y0 + 14), "drag the legs", 15, ACCENT, True)
    arrow(draw, (x0 + 320, y0 + 160), (x1 - 130, y0 + 160), INK, 4)
    text(draw, ((x0 + x1) / 2, y1 - 6), "OpenPose ControlNet inpaints the new area", 15, MUTED, True)
    scene(image, (x1 - 120, y0 + 30, x1, y0 + 300))
    person(draw, LEGS_FIXED, (x1 - 110, y0 + 36, x1 - 10, y0 + 292))
    dashed_rect(draw, (x1 - 120, y0 + 170, x1, y0 + 300), ACCENT, 3)
    draw.rectangle([x1 - 120, y0 + 30, x1, y0 + 300], outline=INK, width=3)
    text(draw, (x1 - 60, y0 + 14), "new area", 15, INK, True)


def blip_caption(image, draw, area):
    x0, y0, x1, _y1 = area
    cropped_person(image, (x0, y0 + 40, x0 + 150, y0 + 220))
    arrow(draw, (x0 + 158, y0 + 130), (x0 + 200, y0 + 130), INK, 4)
    box_label(draw, (x0 + 206, y0 + 96, x0 + 290, y0 + 164), "BLIP", (230, 236, 250), SOURCE, 22, SOURCE)
    arrow(draw, (x0 + 296, y0 + 130), (x0 + 330, y0 + 130), INK, 4)
    box_label(draw, (x0 + 334, y0 + 40, x1, y0 + 220), '"a man in a red shirt standing in a field, high quality"',
              (255, 250, 220), INK, 17, INK, False)
    text(draw, ((x0 + x1) / 2, y0 + 270), "prompt_prefix + caption + prompt_suffix -> CLIP -> KSampler", 15, MUTED,
         True, x1 - x0)


def extend_canvas(image, draw, area):
    x0, y0, x1, y1 = area
    cropped_person(image, (x0, y0 + 30, x0 + 100, y0 + 150))
    label(draw, (x0 + 50, y0 + 12), "photo", INK, 16)
    arrow(draw, (x0 + 104, y0 + 90), (x0 + 130, y0 + 90), INK, 4)
    cx = x0 + 134
    cropped_person(image, (cx, y0 + 30, cx + 100, y0 + 150))
    fill = image.crop((cx, y0 + 130, cx + 100, y0 + 150)).resize((100, 110)).filter(ImageFilter.GaussianBlur(8))
    image.paste(fill, (cx, y0 + 150))
    dashed_rect(draw, (cx, y0 + 150, cx + 100, y0 + 260), ACCENT, 3)
    text(draw, (cx + 50, y0 + 12), "image", 16, INK, True)
    mx = cx + 112
    mask = Image.new("L", (100, 230), 0)
    for y in range(230):
        mask.putpixel((0, y), 255 if y >= 120 else max(0, 255 - (120 - y) * 8))
    mask = mask.resize((1, 230)).resize((100, 230))
    image.paste(Image.merge("RGB", [mask] * 3), (mx, y0 + 30))
    text(draw, (mx + 50, y0 + 12), "mask", 16, INK, True)
    ax = mx + 112
    area_mask = Image.new("RGB", (100, 230), (0, 0, 0))
    ImageDraw.Draw(area_mask).rectangle([0, 120, 100, 230], fill=(255, 255, 255))
    image.paste(area_mask, (ax, y0 + 30))
    text(draw, (ax + 50, y0 + 12), "new_area", 16, INK, True)
    text(draw, ((x0 + x1) / 2, y1 - 22), "feathered seam in the mask; the photo's pixels unchanged", 15, MUTED, True,
         x1 - x0)


def grid_outpaint(image, draw, area):
    x0, y0, x1, _y1 = area
    cx, top, width, height = x0 + 150, y0 + 4, 160, 300
    scene(image, (cx, top, cx + width, top + height), ground=(90, 120, 170))
    draw.polygon([(cx + 60, top + 200), (cx + 100, top + 200), (cx + 92, top + 80), (cx + 68, top + 80)],
                 fill=(245, 245, 245), outline=INK)
    draw.rectangle([cx + 64, top + 64, cx + 96, top + 82], fill=ACCENT)
    colours = (SOURCE, TARGET, ACCENT)
    for i, ty in enumerate((top, top + 70, top + 140)):
        draw.rectangle([cx + 2 + i * 3, ty + 2, cx + width - 2 - i * 3, ty + 160 - 2], outline=colours[i], width=4)
    text(draw, (x0 + 70, y0 + 110), "512x1024 canvas", 16, INK, True, 130)
    text(draw, (x1 - 80, y0 + 90), "512 px tiles, overlapping", 16, INK, True, 150)
    text(draw, (x1 - 80, y0 + 190), "blended at every step: one image", 16, MUTED, True, 150)


def repaint_harmonise(image, draw, area):
    x0, y0, x1, _y1 = area
    photo(image, (x0, y0 + 40, x0 + 140, y0 + 200), dog("stand"))
    dashed_rect(draw, (x0 + 70, y0 + 110, x0 + 140, y0 + 200), ACCENT, 3)
    text(draw, (x0 + 70, y0 + 20), "image + mask", 16, INK, True)
    arrow(draw, (x0 + 146, y0 + 120), (x0 + 186, y0 + 120), INK, 4)
    photo(image, (x0 + 192, y0 + 40, x0 + 332, y0 + 200), dog("stand"))
    noise(draw, (x0 + 262, y0 + 110, x0 + 332, y0 + 200), seed=3)
    text(draw, (x0 + 262, y0 + 20), "re-noise the mask", 16, INK, True)
    draw.arc([x0 + 200, y0 + 206, x0 + 324, y0 + 290], 0, 180, fill=ACCENT, width=4)
    arrow(draw, (x0 + 206, y0 + 250), (x0 + 204, y0 + 236), ACCENT, 4, 12)
    text(draw, (x0 + 262, y0 + 306), "resample: jump back", 14, ACCENT, True)
    arrow(draw, (x0 + 338, y0 + 120), (x1 - 110, y0 + 120), INK, 4)
    photo(image, (x1 - 104, y0 + 60, x1, y0 + 180), dog("stand"))
    text(draw, (x1 - 52, y0 + 20), "paste back", 16, INK, True)
    text(draw, (x1 - 52, y0 + 214), "outside the mask: bit-exact", 14, MUTED, True, 110)


def schedule_sweep(image, draw, area):
    x0, y0, x1, y1 = area
    px0, py0, px1, py1 = x0 + 50, y0 + 10, x1 - 20, y1 - 40
    draw.line([(px0, py1), (px1, py1)], fill=INK, width=3)
    draw.line([(px0, py0), (px0, py1)], fill=INK, width=3)
    text(draw, ((px0 + px1) / 2, py1 + 22), "text alignment (CLIP) ->", 16, INK, True)
    vertical = Image.new("RGBA", (220, 24), (0, 0, 0, 0))
    ImageDraw.Draw(vertical).text((110, 12), "consistency ->", font=font(16, True),
                                  fill=INK, anchor="mm")
    image.paste(vertical.rotate(90, expand=True), (x0 + 4, (py0 + py1) // 2 - 110), vertical.rotate(90, expand=True))
    points = [("off", 0.88, 0.12), ("10", 0.72, 0.42), ("20", 0.6, 0.6), ("30", 0.45, 0.74), ("40", 0.3, 0.84),
              ("-1", 0.2, 0.9)]
    previous = None
    for name, tx, cy in points:
        x, y = px0 + (px1 - px0) * tx, py1 - (py1 - py0) * cy
        if previous:
            draw.line([previous, (x, y)], fill=MUTED, width=2)
        previous = (x, y)
    for name, tx, cy in points:
        x, y = px0 + (px1 - px0) * tx, py1 - (py1 - py0) * cy
        draw.ellipse([x - 9, y - 9, x + 9, y + 9], fill=ACCENT if name != "off" else MUTED)
        text(draw, (x + 30, y - 8), name, 16, INK, True)
    text(draw, (px1 - 80, py0 + 14), "end_step", 17, ACCENT, True)


DRAW = {
    "masactrl_consistent_synthesis": consistent_synthesis, "masactrl_pose_controlnet": pose_controlnet,
    "masactrl_flux_consistent_synthesis": dit_synthesis("Flux.1 dev", "the source beside the target: its corgi, "
                                                        "not its layout"),
    "masactrl_sd35_consistent_synthesis": dit_synthesis("SD3.5 large", "joint attention, real CFG, the "
                                                        "second half of the blocks"),
    "masactrl_mask_guided_synthesis": mask_guided, "masactrl_real_photo_editing": real_photo("DDIM inversion"),
    "masactrl_flux_real_photo_editing": real_photo("flow inversion", "Flux.1 dev"),
    "masactrl_complete_cropped_photo": complete_photo(),
    "masactrl_flux_fill_complete_cropped_photo": complete_photo("Flux.1 Fill"), "masactrl_pose_repair": pose_repair,
    "masactrl_blip_caption": blip_caption, "masactrl_extend_canvas": extend_canvas,
    "masactrl_grid_outpaint": grid_outpaint, "masactrl_repaint_harmonise": repaint_harmonise,
    "masactrl_schedule_sweep": schedule_sweep,
}


def draw_thumbnail(name: str, out_dir: Path = PACK_DIR / "example_workflows") -> Path:
    entry = manifest()[name]
    image, draw, area = frame(entry["title"], entry["description"])
    DRAW[name](image, draw, area)
    path = out_dir / f"{name}.jpg"
    save_jpeg(image, path)
    return path


def main(names):
    unknown = set(names) - set(DRAW)
    if unknown:
        sys.exit(f"unknown template(s) {sorted(unknown)}; choose from {list(DRAW)}")
    for name in names or manifest():
        print(f"wrote {draw_thumbnail(name)}")


if __name__ == "__main__":
    main(sys.argv[1:])
