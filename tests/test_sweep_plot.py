"""The sweep's pictures (PIL only): the trade-off plot puts every point where its axes say, in its colour, with its
label, and the labelled grid puts every image in its cell; bad input is refused with the reason."""
import importlib.util
import sys

import numpy as np
import pytest

from conftest import PACK_DIR

# Loaded alone: nodes/__init__.py imports ComfyUI, which this pure module and its tests do not need.
_spec = importlib.util.spec_from_file_location("masactrl_sweep_plot", PACK_DIR / "nodes" / "sweep_plot.py")
plot = sys.modules["masactrl_sweep_plot"] = importlib.util.module_from_spec(_spec)  # dataclasses look it up
_spec.loader.exec_module(plot)
PlotPoint, labelled_grid, marker_colour, tradeoff_plot = (plot.PlotPoint, plot.labelled_grid, plot.marker_colour,
                                                          plot.tradeoff_plot)

POINTS = [PlotPoint("off", 0.31, 0.62), PlotPoint("end_step=10", 0.30, 0.70), PlotPoint("end_step=20", 0.295, 0.78),
          PlotPoint("end_step=-1", 0.285, 0.86)]


def pixels(image):
    return np.asarray(image.convert("RGB"))


def is_ink(region):
    return (region.max(-1) < 120).any()  # dark text pixels


@pytest.mark.parametrize("points", [POINTS, POINTS[:1], [PlotPoint("a", 0.3, 0.5), PlotPoint("b", 0.3, 0.5)],
                                    [PlotPoint("a", -0.2, 1.0), PlotPoint("b", 0.9, -0.4)]])
def test_every_point_is_drawn_where_the_axes_put_it(points):
    image, axes = tradeoff_plot(points, "text", "consistency", "title", width=700, height=500)
    assert image.size == (700, 500)
    assert axes.x_range[0] < min(p.x for p in points) and axes.x_range[1] > max(p.x for p in points)
    assert axes.y_range[0] < min(p.y for p in points) and axes.y_range[1] > max(p.y for p in points)
    picture = pixels(image)
    last = {}
    for i, p in enumerate(points):
        last[axes.to_pixel(p.x, p.y)] = i  # a later marker covers an earlier one at the same place
    for (x, y), i in last.items():
        assert axes.left < x < axes.right and axes.top < y < axes.bottom
        assert tuple(picture[y, x]) == marker_colour(i, len(points))
    x, y = axes.to_pixel(points[0].x, points[0].y)
    label = picture[y - 12:y + 12, max(x - 120, 0):x + 120]
    assert is_ink(label)


def test_markers_are_distinct_and_ordered():
    colours = [marker_colour(i, 5) for i in range(5)]
    assert len(set(colours)) == 5 and all(c != (255, 255, 255) for c in colours)
    assert sum(colours[0]) > sum(colours[-1])  # light to dark along the sweep
    assert marker_colour(0, 1) == colours[0]


def test_titles_and_ticks_are_written():
    image, axes = tradeoff_plot(POINTS, "text alignment", "consistency", "MasaCtrl sweep")
    picture = pixels(image)
    assert image.size == (768, 640)
    assert is_ink(picture[:axes.top - 10, 200:560])  # the title
    assert is_ink(picture[axes.bottom + 5:, axes.left:axes.right])  # x ticks and label
    assert is_ink(picture[axes.top:axes.bottom, :axes.left - 5])  # y ticks and label


@pytest.mark.parametrize("points,match", [([], "no points"), ([PlotPoint("bad", float("nan"), 0.5)], "'bad'"),
                                          ([PlotPoint("inf", 0.1, float("inf"))], "'inf' has a non-finite")])
def test_bad_points_are_refused(points, match):
    with pytest.raises(ValueError, match=match):
        tradeoff_plot(points, "x", "y", "t")


def solid(colour, h=40, w=60):
    return np.full((h, w, 3), colour, np.uint8)


def test_grid_puts_every_image_in_its_cell():
    colours = [[(250, 0, 0), (0, 200, 0), (0, 0, 250)], [(200, 200, 0), (0, 200, 200), (200, 0, 200)]]
    grid, layout = labelled_grid([[solid(c) for c in row] for row in colours], ["off", "end_step=-1"],
                                 ["0: source", "1: target", "2: target"], cell_size=90)
    assert layout.cell == (90, 60)
    assert grid.size == (layout.cell_box(1, 2)[2] + layout.gap, layout.cell_box(1, 2)[3] + layout.gap)
    picture = pixels(grid)
    for r, row in enumerate(colours):
        for c, colour in enumerate(row):
            x0, y0, x1, y1 = layout.cell_box(r, c)
            assert tuple(picture[(y0 + y1) // 2, (x0 + x1) // 2]) == colour
            assert (picture[y0:y1, x0:x1] == colour).all(-1).mean() > 0.95
            assert not (picture == colour).all(-1)[:, :layout.label_width].any()
    assert is_ink(picture[:layout.header_height])  # the column labels
    assert is_ink(picture[layout.header_height:, :layout.label_width])  # the row labels


def test_long_labels_are_cut_to_fit():
    grid, layout = labelled_grid([[solid((0, 0, 0))]], ["layers=" + "encoder+decoder" * 20], ["0: source"], 64)
    assert layout.label_width <= 2 * 64 and grid.size[0] <= layout.label_width + 64 + 3 * layout.gap


@pytest.mark.parametrize("rows,row_labels,column_labels,match", [
    ([], [], ["a"], "0 rows of images but 0 row labels"),
    ([[solid(0)]], ["a", "b"], ["c"], "1 rows of images but 2 row labels"),
    ([[solid(0)], [solid(0), solid(0)]], ["a", "b"], ["c"], "every row needs 1 images"),
    ([[solid(0), solid(0, 20, 20)]], ["a"], ["c", "d"], "the images differ in size"),
])
def test_grid_refuses_mismatched_input(rows, row_labels, column_labels, match):
    with pytest.raises(ValueError, match=match):
        labelled_grid(rows, row_labels, column_labels)
