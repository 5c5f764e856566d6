"""Outpainting canvases: grow an image, fill the new area, mask it for inpainting; and paste generated pixels
back so that every pixel outside the mask stays bit-identical to the original.

Images are [B, H, W, C], masks [B, H, W], values 0..1 (ComfyUI's IMAGE and MASK). Canvas sides are
multiples of 8 px because SD's VAE works in 8 px blocks (VAE Encode crops anything else, and the crop would
no longer line up with the original for the paste back)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

MULTIPLE = 8
MAX_SIDE = 16384  # ComfyUI's MAX_RESOLUTION
FILLS = ("edge", "mirror", "blur", "noise")
# Where the original sits on a larger canvas, as (x, y) fractions of the free space left/above it.
ANCHORS = {"top": (0.5, 0.0), "center": (0.5, 0.5), "bottom": (0.5, 1.0), "left": (0.0, 0.5), "right": (1.0, 0.5),
           "top left": (0.0, 0.0), "top right": (1.0, 0.0), "bottom left": (0.0, 1.0), "bottom right": (1.0, 1.0)}
NOISE_STD = 0.2


class CanvasError(ValueError):
    """A bad input; the message names it and the fix."""


def up8(n: int) -> int:
    return -(-n // MULTIPLE) * MULTIPLE


@dataclass(frozen=True)
class Padding:
    """Pixels added on each side of the image."""
    left: int
    top: int
    right: int
    bottom: int

    def canvas_size(self, width: int, height: int) -> tuple[int, int]:
        return width + self.left + self.right, height + self.top + self.bottom


def pixels_padding(width: int, height: int, left: int, top: int, right: int, bottom: int) -> Padding:
    """Grow by the given px, rounded up so both canvas sides are multiples of 8. The rounding goes to an extended
    side of that axis (right/bottom first), or to right/bottom when that axis is not extended: those few px are
    new area like the rest, so the original is never cropped or scaled."""
    sides = dict(left=left, top=top, right=right, bottom=bottom)
    for name, value in sides.items():
        if value < 0:
            raise CanvasError(f"{name} is {value}: the canvas only grows, so use 0 or more px (crop the image "
                              "first to remove pixels).")
    if not any(sides.values()):
        raise CanvasError("left, top, right and bottom are all 0: nothing to extend. Set the side(s) to grow, "
                          "e.g. bottom 256 to extend a photo downwards.")
    extra_x = up8(width + left + right) - (width + left + right)
    extra_y = up8(height + top + bottom) - (height + top + bottom)
    left, right = (left + extra_x, right) if left and not right else (left, right + extra_x)
    top, bottom = (top + extra_y, bottom) if top and not bottom else (top, bottom + extra_y)
    return Padding(left, top, right, bottom)


def target_padding(width: int, height: int, target_width: int, target_height: int, anchor: str) -> Padding:
    """Grow to exactly target_width x target_height, the original placed by `anchor`."""
    if anchor not in ANCHORS:
        raise CanvasError(f"anchor '{anchor}' is not one of {list(ANCHORS)}.")
    for name, value, size, extent in (("target_width", target_width, width, "wide"),
                                      ("target_height", target_height, height, "high")):
        if value <= 0 or value % MULTIPLE:
            raise CanvasError(f"{name} is {value}, not a multiple of 8 (SD's VAE works in 8 px blocks): use a "
                              f"multiple of 8 such as {up8(max(value, size))}.")
        if value < size:
            raise CanvasError(f"{name} {value} is smaller than the image ({size} px {extent}): the canvas only "
                              f"grows; use {up8(size)} or more.")
    if (target_width, target_height) == (width, height):
        raise CanvasError(f"target_width x target_height {target_width}x{target_height} is the image's own size: "
                          "nothing to extend; make at least one of them larger.")
    fx, fy = ANCHORS[anchor]
    left, top = int((target_width - width) * fx), int((target_height - height) * fy)
    return Padding(left, top, target_width - width - left, target_height - height - top)


def parse_aspect(aspect: str) -> float:
    """'W:H' or a single number (width / height) -> width / height."""
    parts = aspect.strip().split(":")
    try:
        numbers = [float(p) for p in parts] if len(parts) <= 2 else []
    except ValueError:
        numbers = []
    if not numbers or not all(math.isfinite(n) and n > 0 for n in numbers):
        raise CanvasError(f"aspect '{aspect}' is not width:height (e.g. 2:3 for a portrait, 16:9 for a landscape) "
                          "or a positive number (width / height, e.g. 0.75).")
    return numbers[0] / numbers[1] if len(numbers) == 2 else numbers[0]


def aspect_size(width: int, height: int, aspect: str) -> tuple[int, int]:
    """The smallest canvas of multiples of 8 that holds the image and has `aspect` (to the nearest 8 px): only
    the side that is too short for the aspect grows (beyond rounding up to 8)."""
    ratio = parse_aspect(aspect)
    if width / height < ratio:
        target_height = up8(height)
        target_width = max(up8(width), MULTIPLE * math.floor(target_height * ratio / MULTIPLE + 0.5))
    else:
        target_width = up8(width)
        target_height = max(up8(height), MULTIPLE * math.floor(target_width / ratio / MULTIPLE + 0.5))
    if (target_width, target_height) == (width, height):
        raise CanvasError(f"aspect {aspect}: the image ({width}x{height}) already has this aspect: nothing to "
                          "extend; choose a taller (e.g. 2:3) or wider (e.g. 16:9) aspect.")
    if max(target_width, target_height) > MAX_SIDE:
        raise CanvasError(f"aspect {aspect} would make a {target_width}x{target_height} canvas, more than ComfyUI's "
                          f"{MAX_SIDE} px per side: choose an aspect closer to the image's ({width / height:.3g}).")
    return target_width, target_height


def _source_index(n: int, before: int, after: int, mirrored: bool) -> torch.Tensor:
    """For each canvas row (or column), the image row it copies: the nearest edge, or mirrored back and forth
    (reflection without repeating the edge pixel, so any extension length works)."""
    i = torch.arange(-before, n + after)
    if mirrored and n > 1:
        period = 2 * (n - 1)
        i = i.remainder(period)
        return torch.where(i >= n, period - i, i)
    return i.clamp(0, n - 1)


def _box_blur(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """Mean over 2 * radius + 1 px along `dim` (edges repeated), by cumulative sums: O(1) per pixel for any radius."""
    n = x.shape[dim]
    padded = x.index_select(dim, torch.arange(-radius - 1, n + radius, device=x.device).clamp(0, n - 1))
    sums = padded.double().cumsum(dim)
    return ((sums.narrow(dim, 2 * radius + 1, n) - sums.narrow(dim, 0, n)) / (2 * radius + 1)).to(x.dtype)


def blur(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Three box passes per axis of an IMAGE batch: close to a Gaussian blur with sigma ~ radius."""
    for _ in range(3):
        x = _box_blur(_box_blur(x, radius, 1), radius, 2)
    return x


