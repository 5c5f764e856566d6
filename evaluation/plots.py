"""The pictures of a schedule sweep, drawn with PIL (no matplotlib in ComfyUI's environment): the trade-off plot
(text alignment against consistency, one labelled point per setting) and a labelled grid of the images."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BACKGROUND, INK, GREY, GRID_LINE = (255, 255, 255), (20, 20, 20), (150, 150, 150), (232, 232, 232)
# Light to dark blue-violet, every shade far from white and grey: the sweep's order reads from the colours too.
PALETTE_START, PALETTE_END = (120, 170, 235), (40, 20, 110)
RADIUS = 7
LABEL_SHIFTS = (0, 16, -16, 32, -32, 48)  # where a point's label may go, in pixels below the point, best first
LABEL_SIZES = (16, 14, 12, 10)  # the grid's label fonts, largest first


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
        """The pixel (column, row) of the data point (x, y); y grows upward on screen."""
        (x0, x1), (y0, y1) = self.x_range, self.y_range
        return (round(self.left + (x - x0) / (x1 - x0) * (self.right - self.left)),
                round(self.bottom - (y - y0) / (y1 - y0) * (self.bottom - self.top)))


def marker_colour(index: int, count: int) -> tuple[int, int, int]:
    """The fill of the index-th of `count` points: light for the first, dark for the last."""
    t = index / max(count - 1, 1)
    return tuple(round(a + (b - a) * t) for a, b in zip(PALETTE_START, PALETTE_END))


def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def nice_ticks(values: list[float], count: int = 5) -> list[float]:
    """Ticks 1, 2 or 5 x 10^k apart whose ends cover `values` padded by 10%; the ends are the axis range."""
    low, high = min(values), max(values)
    span = high - low
    # Scores equal up to float noise are one value: their range would be all noise, ticked to 15 decimals.
    pad = span * 0.1 if span > 1e-9 * max(abs(high), 1.0) else max(abs(high) * 0.05, 0.01)
    raw = (high - low + 2 * pad) / count
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 5, 10)), key=lambda s: abs(s - raw))
    # Each tick an integer times the step: zero, where the range spans it, is exactly 0.0.
    first, last = math.floor((low - pad) / step), math.ceil((high + pad) / step)
    return [k * step for k in range(first, last + 1)]


def _tick_texts(ticks: list[float]) -> list[str]:
    """The ticks with as many decimals as their step needs."""
    decimals = max(0, -math.floor(math.log10(ticks[1] - ticks[0]) + 1e-9))
    return [f"{value:.{decimals}f}" for value in ticks]


def tradeoff_plot(points: list[PlotPoint], x_label: str, y_label: str, title: str,
                  width: int = 768, height: int = 640) -> tuple[Image.Image, PlotAxes]:
    """The points on nice axes, joined in their (sweep) order, each in marker_colour and labelled."""
    if not points:
        raise ValueError("tradeoff_plot: no points to draw; the sweep produced no scores.")
    for p in points:
        if not (math.isfinite(p.x) and math.isfinite(p.y)):
            raise ValueError(f"tradeoff_plot: point '{p.label}' has a non-finite score ({p.x}, {p.y}).")
    x_ticks, y_ticks = nice_ticks([p.x for p in points]), nice_ticks([p.y for p in points])
    axes = PlotAxes(90, 60, width - 40, height - 80, (x_ticks[0], x_ticks[-1]), (y_ticks[0], y_ticks[-1]))
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    _draw_ticks(draw, axes, x_ticks, y_ticks)
    _draw_titles(image, axes, x_label, y_label, title)
    _draw_points(draw, axes, points, width)
    return image, axes


def _draw_ticks(draw: ImageDraw.ImageDraw, axes: PlotAxes, x_ticks: list[float], y_ticks: list[float]):
    small = _font(13)
    for value, text in zip(x_ticks, _tick_texts(x_ticks)):
        x = axes.to_pixel(value, 0)[0]
        draw.line([(x, axes.top), (x, axes.bottom)], fill=GRID_LINE)
        draw.text((x, axes.bottom + 8), text, fill=INK, font=small, anchor="mt")
    for value, text in zip(y_ticks, _tick_texts(y_ticks)):
        y = axes.to_pixel(0, value)[1]
        draw.line([(axes.left, y), (axes.right, y)], fill=GRID_LINE)
        draw.text((axes.left - 8, y), text, fill=INK, font=small, anchor="rm")
    draw.rectangle([axes.left, axes.top, axes.right, axes.bottom], outline=INK)


def _draw_titles(image: Image.Image, axes: PlotAxes, x_label: str, y_label: str, title: str):
    draw, label_font = ImageDraw.Draw(image), _font(15)
    draw.text((image.width / 2, 28), title, fill=INK, font=_font(18), anchor="mm")
    draw.text(((axes.left + axes.right) / 2, image.height - 30), x_label, fill=INK, font=label_font, anchor="mm")
    # PIL writes only horizontally: the vertical title is written on a strip that is then turned.
    strip = Image.new("RGB", (axes.bottom - axes.top, 24), BACKGROUND)
    ImageDraw.Draw(strip).text((strip.width / 2, 12), y_label, fill=INK, font=label_font, anchor="mm")
    image.paste(strip.rotate(90, expand=True), (12, axes.top))


def _draw_points(draw: ImageDraw.ImageDraw, axes: PlotAxes, points: list[PlotPoint], width: int):
    centres = [axes.to_pixel(p.x, p.y) for p in points]
    if len(centres) > 1:
        draw.line(centres, fill=GREY, width=2)
    taken = [(x - RADIUS, y - RADIUS, x + RADIUS, y + RADIUS) for x, y in centres]
    for i, marker in enumerate(taken):
        draw.ellipse(marker, fill=marker_colour(i, len(points)))
    # Every marker is drawn before any label, so that no label is placed over a later point.
    for (x, y), point in zip(centres, points):
        taken.append(_place_label(draw, point.label, x, y, taken, width))


def _place_label(draw: ImageDraw.ImageDraw, text: str, x: int, y: int, taken: list, width: int) -> tuple:
    """Writes `text` right of the point (left if it would leave the picture), a line lower or higher while it
    would cover a box in `taken`; returns the box it covers."""
    small = _font(13)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=small, anchor="lm")
    start = x + RADIUS + 4
    if start + right > width - 4:
        start = x - RADIUS - 4 - right
    for shift in LABEL_SHIFTS:
        box = (start + left, y + shift + top, start + right, y + shift + bottom)
        if not any(box[0] < o[2] and o[0] < box[2] and box[1] < o[3] and o[1] < box[3] for o in taken):
            break
    draw.text((start, box[1] - top), text, fill=INK, font=small, anchor="lm")
    return box


@dataclass(frozen=True)
class GridLayout:
    """Where cell (row, column) lies in a labelled grid."""
    label_width: int  # the strip of row labels on the left
    header_height: int  # the strip of column labels on top
    cell: tuple[int, int]  # width, height of every image cell
    gap: int

    def cell_box(self, row: int, column: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of cell (row, column), right and bottom exclusive."""
        x = self.label_width + self.gap + column * (self.cell[0] + self.gap)
        y = self.header_height + self.gap + row * (self.cell[1] + self.gap)
        return x, y, x + self.cell[0], y + self.cell[1]


