"""Draw example_inputs/*.png, the pictures the templates load by name (Load Image), so that every template runs
as it opens: the pack copies the missing ones into ComfyUI's input folder when it loads (never overwriting).

They are drawn from simple shapes (public domain, like the rest of this pack's pictures): stand-ins that show
where a photo goes, not photos. Replace them with your own under the same name, or pick another image.

    python scripts/make_example_inputs.py
"""
from __future__ import annotations

import sys
from pathlib import Path

from diagram_kit import JUMPING, STANDING, cropped_person, dog, photo
from PIL import Image, ImageDraw

PACK_DIR = Path(__file__).resolve().parents[1]
OUT_DIR = PACK_DIR / "example_inputs"
SIZE = 512


def _picture(draw_it) -> Image.Image:
    image = Image.new("RGB", (SIZE, SIZE))
    draw_it(image)
    return image


def corgi_photo(pose: str) -> Image.Image:
    """A corgi on grass filling the frame (the real-photo editing and RePaint templates)."""
    return _picture(lambda image: photo(image, (0, 0, SIZE - 1, SIZE - 1), dog(pose)))


def cropped_photo() -> Image.Image:
    """A person cut off at the knees (the photo-completion, BLIP and pose-repair templates)."""
    return _picture(lambda image: cropped_person(image, (0, 0, SIZE - 1, SIZE - 1)))


def masked_photo() -> Image.Image:
    """The corgi with its hind legs (lower left) marked for redoing: transparent there, as the Mask Editor saves it
    (Load Image's MASK is 1 where the alpha is 0)."""
    rgba = corgi_photo("stand").convert("RGBA")
    alpha = Image.new("L", rgba.size, 255)
    ImageDraw.Draw(alpha).rectangle([0, SIZE * 11 // 20, SIZE // 2, SIZE], fill=0)
    rgba.putalpha(alpha)
    return rgba


def pose_image(points) -> Image.Image:
    """An OpenPose body image (ControlNet's hint), drawn by the pack's own renderer in OpenPose's colours."""
    sys.path.insert(0, str(PACK_DIR.parent))
    from importlib import import_module

    pose_format = import_module(f"{PACK_DIR.name}.completion.pose_format")
    margin = 0.1 * SIZE
    keypoints = []
    for x, y in points:
        keypoints += [margin + x * (SIZE - 2 * margin), margin + y * (SIZE - 2 * margin), 1.0]
    frame = {"people": [{"pose_keypoints_2d": keypoints}], "canvas_width": SIZE, "canvas_height": SIZE}
    return Image.fromarray(pose_format.render_frame(frame, limb_width=8))


INPUTS = {
    "masactrl_photo.png": lambda: corgi_photo("sit"),
    "masactrl_cropped_photo.png": cropped_photo,
    "masactrl_pose_photo.png": cropped_photo,
    "masactrl_masked_photo.png": masked_photo,
    "masactrl_source_pose.png": lambda: pose_image(STANDING),
    "masactrl_target_pose.png": lambda: pose_image(JUMPING),
}


def main():
    OUT_DIR.mkdir(exist_ok=True)
    for name, make in INPUTS.items():
        make().save(OUT_DIR / name, optimize=True)
        print(f"wrote {OUT_DIR / name} ({(OUT_DIR / name).stat().st_size} bytes)")


if __name__ == "__main__":
    main()
