"""Extend Canvas and Paste Back Original: canvas geometry, fills and masks (pure torch, no ComfyUI), the
bit-exact paste back, the errors, and both nodes in the real ComfyUI executor (skipped without ComfyUI)."""
from __future__ import annotations

import os
import uuid

import numpy as np
import pytest
import torch
from PIL import Image

from masactrl_suite.completion.canvas import (FILLS, NOISE_STD, CanvasError, Padding, aspect_size, canvas_masks,
                                              extend_canvas, parse_aspect, paste_back, pixels_padding, target_padding)

EXTEND, PASTE = "MasaCtrlExtendCanvas", "MasaCtrlPasteBack"


def photo(batch=2, height=11, width=13, seed=0):
    return torch.rand(batch, height, width, 3, generator=torch.Generator().manual_seed(seed))


def bits(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous().view(torch.int32)


def assert_bit_identical(a, b):
    assert a.dtype == b.dtype == torch.float32
    assert torch.equal(a, b) and torch.equal(bits(a), bits(b))


# ----------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------
# An 11 px high, 13 px wide image: both sides need rounding up to 16/24/... The rounding goes to an extended
# side of that axis (right/bottom first), else to right/bottom.
@pytest.mark.parametrize("sides, expected", [
    ((8, 0, 0, 0), Padding(11, 0, 0, 5)),
    ((0, 8, 0, 0), Padding(0, 13, 3, 0)),
    ((0, 0, 8, 0), Padding(0, 0, 11, 5)),
    ((0, 0, 0, 8), Padding(0, 0, 3, 13)),
    ((16, 8, 24, 0), Padding(16, 13, 27, 0)),
    ((8, 8, 8, 8), Padding(8, 8, 11, 13)),
    ((3, 5, 0, 0), Padding(3, 5, 0, 0)),  # already multiples of 8: 16 x 16
])
def test_pixels_mode_every_direction_on_an_odd_image(sides, expected):
    padding = pixels_padding(13, 11, *sides)
    assert padding == expected
    image = photo()
    canvas, mask, new_area = extend_canvas(image, padding, "edge")
    width, height = padding.canvas_size(13, 11)
    assert width % 8 == 0 and height % 8 == 0
    assert canvas.shape == (2, height, width, 3) and mask.shape == new_area.shape == (2, height, width)
    inside = (slice(None), slice(padding.top, padding.top + 11), slice(padding.left, padding.left + 13))
    assert_bit_identical(canvas[inside], image)
    expected_new = torch.ones(2, height, width)
    expected_new[inside] = 0
    assert torch.equal(new_area, expected_new)
    assert torch.equal(mask, new_area)  # no feather, no seam band


def test_pixels_mode_keeps_a_multiple_of_8_image_as_asked():
    assert pixels_padding(16, 24, 0, 0, 0, 8) == Padding(0, 0, 0, 8)


@pytest.mark.parametrize("anchor, expected", [
    ("top", Padding(5, 0, 5, 14)), ("center", Padding(5, 7, 5, 7)), ("bottom", Padding(5, 14, 5, 0)),
    ("left", Padding(0, 7, 10, 7)), ("right", Padding(10, 7, 0, 7)),
    ("top left", Padding(0, 0, 10, 14)), ("top right", Padding(10, 0, 0, 14)),
    ("bottom left", Padding(0, 14, 10, 0)), ("bottom right", Padding(10, 14, 0, 0)),
])
def test_target_size_with_each_anchor(anchor, expected):
    padding = target_padding(6, 10, 16, 24, anchor)
    assert padding == expected
    image = photo(1, 10, 6)
    canvas = extend_canvas(image, padding, "mirror")[0]
    assert canvas.shape == (1, 24, 16, 3)
    assert_bit_identical(canvas[:, expected.top:expected.top + 10, expected.left:expected.left + 6], image)


def test_target_size_centres_odd_space_with_the_extra_px_right_and_below():
    assert target_padding(7, 9, 16, 16, "center") == Padding(4, 3, 5, 4)
    assert target_padding(16, 9, 16, 16, "top") == Padding(0, 0, 0, 7)  # one axis may stay as it is


@pytest.mark.parametrize("size, aspect, expected", [
    ((512, 640), "2:3", (512, 768)),  # the feet case: a 4:5 photo made 2:3, grows downwards only
    ((512, 640), "3:2", (960, 640)),
    ((512, 640), "1.5", (960, 640)),
    ((512, 640), " 16 : 9 ", (1136, 640)),
    ((683, 1024), "1:1", (1024, 1024)),
    ((683, 1024), "2:3", (688, 1032)),  # already 2:3 but 683 px wide: rounded up to 8 on both sides
])
def test_target_aspect_canvas(size, aspect, expected):
    assert aspect_size(*size, aspect) == expected


def test_target_aspect_with_anchor_places_the_photo():
    padding = target_padding(512, 640, *aspect_size(512, 640, "2:3"), "top")
    assert padding == Padding(0, 0, 0, 128)
    assert target_padding(512, 640, *aspect_size(512, 640, "3:2"), "right") == Padding(448, 0, 0, 0)


# ----------------------------------------------------------------------------------------------
# Fills
# ----------------------------------------------------------------------------------------------
PAD = Padding(3, 2, 12, 9)  # the pure function takes any padding; longer than the image on the right


def test_edge_fill_repeats_the_border_pixels():
    image = photo(2, 5, 7)
    canvas = extend_canvas(image, PAD, "edge")[0]
    reference = np.pad(image.numpy(), ((0, 0), (2, 9), (3, 12), (0, 0)), mode="edge")
    assert np.array_equal(canvas.numpy(), reference)
    assert torch.equal(canvas[:, 0, 3:10], image[:, 0]) and torch.equal(canvas[:, -1, 3:10], image[:, -1])
    assert torch.equal(canvas[:, 2:7, 0], image[:, :, 0]) and torch.equal(canvas[:, 2:7, -1], image[:, :, -1])
    assert torch.equal(canvas[:, 0, 0], image[:, 0, 0])  # corners: the corner pixel


def test_mirror_fill_reflects_also_beyond_the_image_size():
    image = photo(2, 5, 7)
    canvas = extend_canvas(image, PAD, "mirror")[0]
    reference = np.pad(image.numpy(), ((0, 0), (2, 9), (3, 12), (0, 0)), mode="reflect")
    assert np.array_equal(canvas.numpy(), reference)
    assert torch.equal(canvas[:, 1, 3:10], image[:, 1])  # the row above the image is row 1: no repeated edge
    assert torch.equal(canvas[:, 7, 3:10], image[:, 3])


def test_mirror_fill_of_a_one_px_image_repeats_it():
    image = photo(1, 1, 4)
    assert torch.equal(extend_canvas(image, Padding(0, 0, 0, 3), "mirror")[0], image.expand(1, 4, 4, 3))


@pytest.mark.parametrize("fill", FILLS)
def test_every_fill_keeps_the_original_and_stays_in_range(fill):
    image = photo(3, 11, 13)
    padding = pixels_padding(13, 11, 8, 0, 0, 16)
    canvas = extend_canvas(image, padding, fill, feather=3, seam_band=2, seed=5)[0]
    assert_bit_identical(image, photo(3, 11, 13))  # the input is not modified in place
    assert_bit_identical(canvas[:, :11, padding.left:], image)
    assert torch.isfinite(canvas).all() and canvas.min() >= 0 and canvas.max() <= 1
    again = extend_canvas(image, padding, fill, feather=3, seam_band=2, seed=5)[0]
    assert torch.equal(canvas, again)


def test_blur_fill_has_the_edge_colour_without_structure():
    image = torch.tensor([0.2, 0.5, 0.7]).expand(1, 16, 16, 3).clone()
    image[:, :, ::2] = torch.tensor([0.3, 0.6, 0.8])  # fine stripes that edge fill would continue
    padding = Padding(0, 0, 0, 64)
    edge = extend_canvas(image, padding, "edge")[0][:, 32:]
    blurred = extend_canvas(image, padding, "blur")[0][:, 32:]
    assert (edge[:, :, 1:] - edge[:, :, :-1]).abs().max() > 0.09  # the stripes go on
    assert (blurred[:, :, 1:] - blurred[:, :, :-1]).abs().max() < 0.01  # the blur keeps colour, not stripes
    assert torch.allclose(blurred.mean(dim=(1, 2)), torch.tensor([[0.25, 0.55, 0.75]]), atol=0.01)


def test_noise_fill_is_the_blur_plus_seeded_noise():
    image = torch.full((2, 16, 16, 3), 0.5)
    padding = Padding(0, 0, 0, 48)
    noise = extend_canvas(image, padding, "noise", seed=1)[0][:, 16:]
    assert torch.equal(noise, extend_canvas(image, padding, "noise", seed=1)[0][:, 16:])
    assert not torch.equal(noise, extend_canvas(image, padding, "noise", seed=2)[0][:, 16:])
    assert abs(float(noise.mean()) - 0.5) < 0.01 and abs(float(noise.std()) - NOISE_STD) < 0.01


# ----------------------------------------------------------------------------------------------
# Masks: 1 on the new area, seam_band px of the original at 1, then a linear fall-off over feather px
# ----------------------------------------------------------------------------------------------
def test_seam_band_and_feather_values_below_the_photo():
    mask, new_area = canvas_masks(16, 16, Padding(0, 0, 0, 8), feather=3, seam_band=2)
    expected_rows = {23: 1.0, 16: 1.0, 15: 1.0, 14: 1.0, 13: 0.75, 12: 0.5, 11: 0.25, 10: 0.0, 0: 0.0}
    for row, value in expected_rows.items():
        assert torch.equal(mask[row], torch.full((16,), value)), row
    assert torch.equal(new_area[16:], torch.ones(8, 16)) and torch.equal(new_area[:16], torch.zeros(16, 16))


def test_feather_measures_the_distance_to_the_nearest_new_side():
    mask = canvas_masks(16, 16, Padding(8, 0, 0, 8), feather=4, seam_band=0)[0]
    # original pixel (row r, column c) sits at canvas (r, c + 8); distance = min(16 - r, c + 1)
    assert mask[14, 8] == 0.8  # distance 1 (left edge) -> 4/5
    assert mask[12, 11] == 0.2  # min(4 bottom, 4 left) -> 1/5
    assert mask[13, 12] == 0.4  # min(3 bottom, 5 left) -> 2/5
    assert mask[5, 20] == 0.0 and mask[15, 23] == 0.8 and mask[20, 0] == 1.0


def test_sides_that_only_round_up_to_8_get_no_seam_band_or_feather():
    """A 13 px wide photo extended downwards gets 3 px on the right (to 16): those px are new area, but the
    photo's right side is not regenerated."""
    padding = pixels_padding(13, 11, 0, 0, 0, 8)
    assert padding == Padding(0, 0, 3, 13)
    mask, new_area = canvas_masks(13, 11, padding, feather=3, seam_band=2)
    assert torch.equal(mask[:, 13:], torch.ones(24, 3))
    assert torch.equal(mask[:6, :13], torch.zeros(6, 13))  # the right edge of the photo is kept
    assert torch.equal(mask[8, :13], torch.full((13,), 0.75))  # distance 3 from the new area: (2 + 3 + 1 - 3) / 4
    assert torch.equal(new_area[:11, 13:], torch.ones(11, 3))


def test_masks_cover_the_batch_and_match_the_node_outputs():
    image = photo(3, 16, 16)
    canvas, mask, new_area = extend_canvas(image, Padding(0, 0, 0, 8), "edge", feather=3, seam_band=2)
    single_mask, single_new = canvas_masks(16, 16, Padding(0, 0, 0, 8), 3, 2)
    assert mask.shape == (3, 24, 16) and torch.equal(mask, single_mask.expand(3, -1, -1))
    assert torch.equal(new_area, single_new.expand(3, -1, -1))


# ----------------------------------------------------------------------------------------------
# Paste back
# ----------------------------------------------------------------------------------------------
def test_paste_back_is_bit_identical_outside_the_mask():
    original, generated = photo(2, 8, 16, seed=1), photo(2, 8, 16, seed=2)
    original[0, 0, 0, 0] = -0.0  # equal to 0.0 in value but not in bits: an arithmetic blend would lose it
    original[0, 0, 1, 0] = 1e-40  # a subnormal
    mask = torch.zeros(2, 8, 16)
    mask[:, 6:] = 1
    mask[:, 5] = 0.25
    before = original.clone(), generated.clone()
    out = paste_back(original, generated, mask)
    assert_bit_identical(original, before[0])  # the inputs are not modified in place
    assert_bit_identical(generated, before[1])
    assert_bit_identical(out[:, :5], original[:, :5])
    assert_bit_identical(out[:, 6:], generated[:, 6:])
    assert torch.allclose(out[:, 5], 0.75 * original[:, 5] + 0.25 * generated[:, 5], atol=1e-7)


def test_paste_back_broadcasts_a_batch_of_one():
    original, generated = photo(1, 8, 8, seed=1), photo(3, 8, 8, seed=2)
    mask = torch.zeros(8, 8)  # a bare [H, W] mask is one mask
    mask[4:] = 1
    out = paste_back(original, generated, mask)
    assert out.shape == (3, 8, 8, 3)
    for i in range(3):
        assert_bit_identical(out[i, :4], original[0, :4])
        assert_bit_identical(out[i, 4:], generated[i, 4:])
    masks = torch.stack([mask, 1 - mask])
    out = paste_back(photo(2, 8, 8, seed=1), generated[:1], masks)
    assert_bit_identical(out[1, 4:], photo(2, 8, 8, seed=1)[1, 4:])


def test_extend_generate_paste_back_round_trip():
    image = photo(2, 21, 19)
    canvas, mask, new_area = extend_canvas(image, pixels_padding(19, 21, 0, 0, 0, 16), "noise", feather=4,
                                           seam_band=2)
    generated = torch.rand(canvas.shape, generator=torch.Generator().manual_seed(9))
    out = paste_back(canvas, generated, mask)
    kept = (mask == 0)[..., None].expand_as(out)
    assert kept[:, :21, :19].sum() > 0
    assert_bit_identical(out[kept], canvas[kept])
    assert_bit_identical(out[:, :21, :19][kept[:, :21, :19]], image[kept[:, :21, :19]])
    assert_bit_identical(out[new_area.bool()], generated[new_area.bool()])


# ----------------------------------------------------------------------------------------------
# Errors name the input and the fix
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call, message", [
    (lambda: pixels_padding(16, 16, 0, 0, 0, 0), "left, top, right and bottom are all 0: nothing to extend"),
    (lambda: pixels_padding(16, 16, 0, 0, 8, -8), "bottom is -8: the canvas only grows"),
    (lambda: target_padding(16, 16, 500, 16, "top"), "target_width is 500, not a multiple of 8.* such as 504"),
    (lambda: target_padding(16, 16, 16, 0, "top"), "target_height is 0, not a multiple of 8.* such as 16"),
    (lambda: target_padding(21, 16, 16, 32, "top"), r"target_width 16 is smaller than the image \(21 px wide\).*"
                                                    "use 24 or more"),
    (lambda: target_padding(16, 16, 16, 16, "top"), "16x16 is the image's own size: nothing to extend"),
    (lambda: target_padding(16, 16, 16, 32, "up"), "anchor 'up' is not one of"),
    (lambda: aspect_size(512, 768, "2:3"), r"aspect 2:3: the image \(512x768\) already has this aspect"),
    (lambda: aspect_size(16, 16, "1:5000"), "aspect 1:5000 would make a 16x80000 canvas"),
    (lambda: canvas_masks(16, 16, Padding(0, 0, 0, 8), -1, 0), "feather is -1"),
    (lambda: canvas_masks(16, 16, Padding(0, 0, 0, 8), 0, -2), "seam_band is -2"),
    (lambda: canvas_masks(16, 16, Padding(0, 0, 0, 8), 4, 12), "seam_band 12 and feather 4 reach across the whole "
                                                               "image.*below 16"),
    (lambda: extend_canvas(photo(1, 8, 8), Padding(0, 0, 0, 8), "smear"), "fill 'smear' is not one of"),
    (lambda: extend_canvas(photo(1, 8, 8), Padding(0, 0, 0, 16384), "edge"), "canvas would be 8x16392"),
    (lambda: paste_back(photo(1, 24, 16), photo(1, 24, 16), torch.ones(1, 8, 16)),
     r"mask is 16x8 but the images are 16x24 \(width x height\): use the mask from Extend Canvas"),
    (lambda: paste_back(photo(1, 24, 16), photo(1, 24, 8), torch.ones(1, 24, 16)),
     "generated is 8x24 but original is 16x24"),
    (lambda: paste_back(photo(2, 8, 8), photo(3, 8, 8), torch.ones(1, 8, 8)),
     r"batch sizes do not fit: original 2, generated 3, mask 1; each must be 1 .* or the same number \(3\)"),
    (lambda: paste_back(photo(1, 8, 8), torch.rand(1, 8, 8, 4), torch.ones(1, 8, 8)),
     "original has 3 channels but generated has 4"),
])
def test_bad_inputs_name_the_input_and_the_fix(call, message):
    with pytest.raises(CanvasError, match=message):
        call()


