"""The example templates' input pictures (example_inputs/*.png) put where Load Image finds them.

The templates load their pictures by exact name; copying the missing ones into ComfyUI's input folder when
the pack loads makes every template run as it opens. A file of the same name is never overwritten: it is the
user's own picture (or an earlier copy)."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

LOG = logging.getLogger(__name__)
EXAMPLE_INPUTS = Path(__file__).resolve().parents[1] / "example_inputs"


def copy_missing_example_inputs(input_dir: str | Path, source: Path = EXAMPLE_INPUTS) -> list[str]:
    """Copies each example picture that `input_dir` lacks; returns the names copied. Never raises: a read-only
    or missing input folder only costs the examples their pictures, so it is logged, not fatal."""
    copied = []
    try:
        target = Path(input_dir)
        target.mkdir(parents=True, exist_ok=True)
        for picture in sorted(source.glob("*.png")):
            destination = target / picture.name
            if not destination.exists():
                shutil.copyfile(picture, destination)
                copied.append(picture.name)
    except OSError as error:
        LOG.warning("MasaCtrl Suite: could not copy the example pictures into %s: %s", input_dir, error)
    return copied
