#!/usr/bin/env python
"""What Grid Sampling (MasaCtrl) costs per tile on a diffusion transformer: the full Flux.1 dev block layout cut to
1 double + 1 single block (bench_dit_masactrl.py's build_model, random weights, CPU), guidance-distilled (one model
call per step). Times, in one run with rounds interleaved, as ratios to plain untiled sampling of ONE tile-sized
latent: plain sampling of the whole canvas, and the grid on it with all tiles batched and one tile per call. A grid
of n tiles costs about n tile-sized calls; overhead (cropping, position ids, blending) shows as a ratio above n.

  python benchmarks/bench_grid_dit.py --threads 2 --rounds 3      # tiles 256 px on a 512x256 canvas
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_dit_masactrl  # build_model: Flux.1 dev's blocks at full width
from bench_common import spread, start_comfyui


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tile", type=int, default=256, help="tile size in px (a multiple of 16)")
    p.add_argument("--overlap", type=int, default=64, help="least overlap in px")
    p.add_argument("--width", type=int, default=512, help="canvas width in px")
    p.add_argument("--height", type=int, default=256, help="canvas height in px")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def main():
    args = parse_args()
    torch = start_comfyui(args.threads)
    import comfy.sample

    from masactrl_suite.completion.tiles import plan_tiles
    from masactrl_suite.nodes.grid_nodes import GridSampling

    model, _ = bench_dit_masactrl.build_model(argparse.Namespace(family="flux", double=1, single=1), torch)
    g = torch.Generator().manual_seed(0)
    positive = [[torch.randn(1, 16, 4096, generator=g), {"pooled_output": torch.randn(1, 768, generator=g),
                                                         "guidance": 3.5}]]
    negative = [[torch.zeros(1, 16, 4096), {"pooled_output": torch.zeros(1, 768), "guidance": 3.5}]]

    def sample(m, width, height):
        latent = torch.zeros(1, 16, height // 8, width // 8)
        noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(1))
        return comfy.sample.sample(m, noise, args.steps, 1.0, "euler", "simple", positive, negative, latent,
                                   disable_pbar=True, seed=0)

    grid = {per: GridSampling.execute(model, args.tile, args.tile, args.overlap, "linear", per).result[0]
            for per in (0, 1)}
    runs = {"one tile, plain": lambda: sample(model, args.tile, args.tile),
            "canvas, plain (untiled)": lambda: sample(model, args.width, args.height),
            "canvas, grid, tiles batched": lambda: sample(grid[0], args.width, args.height),
            "canvas, grid, one tile per call": lambda: sample(grid[1], args.width, args.height)}
    sample(model, args.tile, args.tile)  # warm-up
    times, loads = {k: [] for k in runs}, []
    for _ in range(args.rounds):
        for key, run in runs.items():
            start = time.perf_counter()
            run()
            times[key].append(time.perf_counter() - start)
            loads.append(os.getloadavg()[0])
    tiles = len(plan_tiles(args.height // 8, args.width // 8, args.tile // 8, args.tile // 8, args.overlap // 8, 2))
    base = statistics.median(times["one tile, plain"])
    print(f"Flux.1 dev layout (1 double + 1 single block), CPU, {args.threads} thread(s), {args.steps} euler steps; "
          f"canvas {args.width}x{args.height}, tiles {args.tile} px, overlap {args.overlap}: {tiles} tiles; "
          f"{args.rounds} interleaved rounds; load average {spread(loads, lambda x: f'{x:.2f}')} (min/median/max)")
    print("| run | seconds (min/median/max) | ratio to one plain tile (min/median/max) |\n|---|---|---|")
    for key, values in times.items():
        ratios = spread([v / base for v in values], lambda x: f"{x:.2f}x")
        print(f"| {key} | {spread(values, lambda x: f'{x:.2f}')} | {ratios} |")


if __name__ == "__main__":
    main()
