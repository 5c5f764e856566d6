"""Vital layers (Stable Flow, Avrahami et al., CVPR 2025): the blocks of a diffusion transformer whose removal
changes the image most. Each block is bypassed in turn (its output is its input) with everything else, the
noise included, unchanged; the change is measured against the run with every block:

    change_l = ||x_l - x_ref|| / ||x_ref||        (the final latents of the whole batch)

Stable Flow measures the change with DINOv2 on decoded images, over many prompts; here it is measured on the
user's own model, prompt and seed, in latent space (no extra model needed), so the ranking is the one that
matters for this picture. The selection is the `top_k` most vital blocks, which the MasaCtrl node takes as its
`layers` input: Stable Flow injects attention only there, so that an edit keeps the subject without freezing
the whole image."""
from __future__ import annotations

import torch
from PIL import Image, ImageDraw, ImageFont

from .plots import BACKGROUND, GREY, INK, PALETTE_END, PALETTE_START, nice_ticks


def _font(size: int):
    return ImageFont.load_default(size=size)


def relative_change(reference: torch.Tensor, bypassed: torch.Tensor) -> float:
    return float((bypassed.float() - reference.float()).norm() / reference.float().norm().clamp_min(1e-12))


def most_vital(changes: list[float], top_k: int) -> tuple[int, ...]:
    """The `top_k` layers with the largest change (ties: the earlier layer), in layer order."""
    order = sorted(range(len(changes)), key=lambda i: (-changes[i], i))
    return tuple(sorted(order[:top_k]))


def layers_text(layers: tuple[int, ...]) -> str:
    """(0, 1, 2, 17, 18) -> '0-2,17-18': what the MasaCtrl node's `layers` input reads."""
    spans, start = [], None
    for i, layer in enumerate(layers):
        start = layer if start is None else start
        if i + 1 == len(layers) or layers[i + 1] != layer + 1:
            spans.append(str(start) if start == layer else f"{start}-{layer}")
            start = None
    return ",".join(spans)


def ranking_table(changes: list[float], names: list[str], selected: tuple[int, ...]) -> str:
    """Markdown: every layer from the most to the least vital, with its block and whether it is selected."""
    lines = ["| rank | layer | block | change | selected |", "|---|---|---|---|---|"]
    order = sorted(range(len(changes)), key=lambda i: (-changes[i], i))
    for rank, layer in enumerate(order, 1):
        lines.append(f"| {rank} | {layer} | {names[layer]} | {changes[layer]:.4f} | "
                     f"{'yes' if layer in selected else ''} |")
    return "\n".join(lines)


def change_plot(changes: list[float], names: list[str], selected: tuple[int, ...], title: str,
                width: int = 1024, height: int = 420) -> Image.Image:
    """A bar per layer in execution order, the selected ones dark, the rest light, with a labelled value axis."""
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = 70, 44, width - 16, height - 56
    ticks = [tick for tick in nice_ticks([0.0, max(changes) or 1.0]) if tick >= 0]  # bars start at 0
    y_max = max(ticks[-1], max(changes)) or 1.0
    for tick in ticks:
        y = bottom - tick / y_max * (bottom - top)
        draw.line([(left, y), (right, y)], fill=(232, 232, 232))
        draw.text((left - 8, y), f"{tick:g}", fill=INK, font=_font(13), anchor="rm")
    slot = (right - left) / len(changes)
    for layer, change in enumerate(changes):
        x0, x1 = left + layer * slot + slot * 0.15, left + (layer + 1) * slot - slot * 0.15
        colour = PALETTE_END if layer in selected else PALETTE_START
        draw.rectangle([x0, bottom - change / y_max * (bottom - top), x1, bottom], fill=colour)
        if len(changes) <= 40 or layer % 5 == 0 or layer in selected:  # every label where they fit
            draw.text(((x0 + x1) / 2, bottom + 6), str(layer), fill=INK if layer in selected else GREY,
                      font=_font(11), anchor="mt")
    draw.line([(left, bottom), (right, bottom)], fill=INK)
    draw.text((width / 2, 12), title, fill=INK, font=_font(16), anchor="mt")
    kinds = sorted({name.split(" ")[0] for name in names})
    draw.text((width / 2, height - 20), f"layer ({', '.join(kinds)} blocks in execution order); dark: selected",
              fill=INK, font=_font(13), anchor="mm")
    draw.text((14, (top + bottom) / 2), "change", fill=INK, font=_font(13), anchor="lm")
    return image
