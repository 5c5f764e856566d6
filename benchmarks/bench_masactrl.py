#!/usr/bin/env python
"""What MasaCtrl costs inside ComfyUI's real sampler, on the full SD1.5 UNet layout (random weights).

Samples the SAME batch (2 latents = source + target, CFG so the UNet sees 4 rows, euler) with
  (a) the unpatched model, (b) MasaCtrl's default schedule (start_step 4, start_layer 10),
  (c) MasaCtrl on all 16 self-attention layers from step 0,
  (d) (b) plus MasaCtrl Masks with automatic masks (cross-attention maps captured at 1/4 resolution,
      the paper's MaskAuto, threshold 0.1),
and reports seconds per step and peak memory, absolute and as ratios vs (a), from one run.

  python benchmarks/bench_masactrl.py --out benchmarks/RESULTS.md          # appends the full measurement
  python benchmarks/bench_masactrl.py --resolution 64 --steps 2 --repeats 1 --threads 1   # quick check

ComfyUI is found at $COMFYUI_PATH (default ~/ComfyUI).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from bench_common import peak_growth_in_child, print_peak_growth, start_comfyui

CONFIGS = {"a": "unpatched", "b": "MasaCtrl default (step 4+, layers 10-15)", "c": "MasaCtrl all layers, step 0+",
           "d": "(b) + automatic masks (maps included)"}
CFG = 7.5  # anything but 1.0: at cfg 1 ComfyUI skips the uncond pass and the UNet would see 2 rows, not 4


def parse_args(argv=None):
    import torch

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--resolution", type=int, help="image size in px (latent = /8); default 512 on cuda, 256 on cpu")
    p.add_argument("--steps", type=int, default=8, help="timed sampling steps per run (>4 so (b) gets active steps)")
    p.add_argument("--warmup-steps", type=int, default=5,
                   help="untimed run of this many steps per config first (>4: MasaCtrl refuses a run it would not "
                        "act in)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds a,b,c,d; the median per config is kept")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads (default: all cores)")
    p.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], help="UNet dtype; default fp16 on cuda, fp32 on cpu")
    p.add_argument("--pytorch-attention", action="store_true",
                   help="ComfyUI's --use-pytorch-cross-attention: unpatched layers use torch SDPA like MasaCtrl's "
                        "(the CUDA default; on CPU ComfyUI otherwise uses its sub-quadratic attention)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="also append the markdown table to this file")
    p.add_argument("--mem-child", choices=list(CONFIGS), help=argparse.SUPPRESS)  # internal: one CPU memory run
    args = p.parse_args(argv)
    args.resolution = args.resolution or (512 if args.device == "cuda" else 256)
    args.dtype = args.dtype or ("fp16" if args.device == "cuda" else "fp32")
    return args


def setup(args):
    """Import ComfyUI and the pack; build the model, its three patched/unpatched clones and the batch."""
    torch = start_comfyui(args.threads, cpu=args.device == "cpu", pytorch_attention=args.pytorch_attention)
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.sample
    from comfy.ldm.modules.attention import optimized_attention

    from comfy_harness import SD15_FULL_UNET, build_sd15_model, schema_defaults
    from masactrl_suite.attention.subject_words import PromptSubject, Subject
    from masactrl_suite.nodes.masactrl_nodes import MasaCtrl
    from masactrl_suite.nodes.mask_nodes import MaskGuidanceNode

    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    _, base = build_sd15_model(SD15_FULL_UNET, dtype=dtype)
    model = comfy.model_patcher.ModelPatcher(base, load_device=mm.get_torch_device(),
                                             offload_device=mm.unet_offload_device())

    def masactrl(**inputs):  # the MasaCtrl node itself, with its defaults where not given
        return MasaCtrl.execute(model, **{**schema_defaults(MasaCtrl), **inputs}).result[0]

    def masked(patched):  # the MasaCtrl Masks node itself, automatic masks from token 5 of each prompt
        word = PromptSubject(("subject",), ((5,),), 77)
        return MaskGuidanceNode.execute(patched, threshold=0.1, map_resolution="1/4 (paper)", map_layers="all",
                                        subject=Subject(word, word)).result[0]

    models = {"a": model.clone(), "b": masactrl(), "c": masactrl(start_step=0, start_layer=0), "d": masked(masactrl())}
    g = torch.Generator().manual_seed(args.seed)
    latent = torch.zeros(2, 4, args.resolution // 8, args.resolution // 8)
    noise = torch.randn(latent.shape, generator=g)
    positive = [[torch.randn(2, 77, 768, generator=g), {}]]  # two prompts: source, target
    negative = [[torch.randn(1, 77, 768, generator=g), {}]]  # one, repeated by ComfyUI

    def sample(key, steps):
        return comfy.sample.sample(models[key], noise, steps, CFG, "euler", "normal", positive, negative, latent,
                                   disable_pbar=True, seed=args.seed)
    return torch, models, sample, optimized_attention.__name__


def cpu_mem_child(args):
    """One config in a fresh process, so no config sees another's freed-but-kept heap: peak RSS growth of
    one sampling run over the RSS with the model built, via VmHWM reset by /proc/self/clear_refs."""
    sample = setup(args)[2]
    print_peak_growth(lambda: sample(args.mem_child, args.steps))


def cpu_mem(args, key):
    opts = ["--device", "cpu", "--resolution", args.resolution, "--steps", args.steps, "--threads", args.threads,
            "--dtype", args.dtype, "--seed", args.seed, "--mem-child", key]
    opts += ["--pytorch-attention"] if args.pytorch_attention else []
    return peak_growth_in_child(__file__, opts, key)


def report(lines: list[str], out: Path | None):
    """Print a markdown section; with --out, APPEND it to that file (RESULTS.md keeps every run's section)."""
    table = "\n".join(lines)
    print("\n" + table)
    if out:
        with open(out, "a") as f:
            f.write("\n" + table + "\n")
        print(f"\nappended to {out}")


def ratio(x, base):
    return f"{x / base:.2f}x" if base > 0 else "n/a"


def main():
    args = parse_args()
    if args.mem_child:
        return cpu_mem_child(args)
    torch, models, sample, attention = setup(args)
    cuda = args.device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, {args.resolution} px "
          f"(latent {args.resolution // 8}), {args.dtype}, {args.steps} steps x {args.repeats} rounds, "
          f"ComfyUI attention {attention}, load avg {os.getloadavg()[0]:.2f}", flush=True)
    n_patched = {k: "+".join(str(len(m.model_options["transformer_options"].get("patches_replace", {}).get(a, {})))
                             for a in ("attn1", "attn2")) for k, m in models.items()}
    for key in models:  # first-call costs (allocator, kernel selection) stay out of the timings
        if args.warmup_steps:
            sample(key, args.warmup_steps)
    times, peaks, outs, resident = {k: [] for k in models}, {k: 0.0 for k in models}, {}, 0.0
    for r in range(args.repeats):  # interleaved, so slow drifts of a shared machine hit every config alike
        for key in models:
            if cuda:
                torch.cuda.reset_peak_memory_stats()
                before = resident = torch.cuda.memory_allocated() / 2**20
            sync()
            t = time.perf_counter()
            outs.setdefault(key, sample(key, args.steps))
            sync()
            times[key].append((time.perf_counter() - t) / args.steps)
            if cuda:
                peaks[key] = max(peaks[key], torch.cuda.max_memory_allocated() / 2**20 - before)
        print(f"round {r + 1}/{args.repeats}: " + ", ".join(f"({k}) {times[k][-1]:.3f} s/step" for k in models),
              flush=True)
    if cuda:
        mem_note = ("peak memory = torch.cuda.max_memory_allocated() during sampling minus allocated before "
                    "(weights loaded), max over rounds, reset per run")
    else:
        runs = {k: cpu_mem(args, k) for k in CONFIGS}
        peaks, resident = {k: r["growth_mib"] for k, r in runs.items()}, runs["a"]["rss_mib"]
        mem_note = ("peak memory = peak RSS growth (VmHWM, reset via /proc/self/clear_refs) over the RSS with "
                    "the model built, one sampling run per config, each in a fresh subprocess")
    med = {k: statistics.median(v) for k, v in times.items()}
    lines = [f"MasaCtrl cost, full SD1.5 UNet layout (random weights), ComfyUI sampler: {args.device}, "
             f"{torch.get_num_threads()} torch threads, {args.resolution} px (latent {args.resolution // 8}), "
             f"{args.dtype}, batch 2 + CFG (4 UNet rows), euler, {args.steps} steps, median of {args.repeats} "
             f"interleaved runs, ComfyUI attention (unpatched layers) {attention}, "
             f"load avg {os.getloadavg()[0]:.2f} at the end.", "",
             "| config | attn1+attn2 layers patched | max abs out diff vs (a) | s/step | vs (a) | peak mem (MiB) | vs (a) |",
             "|---|---|---|---|---|---|---|"]
    for k, name in CONFIGS.items():
        differs = f"{(outs[k] - outs['a']).abs().max().item():.3g}"
        lines.append(f"| ({k}) {name} | {n_patched[k]} | {differs} | {med[k]:.3f} | {ratio(med[k], med['a'])} "
                     f"| {peaks[k]:.0f} | {ratio(peaks[k], peaks['a'])} |")
    lines += ["", f"s/step = wall time of comfy.sample.sample / steps. {mem_note}; resident before sampling "
              f"(model): {resident:.0f} MiB. The output diff shows the patch acted (none in (b) with <= 4 steps)."]
    report(lines, args.out)


if __name__ == "__main__":
    main()
