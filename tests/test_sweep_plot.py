"""The sweep's pictures (PIL only): the trade-off plot puts every point where its axes say, in its colour, joined in
sweep order, with its label beside it; the labelled grid puts every image in its cell under its labels; bad input
is refused with the reason."""
import math

import numpy as np
import pytest

from masactrl_suite.evaluation import plots as plot
from masactrl_suite.evaluation.plots import PlotPoint, labelled_grid, marker_colour, nice_ticks, tradeoff_plot

WHITE = (255, 255, 255)
# Far apart, with a bend (so that joining 0 to 2 would not lie on the drawn line), labels clear of each other.
POINTS = [PlotPoint("off", 0.32, 0.60), PlotPoint("end_step=10", 0.30, 0.70), PlotPoint("end_step=20", 0.31, 0.80),
          PlotPoint("end_step=-1", 0.28, 0.88)]
LABEL_HALF_HEIGHT = 9  # a 13 px label line, around the point's row


def pixels(image):
    return np.asarray(image.convert("RGB"))


def ink(picture):
    """Where the picture has dark (text) pixels."""
    return picture.max(-1) < 120


def drawn(points, **kwargs):
    image, axes = tradeoff_plot(points, "text alignment", "consistency", "MasaCtrl sweep", **kwargs)
    return pixels(image), axes


def unlabelled(points):
    return [PlotPoint("", p.x, p.y) for p in points]


def label_ink(points, **kwargs):
    """The dark pixels that the points' labels add to the plot."""
    (labelled, axes), (bare, _) = drawn(points, **kwargs), drawn(unlabelled(points), **kwargs)
    return ink(labelled) & (labelled != bare).any(-1), axes


# ---- the trade-off plot --------------------------------------------------------------------------------------

@pytest.mark.parametrize("points", [
    POINTS, POINTS[:1], [PlotPoint("zero", 0.0, 0.0)],
    [PlotPoint("a", 0.3, 0.5), PlotPoint("b", 0.3, 0.5)],  # all equal
    [PlotPoint("a", 0.3, 0.5), PlotPoint("b", 0.3, 0.9)],  # all x equal
    [PlotPoint("a", 0.3, 0.5), PlotPoint("b", 0.3 + 1e-15, 0.5)],  # equal but for float noise
    [PlotPoint("a", -50.0, 1e4), PlotPoint("b", 20.0, -4e3), PlotPoint("c", 120.0, 3e4)]])  # wide, negative
def test_every_point_is_drawn_inside_the_plot_where_the_axes_put_it(points):
    picture, axes = drawn(points, width=700, height=500)
    assert picture.shape == (500, 700, 3)
    for low, high, values in ((*axes.x_range, [p.x for p in points]), (*axes.y_range, [p.y for p in points])):
        assert low < min(values) and max(values) < high  # padded around the data, never zero wide
    at = {}
    for i, p in enumerate(points):
        at[axes.to_pixel(p.x, p.y)] = i  # a later marker covers an earlier one at the same place
    for (x, y), i in at.items():
        assert axes.left < x < axes.right and axes.top < y < axes.bottom
        assert tuple(picture[y, x]) == marker_colour(i, len(points))


def test_the_range_is_padded_by_about_a_tenth():
    _, axes = drawn(POINTS)
    for (low, high), values in ((axes.x_range, [p.x for p in POINTS]), (axes.y_range, [p.y for p in POINTS])):
        span = max(values) - min(values)
        assert min(values) - low >= 0.09 * span and high - max(values) >= 0.09 * span
        assert high - low <= 2 * span  # no more than the padding and one tick step more
    rows = [axes.to_pixel(p.x, p.y)[1] for p in sorted(POINTS, key=lambda p: p.y)]
    assert rows == sorted(rows, reverse=True)  # higher consistency, higher on the picture


@pytest.mark.parametrize("values", [[0.28, 0.32], [0.6, 0.88], [-0.2, 0.9], [0.0], [0.3], [7.0, 7.0], [120, 3e4],
                                    [0.3, 0.3 + 1e-15], [-1e-3, 2e-3], [-0.33, 0.27], [-7.1, 0.4]])
def test_ticks_are_1_2_or_5_times_a_power_of_ten_and_cover_the_data(values):
    ticks = nice_ticks(values)
    steps = np.diff(ticks)
    assert 3 <= len(ticks) <= 12 and np.allclose(steps, steps[0])
    mantissa = steps[0] / 10 ** math.floor(math.log10(steps[0]) + 1e-9)
    assert min(abs(mantissa - m) for m in (1, 2, 5)) < 1e-6
    assert all(abs(t / steps[0] - round(t / steps[0])) < 1e-6 for t in ticks)  # at multiples of the step
    assert ticks[0] < min(values) and max(values) < ticks[-1]
    if min(values) < 0 < max(values):  # zero itself, not a float near it (printed "-0.00")
        assert 0.0 in ticks and all(math.copysign(1, t) == 1 for t in ticks if t == 0)


