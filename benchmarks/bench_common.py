"""What the benchmark scripts share: starting ComfyUI in the process with this pack, peak memory of one sampling
run measured in a fresh process, and the min/median/max spread they report."""
from __future__ import annotations

import gc
import json
import logging
import os
import statistics
import subprocess
import sys
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parents[1]
COMFYUI_PATH = Path(os.environ.get("COMFYUI_PATH", "~/ComfyUI")).expanduser()


def start_comfyui(threads: int, cpu: bool = True, pytorch_attention: bool = False):
    """Import ComfyUI (from $COMFYUI_PATH, default ~/ComfyUI) with its CPU and attention flags set before
    comfy.model_management is imported, and the pack as `masactrl_suite`; returns torch."""
    if not (COMFYUI_PATH / "comfy" / "model_management.py").is_file():
        sys.exit(f"error: no ComfyUI checkout at {COMFYUI_PATH}; set COMFYUI_PATH to a ComfyUI checkout.")
    import torch

    torch.set_num_threads(threads)
    sys.path.insert(0, str(COMFYUI_PATH))
    sys.path.insert(0, str(PACK_DIR / "tests"))  # comfy_harness: the random-weight model builders the tests use
    logging.getLogger().setLevel(logging.ERROR)  # ComfyUI logs every model load at INFO
    from comfy_harness import register_pack

    register_pack(PACK_DIR)
    import comfy.cli_args

    comfy.cli_args.args.cpu = cpu
    comfy.cli_args.args.use_pytorch_cross_attention = pytorch_attention
    return torch


# Peak memory: each configuration in a fresh process (so none sees another's freed-but-kept heap), the growth of
# peak RSS (VmHWM, reset through /proc/self/clear_refs so the model build's peak is not counted) over the RSS
# with the model built. Linux only.

def status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def print_peak_growth(run) -> None:
    """In the child: run `run()` and print {"growth_mib", "rss_mib"} as one JSON line for the parent."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM (peak RSS) to the current RSS
    before = status_kib("VmRSS")
    run()
    print(json.dumps({"growth_mib": (status_kib("VmHWM") - before) / 1024, "rss_mib": before / 1024}))


def peak_growth_in_child(script: str, options: list, label: str) -> dict:
    """In the parent: run `script` with `options` (which make it a memory child) and read its JSON line."""
    r = subprocess.run([sys.executable, script, *map(str, options)], capture_output=True, text=True, check=False)
    if r.returncode:
        raise RuntimeError(f"memory run for ({label}) failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def spread(values, fmt) -> str:
    """min/median/max of `values`, each formatted by `fmt`."""
    return "/".join(fmt(x) for x in (min(values), statistics.median(values), max(values)))
