"""The pictures of a schedule sweep, drawn with PIL (no matplotlib in ComfyUI's environment): the trade-off plot
(text alignment against consistency, one labelled point per setting) and a labelled grid of the images."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BACKGROUND, INK, GREY, GRID_LINE = (255, 255, 255), (20, 20, 20), (150, 150, 150), (232, 232, 232)
# Light to dark blue-violet: the order of the sweep reads from the colours too.
PALETTE_START, PALETTE_END = (120, 170, 235), (40, 20, 110)
RADIUS = 7


@dataclass(frozen=True)
class PlotPoint:
    label: str  # e.g. "end_step=20", or "off"
    x: float  # text alignment
    y: float  # consistency


@dataclass(frozen=True)
class PlotAxes:
    """Where the data landed on the picture, so callers and tests can find each point."""
    left: int
    top: int
    right: int
    bottom: int
    x_range: tuple[float, float]
    y_range: tuple[float, float]

    def to_pixel(self, x: float, y: float) -> tuple[int, int]:
        (x0, x1), (y0, y1) = self.x_range, self.y_range
        return (round(self.left + (x - x0) / (x1 - x0) * (self.right - self.left)),
                round(self.bottom - (y - y0) / (y1 - y0) * (self.bottom - self.top)))


def marker_colour(index: int, count: int) -> tuple[int, int, int]:
    t = index / max(count - 1, 1)
    return tuple(round(a + (b - a) * t) for a, b in zip(PALETTE_START, PALETTE_END))


def font(size: int):
    return ImageFont.load_default(size=size)


def nice_ticks(low: float, high: float, count: int = 5) -> tuple[list[float], float, float]:
    """Ticks at 1/2/5 x 10^k covering [low, high] padded by 10% (a flat range gets a small one)."""
    span = high - low
    pad = span * 0.1 if span > 0 else max(abs(high) * 0.05, 0.01)
    low, high = low - pad, high + pad
    raw = (high - low) / count
    step = min((m * 10 ** math.floor(math.log10(raw)) for m in (1, 2, 5, 10)), key=lambda s: abs(s - raw))
    first, last = math.floor(low / step) * step, math.ceil(high / step) * step
    ticks = [first + i * step for i in range(round((last - first) / step) + 1)]
    return ticks, first, last


def _tick_text(value: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    return f"{value:.{decimals}f}"


def _overlaps(box, boxes) -> bool:
    return any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in boxes)


def tradeoff_plot(points: list[PlotPoint], x_label: str, y_label: str, title: str,
                  width: int = 768, height: int = 640) -> tuple[Image.Image, PlotAxes]:
    if not points:
        raise ValueError("tradeoff_plot: no points to draw; the sweep produced no scores.")
    for p in points:
        if not (math.isfinite(p.x) and math.isfinite(p.y)):
            raise ValueError(f"tradeoff_plot: point '{p.label}' has a non-finite score ({p.x}, {p.y}).")
    x_ticks, *x_range = nice_ticks(min(p.x for p in points), max(p.x for p in points))
    y_ticks, *y_range = nice_ticks(min(p.y for p in points), max(p.y for p in points))
    axes = PlotAxes(90, 60, width - 40, height - 80, tuple(x_range), tuple(y_range))
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    small, label_font = font(13), font(15)
    for ticks, vertical in ((x_ticks, True), (y_ticks, False)):
        step = ticks[1] - ticks[0]
        for value in ticks:
            if vertical:
                x, _ = axes.to_pixel(value, y_range[0])
                draw.line([(x, axes.top), (x, axes.bottom)], fill=GRID_LINE)
                draw.text((x, axes.bottom + 8), _tick_text(value, step), fill=INK, font=small, anchor="mt")
            else:
                _, y = axes.to_pixel(x_range[0], value)
                draw.line([(axes.left, y), (axes.right, y)], fill=GRID_LINE)
                draw.text((axes.left - 8, y), _tick_text(value, step), fill=INK, font=small, anchor="rm")
    draw.rectangle([axes.left, axes.top, axes.right, axes.bottom], outline=INK)
    draw.text((width / 2, 28), title, fill=INK, font=font(18), anchor="mm")
    draw.text(((axes.left + axes.right) / 2, height - 30), x_label, fill=INK, font=label_font, anchor="mm")
    y_title = Image.new("RGB", (axes.bottom - axes.top, 24), BACKGROUND)
    ImageDraw.Draw(y_title).text((y_title.width / 2, 12), y_label, fill=INK, font=label_font, anchor="mm")
    image.paste(y_title.rotate(90, expand=True), (12, axes.top))
    centres = [axes.to_pixel(p.x, p.y) for p in points]
    if len(centres) > 1:
        draw.line(centres, fill=GREY, width=2)
    boxes = [(x - RADIUS, y - RADIUS, x + RADIUS, y + RADIUS) for x, y in centres]
    for i, (box, point) in enumerate(zip(boxes, points)):
        draw.ellipse(box, fill=marker_colour(i, len(points)))
    for (x, y), point in zip(centres, points):
        boxes.append(_place_label(draw, point.label, x, y, boxes, small, width))
    return image, axes


def _place_label(draw, text, x, y, boxes, text_font, width):
    """Right of the point (left if it would leave the picture), moved down a line while it covers another."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=text_font, anchor="lm")
    start = x + RADIUS + 4 if x + RADIUS + 4 + right < width - 4 else x - RADIUS - 4 - right
    box = None
    for shift in (0, 16, -16, 32, -32, 48):
        box = (start + left, y + shift + top, start + right, y + shift + bottom)
        if not _overlaps(box, boxes):
            break
    draw.text((start, box[1] - top), text, fill=INK, font=text_font, anchor="lm")
    return box


