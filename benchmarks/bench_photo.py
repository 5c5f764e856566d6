#!/usr/bin/env python
"""What photo completion costs inside ComfyUI, on the full SD1.5 UNet layout (random weights); the set-up is
bench_masactrl.py's (CFG, one prompt pair, euler / normal), timed in one run, rounds interleaved.

Grid sampling: time per sampling step against canvas area, with tiles of `--tile` px (the model's native size
stands in: 512 on a GPU; 128 by default on the CPU to keep the run short) and a quarter-tile overlap. The
cost should grow with the number of tiles, i.e. linearly with the area; the untiled UNet on the same canvas
is timed beside it, and one tile per UNet call against all tiles batched.

RePaint: model evaluations (counted) and time for several jump schedules at a fixed number of steps, against
a plain KSampler run of the same steps and denoise.

  python benchmarks/bench_photo.py --threads 2 --repeats 2 --out benchmarks/RESULTS.md   # appends a section
  python benchmarks/bench_photo.py --tile 64 --steps 2 --repeats 1 --threads 1            # quick check
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_masactrl  # noqa: E402  (setup: ComfyUI on the CPU and the full SD1.5 model)

SCHEDULES = [(1, 1), (2, 2), (4, 2), (2, 3), (2, 4)]  # (jump_length, resamplings)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tile", type=int, help="tile size in px; default 512 on cuda, 128 on cpu")
    p.add_argument("--steps", type=int, default=2, help="sampling steps per grid run")
    p.add_argument("--repaint-steps", type=int, default=4, help="steps per RePaint run (before resampling)")
    p.add_argument("--repeats", type=int, default=2, help="interleaved rounds; the median is kept")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads")
    p.add_argument("--device", choices=["cpu", "cuda"])
    p.add_argument("--dtype", choices=["fp32", "fp16", "bf16"])
    p.add_argument("--out", type=Path, help="APPEND the results as a new section to this markdown file")
    args = p.parse_args(argv)
    passthrough = ["--threads", str(args.threads), "--steps", str(args.steps)]
    for flag, value in (("--device", args.device), ("--dtype", args.dtype)):
        passthrough += [flag, str(value)] if value is not None else []
    bench_args = bench_masactrl.parse_args(passthrough)
    args.tile = args.tile or (512 if bench_args.device == "cuda" else 128)
    bench_args.resolution = args.tile
    return args, bench_args


def timed(fn, sync, repeats_out: list):
    sync()
    t = time.perf_counter()
    out = fn()
    sync()
    repeats_out.append(time.perf_counter() - t)
    return out


def main():
    args, bench_args = parse_args()
    torch, models, _, attention = bench_masactrl.setup(bench_args)
    import comfy.patcher_extension
    import comfy.sample
    from masactrl_suite.completion.repaint import denoising_steps
    from masactrl_suite.completion.tiles import plan_tiles
    from masactrl_suite.nodes.grid_nodes import GridSampling
    from masactrl_suite.nodes.repaint_nodes import RePaint

    sync = torch.cuda.synchronize if bench_args.device == "cuda" else (lambda: None)
    plain, tile, overlap = models["a"], args.tile, args.tile // 4
    g = torch.Generator().manual_seed(0)
    positive, negative = [[torch.randn(1, 77, 768, generator=g), {}]], [[torch.randn(1, 77, 768, generator=g), {}]]
    canvases = [(tile, tile), (tile, 2 * tile), (2 * tile, 2 * tile), (2 * tile, 4 * tile)]  # (width, height)
    grids = {per: GridSampling.execute(plain, tile, tile, overlap, "linear", per).result[0] for per in (0, 1)}

    def sample(model, width, height, steps):
        latent = torch.zeros(1, 4, height // 8, width // 8)
        noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(1))
        return comfy.sample.sample(model, noise, steps, bench_masactrl.CFG, "euler", "normal", positive, negative,
                                   latent, disable_pbar=True, seed=0)

    print(f"device {bench_args.device}, torch threads {torch.get_num_threads()}, tile {tile} px, overlap {overlap} "
          f"px, {bench_args.dtype}, ComfyUI attention {attention}, load avg {os.getloadavg()[0]:.2f}", flush=True)
    runs = {(c, kind): [] for c in canvases for kind in ("untiled", "grid", "grid 1/call")}
    sample(grids[0], tile, tile, 1)  # first-call costs stay out of the timings
    for r in range(args.repeats):
        for canvas in (canvases if r % 2 == 0 else canvases[::-1]):
            for kind, model in (("untiled", plain), ("grid", grids[0]), ("grid 1/call", grids[1])):
                timed(lambda: sample(model, *canvas, args.steps), sync, runs[(canvas, kind)])
        print(f"grid round {r + 1}/{args.repeats} done", flush=True)
    per_step = {key: statistics.median(v) / args.steps for key, v in runs.items()}
    lines = [f"## Photo completion: `python benchmarks/bench_photo.py {' '.join(sys.argv[1:])}`", "",
             f"Full SD1.5 UNet layout (random weights): {bench_args.device}, {torch.get_num_threads()} torch threads, "
             f"{bench_args.dtype}, CFG {bench_masactrl.CFG}, euler / normal, batch 1, ComfyUI attention {attention}, "
             f"median of {args.repeats} interleaved rounds, load avg {os.getloadavg()[0]:.2f} at the end.", "",
             f"Grid sampling, tile {tile} px, overlap {overlap} px, linear blend, {args.steps} steps per run:", "",
             "| canvas (px) | area vs 1 tile | tiles | grid s/step | s/step per tile | grid vs 1 tile | one tile per "
             "call s/step | untiled UNet s/step |", "|---|---|---|---|---|---|---|---|"]
    one = per_step[(canvases[0], "grid")]
    for canvas in canvases:
        count = len(plan_tiles(canvas[1] // 8, canvas[0] // 8, tile // 8, tile // 8, overlap // 8, 8))
        grid = per_step[(canvas, "grid")]
        lines.append(f"| {canvas[0]}x{canvas[1]} | {canvas[0] * canvas[1] / tile ** 2:.0f}x | {count} | {grid:.3f} | "
                     f"{grid / count:.3f} | {grid / one:.2f}x | {per_step[(canvas, 'grid 1/call')]:.3f} | "
                     f"{per_step[(canvas, 'untiled')]:.3f} |")

    calls = []

    def count_calls(executor, x, t, *a, **kw):
        calls.append(1)
        return executor(x, t, *a, **kw)
    counted = plain.clone()
    counted.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "count", count_calls)
    steps, denoise = args.repaint_steps, 0.6
    size = tile // 8
    photo = {"samples": torch.randn(1, 4, size, size, generator=g) / 0.18215 * 0.5}
    mask = torch.zeros(1, tile, tile)
    mask[:, tile // 2:] = 1

    def repaint(jump, resamplings):
        return RePaint.execute(counted, positive, negative, photo, 0, steps, bench_masactrl.CFG, "ddpm", "normal",
                               denoise, jump, resamplings, mask).result[0]

    def ksampler():
        return comfy.sample.sample(counted, torch.randn(photo["samples"].shape, generator=torch.Generator()),
                                   steps, bench_masactrl.CFG, "euler", "normal", positive, negative, photo["samples"],
                                   denoise=denoise, disable_pbar=True, seed=0)
    times, evaluations = {s: [] for s in ["ksampler", *SCHEDULES]}, {}
    for r in range(args.repeats):
        for schedule in (["ksampler", *SCHEDULES] if r % 2 == 0 else [*SCHEDULES[::-1], "ksampler"]):
            calls.clear()
            timed(ksampler if schedule == "ksampler" else lambda: repaint(*schedule), sync, times[schedule])
            evaluations[schedule] = len(calls)
    base = statistics.median(times["ksampler"])
    lines += ["", f"RePaint, {tile} px, {steps} steps at denoise {denoise}, ddpm steps, lower half masked; plain "
              f"KSampler (euler, same steps and denoise) for reference:", "",
              "| schedule (jump_length, resamplings) | reverse steps (schedule) | model evaluations (counted) | "
              "time (s) | vs KSampler | s per evaluation |", "|---|---|---|---|---|---|",
              f"| KSampler | {steps} | {evaluations['ksampler']} | {base:.2f} | 1.00x | "
              f"{base / evaluations['ksampler']:.3f} |"]
    for schedule in SCHEDULES:
        median = statistics.median(times[schedule])
        lines.append(f"| j={schedule[0]}, r={schedule[1]} | {denoising_steps(steps, *schedule)} | "
                     f"{evaluations[schedule]} | {median:.2f} | {median / base:.2f}x | "
                     f"{median / evaluations[schedule]:.3f} |")
    bench_masactrl.report(lines, args.out)


if __name__ == "__main__":
    main()