@pytest.mark.parametrize("aspect", ["", "abc", "2:0", "-1", "1:2:3", "inf", "2x3"])
def test_unparsable_aspect(aspect):
    with pytest.raises(CanvasError, match=f"aspect '{aspect}' is not width:height"):
        parse_aspect(aspect)


def test_seam_band_may_reach_all_but_the_farthest_row():
    assert canvas_masks(16, 16, Padding(0, 0, 0, 8), 0, 15)[0][0].max() == 0


# ----------------------------------------------------------------------------------------------
# In the real ComfyUI
# ----------------------------------------------------------------------------------------------
EXTEND_DEFAULTS = dict(mode="pixels", left=0, top=0, right=0, bottom=16, target_width=64, target_height=64,
                       aspect="2:3", anchor="top", fill="blur", feather=4, seam_band=2, seed=0)


def test_nodes_are_registered_with_a_tooltip_on_every_input(comfy):
    for node_id in (EXTEND, PASTE):
        schema = comfy.nodes.NODE_CLASS_MAPPINGS[node_id].define_schema()
        assert [i.id for i in schema.inputs if not i.tooltip] == [], node_id
    assert comfy.nodes.NODE_DISPLAY_NAME_MAPPINGS[EXTEND] == "Extend Canvas for Outpainting (MasaCtrl)"
    assert comfy.nodes.NODE_DISPLAY_NAME_MAPPINGS[PASTE] == "Paste Back Original (MasaCtrl)"