@dataclass(frozen=True)
class GridLayout:
    """Where cell (row, column) lies in a labelled grid."""
    label_width: int
    header_height: int
    cell: tuple[int, int]  # width, height of every image cell
    gap: int

    def cell_box(self, row: int, column: int) -> tuple[int, int, int, int]:
        x = self.label_width + self.gap + column * (self.cell[0] + self.gap)
        y = self.header_height + self.gap + row * (self.cell[1] + self.gap)
        return x, y, x + self.cell[0], y + self.cell[1]


def labelled_grid(rows: list[list[np.ndarray]], row_labels: list[str], column_labels: list[str],
                  cell_size: int = 256) -> tuple[Image.Image, GridLayout]:
    """Images (HxWx3 uint8) in rows (settings) and columns (batch images), scaled so the longer side is
    cell_size, with the labels in a header strip and a left strip."""
    if not rows or len(row_labels) != len(rows):
        raise ValueError(f"labelled_grid: {len(rows)} rows of images but {len(row_labels)} row labels.")
    if any(len(r) != len(column_labels) for r in rows):
        raise ValueError(f"labelled_grid: every row needs {len(column_labels)} images, one per column label; got "
                         f"{[len(r) for r in rows]}.")
    shapes = {image.shape for row in rows for image in row}
    if len(shapes) != 1:
        raise ValueError(f"labelled_grid: the images differ in size ({sorted(shapes)}); they must all match.")
    h, w = next(iter(shapes))[:2]
    scale = cell_size / max(h, w)
    cell = (max(1, round(w * scale)), max(1, round(h * scale)))
    text_font = font(16)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_width = min(max(measure.textlength(t, font=text_font) for t in row_labels) + 16, 2 * cell_size)
    layout = GridLayout(int(label_width), 32, cell, 4)
    right, bottom = layout.cell_box(len(rows) - 1, len(column_labels) - 1)[2:]
    grid = Image.new("RGB", (right + layout.gap, bottom + layout.gap), BACKGROUND)
    draw = ImageDraw.Draw(grid)
    for c, text in enumerate(column_labels):
        x0, _, x1, _ = layout.cell_box(0, c)
        draw.text(((x0 + x1) / 2, layout.header_height / 2), _fit(draw, text, x1 - x0, text_font), fill=INK,
                  font=text_font, anchor="mm")
    for r, (row, text) in enumerate(zip(rows, row_labels)):
        y0, y1 = layout.cell_box(r, 0)[1::2]
        draw.text((8, (y0 + y1) / 2), _fit(draw, text, layout.label_width - 12, text_font), fill=INK,
                  font=text_font, anchor="lm")
        for c, pixels in enumerate(row):
            grid.paste(Image.fromarray(pixels).resize(cell, Image.LANCZOS), layout.cell_box(r, c)[:2])
    return grid, layout


def _fit(draw, text: str, width: float, text_font) -> str:
    """`text`, cut with an ellipsis where it is wider than `width`."""
    while len(text) > 1 and draw.textlength(text, font=text_font) > width:
        text = text[:-2] + "…"
    return text