def labelled_grid(rows: list[list[np.ndarray]], row_labels: list[str], column_labels: list[str],
                  cell_size: int = 256) -> tuple[Image.Image, GridLayout]:
    """Images (HxWx3 uint8, all one size) in rows (settings) and columns (batch images), scaled so the longer
    side is cell_size, under a strip of column labels and right of a strip of row labels."""
    _check_grid(rows, row_labels, column_labels)
    h, w = rows[0][0].shape[:2]
    scale = cell_size / max(h, w)
    cell = (max(1, round(w * scale)), max(1, round(h * scale)))
    widest = max(_font(LABEL_SIZES[0]).getlength(text) for text in row_labels)
    layout = GridLayout(int(min(widest + 16, 2 * cell_size)), 36, cell, 4)  # longer labels wrap
    right, bottom = layout.cell_box(len(rows) - 1, len(column_labels) - 1)[2:]
    grid = Image.new("RGB", (right + layout.gap, bottom + layout.gap), BACKGROUND)
    draw = ImageDraw.Draw(grid)
    for c, text in enumerate(column_labels):
        x0, _, x1, _ = layout.cell_box(0, c)
        _write_fitted(draw, text, (x0, 2, x1, layout.header_height), "mm")
    for r, (row, text) in enumerate(zip(rows, row_labels)):
        _, y0, _, y1 = layout.cell_box(r, 0)
        _write_fitted(draw, text, (8, y0, layout.label_width - 4, y1), "lm")
        for c, pixels in enumerate(row):
            picture = Image.fromarray(pixels).resize(cell, Image.Resampling.LANCZOS)
            grid.paste(picture, layout.cell_box(r, c)[:2])
    return grid, layout


