"""Peak memory of one sampling run, as the benchmarks measure it: each configuration in a fresh process (so none
sees another's freed-but-kept heap), the growth of peak RSS (VmHWM, reset through /proc/self/clear_refs so the
model build's peak is not counted) over the RSS with the model built. Linux only."""
from __future__ import annotations

import gc
import json


def status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def print_peak_growth(run) -> None:
    """Run `run()` and print {"growth_mib", "rss_mib"} as one JSON line, for the parent process to read."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM (peak RSS) to the current RSS
    before = status_kib("VmRSS")
    run()
    print(json.dumps({"growth_mib": (status_kib("VmHWM") - before) / 1024, "rss_mib": before / 1024}))
