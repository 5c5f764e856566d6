#!/usr/bin/env python
"""Flow Inversion's cost per step against plain sampling per step, in one run, on Flux.1 dev's block layout.

The model is bench_dit_masactrl.py's: Flux.1 dev at full width (hidden 3072, 24 heads, T5 width 4096) with
`--double` double-stream and `--single` single-stream blocks kept, random weights. One image (the photo), cfg 1
(guidance-distilled, no uncond pass), `--steps` steps of the simple schedule. Configs: plain euler sampling of
the image (comfy.sample.sample) and the inversion with each solver (the node's invert_flow: the same guider,
model wrapper and ComfyUI attention function, so the same kernel by construction). They run interleaved, in
reversed order every other round. Printed per config: process CPU time per step (one torch thread: the work
itself, not waiting for a core on a shared machine) and wall time per step, min/median/max over rounds, each
round's ratio to sampling, and the load average. Expected from the model calls: euler 1x, rf_solver 2x,
fireflow (1 + 1/steps)x.

  OMP_NUM_THREADS=1 python benchmarks/bench_flow_inversion.py --resolution 256 --steps 3
"""
from __future__ import annotations

import argparse
import os
import time
from types import SimpleNamespace

from bench_common import spread, start_comfyui
from bench_dit_masactrl import TEXT_TOKENS, build_model

SOLVERS = ("euler", "rf_solver", "fireflow")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=256, help="image size in px (latent = /8)")
    p.add_argument("--double", type=int, default=1, help="double-stream blocks kept at full width")
    p.add_argument("--single", type=int, default=1, help="single-stream blocks kept")
    p.add_argument("--steps", type=int, default=3, help="steps per run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--pytorch-attention", action="store_true", help="ComfyUI's --use-pytorch-cross-attention")
    return p.parse_args(argv)


def setup(args):
    torch = start_comfyui(args.threads, pytorch_attention=args.pytorch_attention)
    import comfy.ldm.modules.attention as comfy_attention
    import comfy.sample

    from masactrl_suite.attention.comfyui_flow_inversion import invert_flow

    model, _ = build_model(SimpleNamespace(family="flux", double=args.double, single=args.single), torch)
    g = torch.Generator().manual_seed(0)
    side = args.resolution // 8
    photo = torch.randn(1, 16, side, side, generator=g)
    noise = torch.randn(photo.shape, generator=g)
    positive = [[torch.randn(1, TEXT_TOKENS, 4096, generator=g),
                 {"pooled_output": torch.randn(1, 768, generator=g), "guidance": 3.5}]]
    negative = [[torch.zeros(1, TEXT_TOKENS, 4096), {"pooled_output": torch.zeros(1, 768), "guidance": 3.5}]]  # cfg 1: unused

    def run(key, steps):
        if key == "sampling":
            return comfy.sample.sample(model, noise, steps, 1.0, "euler", "simple", positive, negative, photo,
                                       disable_pbar=True, seed=0)
        return invert_flow(model, positive, None, photo, steps, 1.0, "simple", key, "bench")
    return run, comfy_attention.optimized_attention.__name__


def main():
    args = parse_args()
    run, kernel = setup(args)
    keys = ["sampling", *SOLVERS]
    for key in keys:
        run(key, 1)  # warm-up
    times = {key: {"cpu": [], "wall": []} for key in keys}
    loads = [os.getloadavg()[0]]
    for round_ in range(args.rounds):
        for key in keys if round_ % 2 == 0 else keys[::-1]:
            c0, w0 = time.process_time(), time.perf_counter()
            run(key, args.steps)
            times[key]["cpu"].append((time.process_time() - c0) / args.steps)
            times[key]["wall"].append((time.perf_counter() - w0) / args.steps)
        loads.append(os.getloadavg()[0])
    lines = [(f"### Flow Inversion vs sampling, Flux.1 dev layout: {args.resolution} px, {args.double} double + "
              f"{args.single} single blocks at full width, 1 image, cfg 1, {args.steps} steps x {args.rounds} rounds, "
              f"kernel {kernel}"),
             f"load average during the run: {spread(loads, lambda x: f'{x:.2f}')} (min/median/max)", "",
             "| config | CPU s/step | wall s/step | CPU vs sampling | wall vs sampling |", "|---|---|---|---|---|"]
    for key in keys:
        t = times[key]
        ratios = {m: [a / b for a, b in zip(t[m], times["sampling"][m])] for m in ("cpu", "wall")}
        name = "euler sampling" if key == "sampling" else f"inversion, {key}"
        lines.append(f"| {name} | {spread(t['cpu'], lambda x: f'{x:.2f}')} | {spread(t['wall'], lambda x: f'{x:.2f}')}"
                     f" | " + " | ".join(spread(ratios[m], lambda x: f'{x:.3f}x') for m in ("cpu", "wall")) + " |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