def canvas_masks(width: int, height: int, padding: Padding, feather: int, seam_band: int):
    """(mask, new_area), each [H, W] of the canvas. new_area: 1 exactly on the added px. mask: 1 on the added px
    and on the original's px within seam_band of them, then falling linearly to 0 over `feather` px further into
    the original: at distance d (1 = next to the new area) it is (seam_band + feather + 1 - d) / (feather + 1),
    clipped to 0..1. Sides that grow by less than 8 px only round the canvas up to a multiple of 8: they get no
    seam band or feather, since regenerating a strip of the photo along a side that hardly grows costs more
    than it hides."""
    for name, value in (("feather", feather), ("seam_band", seam_band)):
        if value < 0:
            raise CanvasError(f"{name} is {value}; use 0 or more px.")
    canvas_width, canvas_height = padding.canvas_size(width, height)
    inside = (slice(padding.top, padding.top + height), slice(padding.left, padding.left + width))
    new_area = torch.ones(canvas_height, canvas_width)
    new_area[inside] = 0
    rows, cols = torch.arange(height, dtype=torch.float64)[:, None], torch.arange(width, dtype=torch.float64)[None]
    distance = torch.full((height, width), math.inf, dtype=torch.float64)
    for grown, d in ((padding.top, rows + 1), (padding.bottom, height - rows),
                     (padding.left, cols + 1), (padding.right, width - cols)):
        if grown >= MULTIPLE:
            distance = torch.minimum(distance, d)
    soft = ((seam_band + feather + 1 - distance) / (feather + 1)).clamp(0, 1)
    if soft.min() > 0:
        raise CanvasError(f"seam_band {seam_band} and feather {feather} reach across the whole image "
                          f"({width}x{height}): no original pixel would be kept. Keep seam_band + feather below "
                          f"{int(distance.max())}.")
    mask = new_area.clone()
    mask[inside] = soft.float()
    return mask, new_area


