#!/usr/bin/env python
"""What RePaint costs on a flow model, against plain inpainting sampling of the same steps and denoise.

The Flux.1 dev block layout at full width with random weights (bench_dit_masactrl.py's build_model: `--double`
double- and `--single` single-stream blocks kept), one image at `--resolution` px, the bottom third to
regenerate (a noise mask), cfg 1 with guidance 3.5, euler / simple, `--steps` steps at `--denoise`. Configs:
plain KSampler-style sampling with the noise mask, and the RePaint node at the (jump_length, resamplings) given.
Model evaluations are counted (an APPLY_MODEL wrapper on a clone); time is process CPU time and wall time per
run, rounds interleaved (reversed every other round), min/median/max, with each round's ratio to plain and the
load average.

  OMP_NUM_THREADS=1 python benchmarks/bench_repaint_flow.py --resolution 256 --steps 4 --rounds 3
"""
from __future__ import annotations

import argparse
import os
import time

from bench_common import spread, start_comfyui

SCHEDULES = [(2, 2), (2, 3)]  # (jump_length, resamplings)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=256, help="image size in px (latent = /8)")
    p.add_argument("--double", type=int, default=1, help="double-stream blocks kept at full width")
    p.add_argument("--single", type=int, default=1, help="single-stream blocks kept")
    p.add_argument("--steps", type=int, default=4, help="steps per run (RePaint: before resampling)")
    p.add_argument("--denoise", type=float, default=0.6)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    args.family = "flux"  # for build_model
    return args


def main():
    args = parse_args()
    torch = start_comfyui(args.threads)
    import comfy.patcher_extension
    import comfy.sample
    from bench_dit_masactrl import TEXT_TOKENS, build_model

    from masactrl_suite.completion.repaint import denoising_steps
    from masactrl_suite.nodes.repaint_nodes import RePaint

    model, _ = build_model(args, torch)
    calls = [0]

    def count(executor, *a, **kw):
        calls[0] += 1
        return executor(*a, **kw)
    model = model.clone()
    model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "count", count)

    g = torch.Generator().manual_seed(0)
    side = args.resolution // 8
    latent = torch.randn(1, 16, side, side, generator=g)
    noise = torch.randn(latent.shape, generator=g)
    mask = torch.zeros(1, args.resolution, args.resolution)
    mask[:, 2 * args.resolution // 3:] = 1
    extra = {"guidance": 3.5}
    positive = [[torch.randn(1, TEXT_TOKENS, 4096, generator=g), {"pooled_output": torch.randn(1, 768), **extra}]]
    negative = [[torch.zeros(1, TEXT_TOKENS, 4096), {"pooled_output": torch.zeros(1, 768), **extra}]]

    def plain():
        return comfy.sample.sample(model, noise, args.steps, 1.0, "euler", "simple", positive, negative, latent,
                                   denoise=args.denoise, noise_mask=mask.reshape(1, 1, *mask.shape[-2:]),
                                   disable_pbar=True, seed=0)

    def repaint(jump, resamplings):
        return lambda: RePaint.execute(model, positive, negative, {"samples": latent}, 0, args.steps, 1.0, "euler",
                                       "simple", args.denoise, jump, resamplings, mask).result[0]
    configs = {"plain": plain, **{f"RePaint j={j} r={r}": repaint(j, r) for j, r in SCHEDULES}}
    expected = {"plain": args.steps, **{f"RePaint j={j} r={r}": denoising_steps(args.steps, j, r)
                                        for j, r in SCHEDULES}}
    plain()  # warm-up: first-call costs out of the way
    keys = list(configs)
    times = {key: {"cpu": [], "wall": [], "evals": []} for key in keys}
    loads = [os.getloadavg()[0]]
    for round_ in range(args.rounds):
        for key in keys if round_ % 2 == 0 else keys[::-1]:
            calls[0] = 0
            c0, w0 = time.process_time(), time.perf_counter()
            configs[key]()
            times[key]["cpu"].append(time.process_time() - c0)
            times[key]["wall"].append(time.perf_counter() - w0)
            times[key]["evals"].append(calls[0])
        loads.append(os.getloadavg()[0])
    lines = [(f"### RePaint on Flux.1 dev layout: {args.resolution} px, {args.double} double + {args.single} single "
              f"blocks at full width, {args.steps} steps at denoise {args.denoise}, euler/simple, cfg 1, "
              f"{args.rounds} rounds, {args.threads} thread(s)"),
             f"load average during the run: {spread(loads, lambda x: f'{x:.2f}')} (min/median/max)", "",
             ("| config | model evaluations (expected) | CPU s/run | wall s/run | CPU vs plain | wall vs plain | "
              "CPU s per evaluation |"), "|---|---|---|---|---|---|---|"]
    for key in keys:
        t = times[key]
        ratio = {m: [a / b for a, b in zip(t[m], times["plain"][m])] for m in ("cpu", "wall")}
        per_eval = [c / n for c, n in zip(t["cpu"], t["evals"])]
        lines.append(f"| {key} | {'/'.join(map(str, sorted(set(t['evals']))))} ({expected[key]}) | "
                     f"{spread(t['cpu'], lambda x: f'{x:.2f}')} | {spread(t['wall'], lambda x: f'{x:.2f}')} | "
                     f"{spread(ratio['cpu'], lambda x: f'{x:.2f}x')} | {spread(ratio['wall'], lambda x: f'{x:.2f}x')} "
                     f"| {spread(per_eval, lambda x: f'{x:.3f}')} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
