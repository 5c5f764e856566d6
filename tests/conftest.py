"""Shared test set-up: the pack importable as `masactrl_suite`, and the real ComfyUI, when present.

ComfyUI is found at $COMFYUI_PATH (default ~/ComfyUI). Tests that need it take the `comfy` fixture
and are skipped, with the reason printed in the summary (pytest -rs), where it is absent.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from comfy_harness import register_pack

PACK_DIR = Path(__file__).resolve().parents[1]
COMFYUI_PATH = Path(os.environ.get("COMFYUI_PATH", "~/ComfyUI")).expanduser()


register_pack(PACK_DIR)


def comfyui_missing_reason() -> str | None:
    if not (COMFYUI_PATH / "comfy" / "model_management.py").is_file():
        return (f"no ComfyUI checkout at {COMFYUI_PATH} (set COMFYUI_PATH to a ComfyUI checkout to run the "
                "real-ComfyUI tests)")
    return None


@pytest.fixture(scope="session")
def comfy():
    """The real ComfyUI, imported in-process on the CPU, with this pack loaded as a custom node."""
    reason = comfyui_missing_reason()
    if reason:
        pytest.skip(reason)
    from comfy_harness import start_comfy

    return start_comfy(COMFYUI_PATH, PACK_DIR)


@pytest.fixture(scope="session")
def checkpoint(comfy):
    """The random-weight SD1.5 checkpoint (model, clip, vae, encode) the ComfyUI tests sample with, loaded once.
    Never changed by a test: patches go on clones, as the nodes do."""
    from comfy_harness import load_sd15

    return load_sd15(comfy)


def pytest_sessionfinish(session, exitstatus):
    """Under CI (CI=true) a skipped test fails the run: a green CI must mean the real ComfyUI and the browser
    ran. Locally a skip only prints its reason (pytest -rs)."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if os.environ.get("CI", "").lower() in ("1", "true", "yes") and skipped and exitstatus == 0:
        reporter.write_line(f"CI: {len(skipped)} test(s) skipped; every test must run in CI (see the reasons above).",
                            red=True)
        session.exitstatus = 1