def test_points_are_joined_in_sweep_order():
    picture, axes = drawn(unlabelled(POINTS))
    centres = [np.array(axes.to_pixel(p.x, p.y)) for p in POINTS]

    def grey_near(a, b):
        x, y = (a + b) // 2
        return (picture[y - 1:y + 2, x - 1:x + 2] == plot.GREY).all(-1).any()

    assert all(grey_near(a, b) for a, b in zip(centres, centres[1:]))
    assert not grey_near(centres[0], centres[2]) and not grey_near(centres[0], centres[3])


def test_every_label_is_written_beside_its_point_and_nowhere_else():
    text, axes = label_ink(POINTS)
    expected = np.zeros_like(text)
    for p in POINTS:
        x, y = axes.to_pixel(p.x, p.y)
        beside = text[y - LABEL_HALF_HEIGHT:y + LABEL_HALF_HEIGHT, x + plot.RADIUS:x + plot.RADIUS + 120]
        assert beside.sum() > 20, f"no label right of '{p.label}'"
        expected[y - LABEL_HALF_HEIGHT:y + LABEL_HALF_HEIGHT, x + plot.RADIUS:x + plot.RADIUS + 120] = True
    assert not (text & ~expected).any()


def test_a_label_that_would_leave_the_picture_goes_left_of_its_point():
    points = POINTS[:3] + [PlotPoint("end_step=-1, the last and the rightmost point", 0.33, 0.88)]
    text, axes = label_ink(points)
    x, y = axes.to_pixel(0.33, 0.88)
    rows = text[y - LABEL_HALF_HEIGHT:y + LABEL_HALF_HEIGHT]
    assert rows[:, :x - plot.RADIUS].sum() > 100 and not rows[:, x + plot.RADIUS:].any()


def test_a_label_that_would_cover_another_moves_a_line_down():
    together = [PlotPoint("first", 0.3, 0.7), PlotPoint("second", 0.3, 0.7)]
    text, axes = label_ink(together)
    alone, _ = label_ink(together[:1] + unlabelled(together[1:]))
    x, y = axes.to_pixel(0.3, 0.7)
    line_below = np.s_[y + LABEL_HALF_HEIGHT:y + LABEL_HALF_HEIGHT + 16, x:x + 120]
    assert text[line_below].sum() > 20 and not alone[line_below].any()


def test_titles_and_tick_labels_are_written():
    titled, axes = drawn(POINTS)
    blank = pixels(tradeoff_plot(POINTS, "", "", "")[0])
    assert titled.shape == (640, 768, 3) and tuple(titled[5, 5]) == WHITE
    title, x_title, y_title = np.s_[:axes.top - 10], np.s_[-45:], np.s_[axes.top:axes.bottom, :40]
    for region in (title, x_title, y_title):
        assert ink(titled[region]).any() and not ink(blank[region]).any()
    assert ink(blank[axes.bottom + 5:axes.bottom + 25, axes.left - 20:axes.right + 20]).any()  # x ticks
    assert ink(blank[axes.top:axes.bottom, 40:axes.left - 5]).any()  # y ticks


def test_marker_colours_run_light_to_dark_and_stand_out():
    colours = [marker_colour(i, 6) for i in range(6)]
    assert len(set(colours)) == 6 and marker_colour(0, 1) == colours[0]
    assert all(sum(a) > sum(b) for a, b in zip(colours, colours[1:]))  # the sweep's order, light to dark
    for colour in colours:
        for other in (WHITE, plot.GREY, plot.GRID_LINE, plot.INK):
            assert np.abs(np.subtract(colour, other)).sum() > 60


@pytest.mark.parametrize("points,match", [
    ([], "no points"), ([PlotPoint("end_step=5", float("nan"), 0.5)], "'end_step=5' has a non-finite"),
    ([POINTS[0], PlotPoint("off", 0.1, float("inf"))], "'off' has a non-finite"),
    ([PlotPoint("low", 0.1, -float("inf"))], "'low'")])
def test_bad_points_are_refused(points, match):
    with pytest.raises(ValueError, match=match):
        tradeoff_plot(points, "x", "y", "t")


# ---- the labelled grid ---------------------------------------------------------------------------------------

def solid(colour, h=40, w=60):
    return np.full((h, w, 3), colour, np.uint8)