def extend_node(image, **inputs):
    return {"class_type": EXTEND, "inputs": {**EXTEND_DEFAULTS, **inputs, "image": image}}


def save(images, prefix):
    return {"class_type": "SaveImage", "inputs": {"images": images, "filename_prefix": prefix}}


def saved(comfy, outputs, node):
    out_dir = comfy.folder_paths.get_output_directory()
    return [np.asarray(Image.open(f"{out_dir}/{img['filename']}")) for img in outputs[node]["images"]]


def test_feet_pipeline_through_the_executor_keeps_the_photo_bit_exact(comfy):
    from comfy_harness import run_graph

    temp = comfy.folder_paths.get_temp_directory()
    name = f"canvas-test-{uuid.uuid4().hex}.png"
    pixels = np.random.default_rng(0).integers(0, 256, (29, 37, 3), dtype=np.uint8)  # odd height and width
    os.makedirs(temp, exist_ok=True)
    Image.fromarray(pixels).save(os.path.join(temp, name))
    g = {"load": {"class_type": "LoadImage", "inputs": {"image": f"{name} [temp]"}},
         "extend": extend_node(["load", 0]),
         "generate": {"class_type": "ImageInvert", "inputs": {"image": ["extend", 0]}},  # stands in for the sampler
         "paste": {"class_type": PASTE, "inputs": {"original": ["extend", 0], "generated": ["generate", 0],
                                                   "mask": ["extend", 1]}},
         "save_paste": save(["paste", 0], "canvas_paste"),
         "save_fill": save(["generate", 0], "canvas_fill"),
         "new_area_image": {"class_type": "MaskToImage", "inputs": {"mask": ["extend", 2]}},
         "save_new": save(["new_area_image", 0], "canvas_new")}
    outputs = run_graph(comfy, g)
    (pasted,), (inverted,), (new_area,) = (saved(comfy, outputs, n) for n in ("save_paste", "save_fill", "save_new"))
    assert pasted.shape == (48, 40, 3)  # 16 px below, rounded to 48; 37 -> 40 wide (3 px right)
    mask = canvas_masks(37, 29, Padding(0, 0, 3, 19), 4, 2)[0].numpy()
    assert np.array_equal(new_area[..., 0] == 255, canvas_masks(37, 29, Padding(0, 0, 3, 19), 0, 0)[0].numpy() == 1)
    kept = mask == 0
    assert kept[:29, :37].sum() > 29 * 37 // 2
    assert np.array_equal(pasted[:29, :37][kept[:29, :37]], pixels[kept[:29, :37]])
    assert np.array_equal(pasted[mask == 1], inverted[mask == 1])
    os.remove(os.path.join(temp, name))


