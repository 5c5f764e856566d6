"""Draw the README's two diagrams into docs/images/: what MasaCtrl does (masactrl_diagram.png) and the
photo-completion pipeline (photo_completion_pipeline.png). Diagrams, never results.

    python scripts/draw_readme_diagrams.py
"""
from __future__ import annotations

from pathlib import Path

from diagram_kit import (
    ACCENT,
    INK,
    MUTED,
    SOURCE,
    STANDING,
    TARGET,
    arrow,
    box_label,
    cropped_person,
    dashed_rect,
    dog,
    new_canvas,
    noise,
    person,
    photo,
    scene,
    text,
)
from PIL import ImageDraw

PACK_DIR = Path(__file__).resolve().parents[1]
OUT_DIR = PACK_DIR / "docs" / "images"
STEPS = ["step 1", "step 2", "step S = 4", "step 5 ...", "step 50"]


def unet(draw, box, mutual: bool, colour):
    """A U-Net call: encoder going down, middle, decoder coming up; the decoder's self-attention layers
    (MasaCtrl's default layers 10-15) are orange from step S on."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    draw.polygon([(x0, y0), (x0 + w * 0.38, y0 + h * 0.7), (x0 + w * 0.38, y1), (x0, y1)], fill=(225, 230, 238))
    draw.rectangle([x0 + w * 0.38, y0 + h * 0.7, x0 + w * 0.62, y1], fill=(210, 216, 226))
    decoder_fill = ACCENT if mutual else (225, 230, 238)
    draw.polygon([(x0 + w * 0.62, y0 + h * 0.7), (x1, y0), (x1, y1), (x0 + w * 0.62, y1)], fill=decoder_fill)
    draw.rectangle(box, outline=colour, width=3)


def masactrl_diagram(path: Path):
    image, draw = new_canvas((1200, 690))
    text(draw, (600, 30), "MasaCtrl: from step S on, the target's self-attention reads the source's keys and values",
         21, INK, True)
    rows = {"source": (150, SOURCE, '"a photo of a corgi"'), "target": (400, TARGET, '"a photo of a corgi jumping"')}
    noise(draw, (40, 245, 130, 335), seed=7)
    text(draw, (85, 355), "the same noise", 16, INK, True)
    for name, (top, colour, prompt) in rows.items():
        label_y = 100 if name == "source" else 450
        text(draw, (85, label_y), f"{name} pass", 20, colour, True)
        text(draw, (85, label_y + 30), prompt, 14, colour, False, 150)
        arrow(draw, (134, 290), (178, top + 50), colour, 3)
        for i, step in enumerate(STEPS):
            x = 190 + i * 150
            unet(draw, (x, top, x + 110, top + 100), i >= 2, colour)
            if i < len(STEPS) - 1:
                arrow(draw, (x + 114, top + 50), (x + 146, top + 50), INK, 3, 10)
            if name == "source":
                text(draw, (x + 55, top - 22), step, 16, INK, True)
            if name == "source" and i >= 2:
                arrow(draw, (x + 92, top + 104), (x + 92, rows["target"][0] - 6), ACCENT, 5, 14)
                text(draw, (x + 48, 300), "K, V", 20, ACCENT, True)
    text(draw, (320, 300), "steps before S: own attention; the target's layout and pose follow its prompt", 15,
         MUTED, True, 230)
    photo(image, (1000, 120, 1160, 280), dog("stand"))
    photo(image, (1000, 370, 1160, 530), dog("jump"))
    arrow(draw, (964, 200), (994, 200), INK, 3, 10)
    arrow(draw, (964, 450), (994, 450), INK, 3, 10)
    text(draw, (1080, 560), "the same corgi, jumping", 16, INK, True, 190)
    legend = ("Orange: the decoder's self-attention layers (default 10-15 of SD1.5's 16). There the target's queries Q "
              "attend to the source's keys K and values V: Attention(Q_target, K_source, V_source). Before step S "
              "every image attends to itself, so the target's composition comes from its own prompt; after it, "
              "its content (identity, fur, colours) comes from the source. No fine-tuning.")
    text(draw, (600, 640), legend, 15, INK, False, 1140)
    image.save(path, optimize=True)


def photo_completion_diagram(path: Path):
    image, draw = new_canvas((1200, 520))
    text(draw, (600, 28), "Photo completion: the feet cut off, put back", 24, INK, True)
    top, width, height = 110, 150, 250
    xs = [40 + i * 232 for i in range(5)]
    steps = [("1. Caption", "BLIP describes the photo: the prompt (+ \", full body, feet\")"),
             ("2. Extend canvas", "256 px more at the bottom; mask = new area + a feathered seam"),
             ("3. Grid sampling", "512 px tiles, overlapping, blended at every step: SD1.5 at any size"),
             ("4. RePaint", "re-noise the masked region and resample it (jumps): the seam blends in"),
             ("5. Paste back", "outside the mask the photo's own pixels, bit-identical")]
    photo_box = (xs[0], top, xs[0] + width, top + 150)
    cropped_person(image, photo_box)
    box_label(draw, (xs[0], top + 165, xs[0] + width, top + 245), '"a man in a red shirt ..., full body, feet"',
              (255, 250, 220), INK, 14, INK, False)
    for i, x in enumerate(xs[1:], start=1):
        scene(image, (x, top, x + width, top + height))
        person(draw, STANDING, (x + 25, top + 8, x + width - 25, top + height - 6))
        if i == 1:
            draw.rectangle([x, top + 150, x + width, top + height], fill=(170, 176, 170))
        if i in (1, 2, 3):
            dashed_rect(draw, (x, top + 150, x + width, top + height), ACCENT, 3)
        if i == 2:
            for j, tile_top in enumerate((top, top + 100)):
                draw.rectangle([x + 3 + j * 4, tile_top + 3, x + width - 3 - j * 4, tile_top + 150 - 3],
                               outline=(SOURCE, TARGET)[j], width=4)
        if i == 3:
            noise(draw, (x + 4, top + 140, x + width - 4, top + 162), seed=5)
            draw.arc([x + 20, top + height + 4, x + width - 20, top + height + 40], 0, 180, fill=ACCENT, width=3)
        if i == 4:
            ImageDraw.Draw(image).rectangle([x, top, x + width, top + 150], outline=SOURCE, width=4)
        draw.rectangle([x, top, x + width, top + height], outline=INK, width=2)
    for i, (title, explanation) in enumerate(steps):
        x = xs[i] + width / 2
        text(draw, (x, top - 24), title, 19, INK, True)
        text(draw, (x, top + height + 100), explanation, 15, MUTED, False, 210)
        if i < 4:
            arrow(draw, (xs[i] + width + 10, top + 125), (xs[i + 1] - 10, top + 125), INK, 4)
    image.save(path, optimize=True)


def main():
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, draw_it in (("masactrl_diagram.png", masactrl_diagram),
                          ("photo_completion_pipeline.png", photo_completion_diagram)):
        draw_it(OUT_DIR / name)
        print(f"wrote {OUT_DIR / name}")


if __name__ == "__main__":
    main()