def extend_canvas(image: torch.Tensor, padding: Padding, fill: str = "edge", feather: int = 0, seam_band: int = 0,
                  seed: int = 0):
    """(canvas [B, H, W, C], mask [B, H, W], new_area [B, H, W]): the image with `padding` added, filled by
    `fill`; the original's pixels are copied unchanged."""
    if image.ndim != 4:
        raise CanvasError(f"image has shape {list(image.shape)}; an IMAGE batch is [batch, height, width, channels].")
    if fill not in FILLS:
        raise CanvasError(f"fill '{fill}' is not one of {list(FILLS)}.")
    batch, height, width, channels = image.shape
    canvas_width, canvas_height = padding.canvas_size(width, height)
    if max(canvas_width, canvas_height) > MAX_SIDE:
        raise CanvasError(f"the canvas would be {canvas_width}x{canvas_height}, more than ComfyUI's {MAX_SIDE} px "
                          "per side: extend less.")
    mask, new_area = canvas_masks(width, height, padding, feather, seam_band)
    mirrored = fill == "mirror"
    rows = _source_index(height, padding.top, padding.bottom, mirrored).to(image.device)
    cols = _source_index(width, padding.left, padding.right, mirrored).to(image.device)
    canvas = image[:, rows][:, :, cols]
    if fill in ("blur", "noise"):
        smooth = blur(canvas, max(2, max(canvas_width, canvas_height) // 16)).clamp(0, 1)
        if fill == "noise":
            noise = torch.randn(canvas.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
            smooth = (smooth + NOISE_STD * noise.to(smooth)).clamp(0, 1)
        canvas = torch.where(new_area.to(image.device, torch.bool)[None, ..., None], smooth, canvas)
    mask, new_area = (m.to(image.device).expand(batch, -1, -1).clone() for m in (mask, new_area))
    return canvas, mask, new_area


def paste_back(original: torch.Tensor, generated: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`generated` where mask is 1, `original` (bit-identical) where it is 0, blended linearly in between.
    A batch of 1 (of any input) is used for every image of the others."""
    if mask.ndim == 2:
        mask = mask[None]
    for name, x, dims in (("original", original, 4), ("generated", generated, 4), ("mask", mask, 3)):
        if x.ndim != dims:
            raise CanvasError(f"{name} has shape {list(x.shape)}; expected {dims} dimensions.")
    height, width = original.shape[1:3]
    if generated.shape[1:3] != original.shape[1:3]:
        raise CanvasError(f"generated is {generated.shape[2]}x{generated.shape[1]} but original is {width}x{height} "
                          "(width x height): paste back onto the canvas the image was generated from (VAE Encode "
                          "crops sizes that are not multiples of 8; Extend Canvas makes canvases it need not crop).")
    if mask.shape[1:] != original.shape[1:3]:
        raise CanvasError(f"mask is {mask.shape[2]}x{mask.shape[1]} but the images are {width}x{height} (width x "
                          "height): use the mask from Extend Canvas for this canvas.")
    if generated.shape[3] != original.shape[3]:
        raise CanvasError(f"original has {original.shape[3]} channels but generated has {generated.shape[3]}: "
                          "paste an RGB image onto an RGB image.")
    batches = {"original": original.shape[0], "generated": generated.shape[0], "mask": mask.shape[0]}
    batch = max(batches.values())
    if any(b not in (1, batch) for b in batches.values()):
        raise CanvasError("the batch sizes do not fit: " + ", ".join(f"{k} {v}" for k, v in batches.items())
                          + f"; each must be 1 (used for every image) or the same number ({batch}).")
    generated = generated.to(original.device, original.dtype)
    weight = mask.to(original.device, original.dtype).clamp(0, 1)[..., None]
    blended = original + (generated - original) * weight
    return torch.where(weight <= 0, original, torch.where(weight >= 1, generated, blended))