COLOURS = [[(250, 0, 0), (0, 200, 0), (0, 0, 250)], [(200, 200, 0), (0, 200, 200), (200, 0, 200)]]
ROW_LABELS, COLUMN_LABELS = ["off", "end_step=-1"], ["0: source", "1: target", "2: target"]


def colour_grid(row_labels=ROW_LABELS, column_labels=COLUMN_LABELS, cell_size=90):
    grid, layout = labelled_grid([[solid(c) for c in row] for row in COLOURS], row_labels, column_labels, cell_size)
    return pixels(grid), layout


def test_grid_size_follows_from_the_cell_size_and_the_counts():
    picture, layout = colour_grid()
    assert layout.cell == (90, 60)  # 60x40 images: the longer side becomes 90
    width = layout.label_width + 3 * (90 + layout.gap) + layout.gap
    height = layout.header_height + 2 * (60 + layout.gap) + layout.gap
    assert picture.shape == (height, width, 3)
    assert tuple(picture[-1, -1]) == WHITE and tuple(picture[0, 0]) == WHITE


def test_every_image_is_in_its_cell_and_nowhere_else():
    picture, layout = colour_grid()
    for r, row in enumerate(COLOURS):
        for c, colour in enumerate(row):
            x0, y0, x1, y1 = layout.cell_box(r, c)
            assert tuple(picture[(y0 + y1) // 2, (x0 + x1) // 2]) == colour
            found = (picture == colour).all(-1)
            assert found[y0:y1, x0:x1].all()
            found[y0:y1, x0:x1] = False
            assert not found.any(), f"colour of cell {r, c} outside it"


def test_images_keep_their_aspect():
    tall = np.zeros((80, 40, 3), np.uint8)
    tall[:, :20] = (255, 0, 0)
    tall[:, 20:] = (0, 0, 255)
    grid, layout = labelled_grid([[tall]], ["r"], ["c"], cell_size=64)
    x0, y0, x1, y1 = layout.cell_box(0, 0)
    assert layout.cell == (32, 64) and (x1 - x0, y1 - y0) == (32, 64)
    cell = pixels(grid)[y0:y1, x0:x1]
    assert (cell[:, :12] == (255, 0, 0)).all() and (cell[:, -12:] == (0, 0, 255)).all()


def test_the_label_strips_hold_the_labels():
    picture, layout = colour_grid()
    blank, _ = colour_grid(["", ""], ["", "", ""])
    header, left = np.s_[:layout.header_height], np.s_[layout.header_height:, :layout.label_width]
    for strip in (header, left):
        assert ink(picture[strip]).any() and not ink(blank[strip]).any()
    for c in range(3):  # each column's label above its column
        x0, _, x1, _ = layout.cell_box(0, c)
        assert ink(picture[:layout.header_height, x0:x1]).sum() > 20


def test_long_labels_wrap_inside_their_strip():
    long = "layers=" + "+".join(f"down.{i}" for i in range(12))
    picture, layout = colour_grid([long, "off"], ["0: source, the image every target copies from", "1", "2"], 64)
    assert layout.label_width <= 2 * 64
    _, y0, _, y1 = layout.cell_box(0, 0)
    rows = np.flatnonzero(ink(picture[:, :layout.label_width]).any(1))
    first_row_label = rows[(rows >= y0) & (rows < y1)]
    assert first_row_label.max() - first_row_label.min() > 20  # more than one line
    assert not ink(picture[layout.header_height:, layout.label_width:]).any()  # nothing spills into the cells
    x0, _, x1, _ = layout.cell_box(0, 0)
    header, next_column = ink(picture[:layout.header_height]), layout.cell_box(0, 1)[0]
    assert header[:, x0:x1].any() and not header[:, :x0 - 2].any() and not header[:, x1 + 2:next_column].any()


@pytest.mark.parametrize("rows,row_labels,column_labels,match", [
    ([], [], ["a"], "nothing to show"),
    ([[solid(0)]], ["a"], [], "nothing to show"),
    ([[solid(0)]], ["a", "b"], ["c"], "1 rows of images but 2 row labels"),
    ([[solid(0)], [solid(0), solid(0)]], ["a", "b"], ["c"], r"every row needs 1 images.*\[1, 2\]"),
    ([[solid(0), solid(0, 20, 20)]], ["a"], ["c", "d"], "of one size"),
    ([[np.zeros((8, 8), np.uint8)]], ["a"], ["c"], "HxWx3 uint8"),
    ([[np.zeros((8, 8, 3), np.float32)]], ["a"], ["c"], "HxWx3 uint8"),
])
def test_grid_refuses_mismatched_input(rows, row_labels, column_labels, match):
    with pytest.raises(ValueError, match=match):
        labelled_grid(rows, row_labels, column_labels)