def _check_grid(rows: list[list[np.ndarray]], row_labels: list[str], column_labels: list[str]):
    if not rows or not column_labels:
        raise ValueError(f"labelled_grid: nothing to show ({len(rows)} rows, {len(column_labels)} column labels).")
    if len(row_labels) != len(rows):
        raise ValueError(f"labelled_grid: {len(rows)} rows of images but {len(row_labels)} row labels.")
    if any(len(row) != len(column_labels) for row in rows):
        raise ValueError(f"labelled_grid: every row needs {len(column_labels)} images, one per column label; got "
                         f"{[len(row) for row in rows]}.")
    shapes = {(image.shape, str(image.dtype)) for row in rows for image in row}
    shape, dtype = rows[0][0].shape, rows[0][0].dtype
    if len(shapes) != 1 or len(shape) != 3 or shape[2] != 3 or dtype != np.uint8:
        raise ValueError(f"labelled_grid: the images must all be HxWx3 uint8 arrays of one size; got "
                         f"{sorted(shapes)}.")


def _write_fitted(draw: ImageDraw.ImageDraw, text: str, box: tuple, anchor: str):
    """Writes `text` in `box` in the largest of LABEL_SIZES at which it fits wrapped; at the smallest, the lines
    that fit, the last one ending in an ellipsis."""
    width, height = box[2] - box[0], box[3] - box[1]
    for size in LABEL_SIZES:
        text_font, line_height = _font(size), size + 2
        lines = _wrap(text, width, text_font)
        if len(lines) * line_height <= height:
            break
    room = max(1, height // line_height)
    if len(lines) > room:
        lines = lines[:room - 1] + [lines[room - 1][:-1] + "…"]
    x = (box[0] + box[2]) / 2 if anchor == "mm" else box[0]
    draw.multiline_text((x, (box[1] + box[3]) / 2), "\n".join(lines), fill=INK, font=text_font, anchor=anchor,
                        spacing=2, align="center" if anchor == "mm" else "left")


def _wrap(text: str, width: float, text_font: ImageFont.FreeTypeFont) -> list[str]:
    """`text` in lines no wider than `width`, broken after spaces, '+' and ',' where it can be (sweep labels
    such as "layers=down.1+up.2" have few spaces), within a word where a word alone is too wide."""
    lines = [""]
    for piece in re.findall(r"[^ +,]*[ +,]?", text):
        for char in (piece if text_font.getlength(piece) > width else [piece]):
            if lines[-1] and text_font.getlength(lines[-1] + char) > width:
                lines.append("")
            lines[-1] += char
    return [line.strip() for line in lines]
