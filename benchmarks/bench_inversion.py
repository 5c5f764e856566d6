#!/usr/bin/env python
"""What real-image editing costs inside ComfyUI, on the full SD1.5 UNet layout (random weights).

Same set-up as bench_masactrl.py (whose helpers this imports): CFG 7.5, ddim / ddim_uniform, one latent.
Times per step, interleaved in one run (median over rounds):
  (a) plain sampling of the photo's latent (batch 1, CFG: 2 UNet rows per step)
  (b) DDIM Inversion (MasaCtrl) of the same latent, through the node (batch 1, CFG: 2 UNet rows per step)
  (c) editing without Follow Inversion: MasaCtrl (paper defaults), batch 2 from start_latent, no noise added
  (d) editing as wired: MasaCtrl + Follow Inversion, batch 2 from start_latent, no noise added
and reports (b)/(a), the inversion's cost per step relative to a sampling step of the same latent, and
(d)/(c), what following the trajectory adds to an editing step.

  python benchmarks/bench_inversion.py --threads 1 --repeats 2 --out benchmarks/RESULTS.md   # appends a section
  python benchmarks/bench_inversion.py --resolution 64 --steps 2 --repeats 1 --threads 1    # quick check

ComfyUI is found at $COMFYUI_PATH (default ~/ComfyUI).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_masactrl  # noqa: E402  (setup: ComfyUI on the CPU, the full SD1.5 model and its MasaCtrl clones)

CONFIGS = {"a": "plain sampling, batch 1", "b": "DDIM Inversion, batch 1",
           "c": "MasaCtrl edit, batch 2 (no Follow Inversion)", "d": "MasaCtrl + Follow Inversion edit, batch 2"}
SCHEDULER, SAMPLER = "ddim_uniform", "ddim"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, help="image size in px; default 512 on cuda, 256 on cpu")
    p.add_argument("--steps", type=int, default=8, help="steps per run (8: ddim_uniform gives exactly 8)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds a,b,c,d; the median is kept")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads")
    p.add_argument("--device", choices=["cpu", "cuda"])
    p.add_argument("--dtype", choices=["fp32", "fp16", "bf16"])
    p.add_argument("--pytorch-attention", action="store_true", help="as in bench_masactrl.py")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="APPEND the results as a new section to this markdown file")
    args = p.parse_args(argv)
    passthrough = ["--steps", str(args.steps), "--threads", str(args.threads), "--seed", str(args.seed)]
    for flag, value in (("--resolution", args.resolution), ("--device", args.device), ("--dtype", args.dtype)):
        passthrough += [flag, str(value)] if value is not None else []
    passthrough += ["--pytorch-attention"] if args.pytorch_attention else []
    return args, bench_masactrl.parse_args(passthrough)  # the same defaults as bench_masactrl.py


def main():
    args, bench_args = parse_args()
    torch, models, _, attention = bench_masactrl.setup(bench_args)
    import comfy.sample
    from masactrl_suite.nodes.real_photo_nodes import DDIMInversionNode, FollowInversionNode

    cuda = bench_args.device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    size = bench_args.resolution // 8
    g = torch.Generator().manual_seed(args.seed)
    photo = {"samples": torch.randn(1, 4, size, size, generator=g) / 0.18215}  # a VAE-encoded photo's scale
    prompts = torch.randn(2, 77, 768, generator=g)
    source, edit = [[prompts[:1], {}]], [[prompts, {}]]
    negative = [[torch.randn(1, 77, 768, generator=g), {}]]
    noise = torch.randn(photo["samples"].shape, generator=g)
    plain, masactrl = models["a"], models["b"]  # unpatched; MasaCtrl paper defaults (step 4+, layers 10-15)
    cfg = bench_masactrl.CFG

    def invert(steps):
        return DDIMInversionNode.execute(plain, source, negative, photo, steps, cfg, SCHEDULER, 2).result

    start, inversion = invert(args.steps)
    followed = FollowInversionNode.execute(masactrl, inversion, 0).result[0]

    def edit_inputs(steps):  # the start latent and the followed model of an inversion with this many steps
        if steps == args.steps:
            return start["samples"], followed
        other_start, other = invert(steps)
        return other_start["samples"], FollowInversionNode.execute(masactrl, other, 0).result[0]

    def run(key, steps):
        if key == "a":
            return comfy.sample.sample(plain, noise, steps, cfg, SAMPLER, SCHEDULER, source, negative,
                                       photo["samples"], disable_pbar=True, seed=args.seed)
        if key == "b":
            return invert(steps)[0]["samples"]
        latent, model = edit_inputs(steps)
        model = masactrl if key == "c" else model
        return comfy.sample.sample(model, torch.zeros_like(latent), steps, cfg, SAMPLER, SCHEDULER, edit, negative,
                                   latent, disable_noise=True, disable_pbar=True, seed=args.seed)

    print(f"device {bench_args.device}, torch threads {torch.get_num_threads()}, {bench_args.resolution} px "
          f"(latent {size}), {bench_args.dtype}, {args.steps} steps x {args.repeats} rounds, ComfyUI attention "
          f"{attention}, load avg {os.getloadavg()[0]:.2f}", flush=True)
    for key in CONFIGS:  # first-call costs (allocator, kernel selection) stay out of the timings
        run(key, 1)
    times, outs = {k: [] for k in CONFIGS}, {}
    for r in range(args.repeats):  # a,b,c,d then d,c,b,a: a drift in the machine's load hits all alike
        for key in (list(CONFIGS) if r % 2 == 0 else list(reversed(CONFIGS))):
            sync()
            t = time.perf_counter()
            outs[key] = run(key, args.steps)
            sync()
            times[key].append((time.perf_counter() - t) / args.steps)
        print(f"round {r + 1}/{args.repeats}: " + ", ".join(f"({k}) {times[k][-1]:.3f} s/step" for k in CONFIGS),
              flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}  # the least disturbed run, on a shared machine
    source_error = float((outs["d"][0] - photo["samples"][0]).abs().max())
    command = "python benchmarks/bench_inversion.py " + " ".join(sys.argv[1:])
    lines = [f"## Real-image editing (DDIM inversion): `{command}`", "",
             f"Full SD1.5 UNet layout (random weights), ComfyUI sampler: {bench_args.device}, "
             f"{torch.get_num_threads()} torch threads, {bench_args.resolution} px (latent {size}), "
             f"{bench_args.dtype}, CFG {cfg}, {SAMPLER} / {SCHEDULER}, {args.steps} steps, {args.repeats} interleaved "
             f"rounds (order reversed every other round), ComfyUI attention {attention}, load avg "
             f"{os.getloadavg()[0]:.2f} at the end.", "",
             "| config | UNet rows per step | s/step (median) | ratio | s/step (min) | ratio |",
             "|---|---|---|---|---|---|"]
    for key, base in (("a", "a"), ("b", "a"), ("c", "c"), ("d", "c")):
        rows = 2 if key in "ab" else 4
        lines.append(f"| ({key}) {CONFIGS[key]} | {rows} | {med[key]:.3f} | {med[key] / med[base]:.2f}x of ({base}) "
                     f"| {best[key]:.3f} | {best[key] / best[base]:.2f}x of ({base}) |")
    lines += ["", "s/step = wall time of the node (b) or comfy.sample.sample (a, c, d) / steps; min = the least "
              "disturbed round. In (d) the source image ends at the photo's latent: max abs error "
              f"{source_error:.2e} (LATENT space, |latent| max {float(photo['samples'].abs().max()):.1f})."]
    bench_masactrl.report(lines, args.out)


if __name__ == "__main__":
    main()