def test_target_modes_with_a_batch_through_the_executor(comfy):
    from comfy_harness import run_graph

    empty = {"class_type": "EmptyImage", "inputs": {"width": 30, "height": 20, "batch_size": 2, "color": 0x406080}}
    g = {"empty": empty,
         "size": extend_node(["empty", 0], mode="target size", target_width=48, target_height=32, anchor="bottom right",
                             fill="noise", seed=3),
         "aspect": extend_node(["empty", 0], mode="target aspect", aspect="1:1", anchor="center", fill="mirror"),
         "save_size": save(["size", 0], "canvas_size"), "save_aspect": save(["aspect", 0], "canvas_aspect")}
    outputs = run_graph(comfy, g)
    size, aspect = saved(comfy, outputs, "save_size"), saved(comfy, outputs, "save_aspect")
    assert [a.shape for a in size] == [(32, 48, 3)] * 2 and [a.shape for a in aspect] == [(32, 32, 3)] * 2
    colour = np.array([0x40, 0x60, 0x80], dtype=np.uint8)
    assert (size[0][12:, 18:] == colour).all() and (aspect[1] == colour).all()  # mirror of one colour: that colour


def test_bad_inputs_through_the_executor_name_the_input(comfy):
    from comfy_harness import run_graph

    empty = {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 0}}
    with pytest.raises(RuntimeError,
                       match=r"Extend Canvas for Outpainting \(MasaCtrl\): target_width is 500, not a multiple of 8"):
        run_graph(comfy, {"empty": empty, "extend": extend_node(["empty", 0], mode="target size", target_width=500),
                          "save": save(["extend", 0], "canvas_bad")})
    g = {"empty": empty, "a": extend_node(["empty", 0], bottom=16), "b": extend_node(["empty", 0], bottom=8),
         "paste": {"class_type": PASTE, "inputs": {"original": ["a", 0], "generated": ["a", 0], "mask": ["b", 1]}},
         "save": save(["paste", 0], "canvas_bad")}
    with pytest.raises(RuntimeError, match=r"Paste Back Original \(MasaCtrl\): mask is 16x24 but the images are "
                                           r"16x32"):
        run_graph(comfy, g)
    with pytest.raises(ValueError, match="ComfyUI rejected the graph.*left"):
        run_graph(comfy, {**g, "a": extend_node(["empty", 0], left=-8)})
