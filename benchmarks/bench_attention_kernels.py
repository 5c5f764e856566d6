#!/usr/bin/env python
"""Kernel for kernel: MasaCtrl's attention calls against ComfyUI's own `optimized_attention` on the SAME q/k/v.

Per SD1.5 layer size (64 to 4096 tokens, 8 heads, the channels SD1.5 has at that size), per dtype, CPU, it
times in interleaved rounds:
  attn1  comfy      ComfyUI's optimized_attention (attention_pytorch: --use-pytorch-cross-attention) = 1.00x
         masactrl   the real MasaCtrl attn1 patch (comfyui_patches.MasaCtrlAttn1.__call__) in an active step,
                    with its per-call host work (sigma -> step, source rows)
         masked     the same patch with MasaCtrl Masks' automatic masks (maps of two earlier layers given)
  parts  gather     k/v index_select alone (what the patch did per call before issue 15)
         host       the per-call step lookup of the patch before issue 15 (sigma -> step, source rows);
                    the patch now looks the step up once per UNet call
         mutual     attention.mutual.mutual_self_attention in its gathering form (the patch's kernel before
                    issue 15; the patch now passes group_size and ComfyUI's kernel)
  attn2  comfy      optimized_attention on the text context (77 tokens)                     = 1.00x
         capture    the MasaCtrl Masks attn2 patch (comfyui_mask_patches.CrossAttentionCapture): output + maps
         probs      attention.masks.cross_attention_probs alone (the map's explicit softmax)
Rows: 4 (batch 2 = source + target, with CFG), cond_or_uncond [1, 0], as ComfyUI batches them.

  OMP_NUM_THREADS=1 python benchmarks/bench_attention_kernels.py                       # all sizes, fp32+bf16+fp16
  OMP_NUM_THREADS=1 python benchmarks/bench_attention_kernels.py --tokens 1024 --dtypes fp32 --rounds 5

Prints the load average before and after, and for every call min/median/max over the rounds of the time
per call and of its ratio to ComfyUI's call in the same round: the thread's CPU time (time.thread_time:
with one torch thread all the work runs on this thread, and time spent waiting for a core that other
processes hold is not counted, so it stays readable on a busy machine; page faults are counted) and the
wall time. ComfyUI is found at $COMFYUI_PATH
(default ~/ComfyUI).
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from bench_common import spread, start_comfyui

# tokens -> (channels, attn1 site, layer number) of SD1.5 at 512 px; the masked site is a decoder layer that
# comes after the capture layers (4, 5: input 7/8, 16x16), as the paper's maps precede the layers they guide.
LAYERS = {4096: (320, ("output", 9, 0), 13), 1024: (640, ("output", 6, 0), 10),
          256: (1280, ("output", 3, 0), 7), 64: (1280, ("middle", 0, 0), 6)}
ROWS, HEADS, CONTEXT = 4, 8, 77


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, nargs="+", default=sorted(LAYERS), choices=sorted(LAYERS))
    p.add_argument("--dtypes", nargs="+", default=["fp32", "bf16", "fp16"], choices=["fp32", "bf16", "fp16"])
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (spread = min/median/max over them)")
    p.add_argument("--budget", type=float, default=0.3, help="seconds of repeats per call per round (at least 1)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--calls", nargs="+", help="only these calls (names as printed), plus the baselines")
    p.add_argument("--out", type=Path, help="also append the markdown table to this file")
    return p.parse_args(argv)


def setup(threads):
    torch = start_comfyui(threads, pytorch_attention=True)  # so ComfyUI's side runs torch SDPA, as MasaCtrl's
    import comfy.ldm.modules.attention as comfy_attention

    return torch, comfy_attention


def build_calls(torch, comfy_attention, tokens, dtype, seed=0):
    """name -> zero-argument callable, every one on the same q/k/v."""
    from masactrl_suite.attention import SD1_LAYERS, BatchLayout, MutualAttentionSchedule, MutualSelfAttentionControl
    from masactrl_suite.attention.comfyui_mask_patches import CrossAttentionCapture, EvaluationMaps
    from masactrl_suite.attention.comfyui_patches import MAPS_KEY, MASKS_KEY, MasaCtrlAttn1
    from masactrl_suite.attention.equations import mutual_self_attention
    from masactrl_suite.attention.mask_guidance import MaskGuidance
    from masactrl_suite.attention.subject_maps import cross_attention_probs
    from masactrl_suite.attention.subject_words import PromptSubject, Subject

    attention = comfy_attention.optimized_attention
    channels, site, layer = LAYERS[tokens]
    side = int(tokens ** 0.5)
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(ROWS, tokens, channels, generator=g).to(dtype) for _ in range(3))
    kc, vc = (torch.randn(ROWS, CONTEXT, channels, generator=g).to(dtype) for _ in range(2))
    layout = BatchLayout((0,))
    control = MutualSelfAttentionControl(MutualAttentionSchedule(start_step=0, start_layer=0), layout, SD1_LAYERS)
    patch = MasaCtrlAttn1(control, attention)
    sample_sigmas = torch.tensor([14.6, 6.0, 2.5, 0.9, 0.0])
    extra = {"block": site[:2], "block_index": site[2], "transformer_index": 0, "cond_or_uncond": [1, 0],
             "sigmas": torch.full((ROWS,), 14.6), "sample_sigmas": sample_sigmas, "n_heads": HEADS,
             "dim_head": channels // HEADS, "attn_precision": None, "original_shape": [ROWS, 4, 64, 64],
             "activations_shape": [ROWS, channels, side, side]}
    word = PromptSubject(("subject",), ((5,),), CONTEXT)
    guidance = MaskGuidance(0.1, Subject(word, word), capture_layers=frozenset({4, 5}))
    maps = EvaluationMaps(layout)
    for captured in (4, 5):  # what the two capture layers before this one left: [batch, 16*16, words]
        maps.maps.add(captured, torch.rand(2, 256, 1, generator=g), 16, 16)
    masked_extra = {**extra, MASKS_KEY: guidance, MAPS_KEY: maps}
    capture = CrossAttentionCapture(layer, attention)
    capture_extra = {**masked_extra, MAPS_KEY: EvaluationMaps(layout)}
    selection = maps.selection(guidance, 2, CONTEXT, q.device)
    rows = control.source_rows(ROWS, 2, q.device)

    def host():  # the patch's per-call work, without attention
        control.source_rows(q.shape[0], 2, q.device)
        sigma = float(extra["sigmas"].max())
        return control.step_is_active(sigma, patch._schedule_on_cpu(extra["sample_sigmas"]))

    return {
        "attn1 comfy": lambda: attention(q, k, v, HEADS, attn_precision=None, transformer_options=extra),
        "attn1 masactrl": lambda: patch(q, k, v, extra),
        "attn1 masked": lambda: patch(q, k, v, masked_extra),
        "gather": lambda: (k.index_select(0, rows), v.index_select(0, rows)),
        "host": host,
        "mutual": lambda: mutual_self_attention(q, k, v, HEADS, rows),
        "attn2 comfy": lambda: attention(q, kc, vc, HEADS, attn_precision=None, transformer_options=extra),
        "attn2 capture": lambda: capture(q, kc, vc, capture_extra),
        "probs": lambda: cross_attention_probs(q[2:], kc[2:], HEADS, selection),
    }


def baseline_of(name):
    return "attn2 comfy" if name.startswith(("attn2", "probs")) else "attn1 comfy"


def time_call(fn, budget, last):
    """Seconds per call: repeats of `fn` filling about `budget` seconds (at least one), sized by `last`,
    the time per call seen before (the warm-up call or the previous round)."""
    reps = max(1, int(budget / max(last, 1e-6)))
    c0, t0 = time.thread_time(), time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.thread_time() - c0) / reps, (time.perf_counter() - t0) / reps


def warm_up(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main():
    args = parse_args()
    torch, comfy_attention = setup(args.threads)
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    head = (f"CPU, torch {torch.__version__}, {torch.get_num_threads()} thread(s), OMP_NUM_THREADS="
            f"{os.environ.get('OMP_NUM_THREADS')}, ComfyUI optimized_attention = "
            f"{comfy_attention.optimized_attention.__name__}, {ROWS} rows x {HEADS} heads, {args.rounds} "
            f"interleaved rounds, load avg at start {os.getloadavg()[0]:.2f}")
    print(head, flush=True)
    lines = ["| tokens | channels | dtype | call | CPU ms per call min/med/max | vs ComfyUI (CPU time) | "
             "wall ms per call min/med/max | vs ComfyUI (wall) |", "|---|---|---|---|---|---|---|---|"]
    for tokens in args.tokens:
        for dname in args.dtypes:
            calls = build_calls(torch, comfy_attention, tokens, dtypes[dname])
            if args.calls:
                calls = {n: f for n, f in calls.items() if n in args.calls or n in ("attn1 comfy", "attn2 comfy")}
            try:
                calls["attn1 comfy"]()
            except RuntimeError as e:  # e.g. a dtype this CPU's SDPA does not run
                print(f"{tokens} tokens {dname}: skipped ({str(e).splitlines()[0]})")
                continue
            last = {n: warm_up(fn) for n, fn in calls.items()}
            times, walls = {n: [] for n in calls}, {n: [] for n in calls}
            for _ in range(args.rounds):  # interleaved: a busy spell of the shared machine hits every call alike
                for name, fn in calls.items():
                    cpu, wall = time_call(fn, args.budget, last[name])
                    times[name].append(cpu)
                    walls[name].append(wall)
                    last[name] = wall
            channels = LAYERS[tokens][0]
            for name in calls:
                ratios = [t / b for t, b in zip(times[name], times[baseline_of(name)])]
                wall_ratios = [t / b for t, b in zip(walls[name], walls[baseline_of(name)])]
                ms = lambda x: f"{x * 1e3:.2f}"  # noqa: E731
                ratio = lambda x: f"{x:.2f}x"  # noqa: E731
                row = (f"| {tokens} | {channels} | {dname} | {name} | {spread(times[name], ms)} | "
                       f"{spread(ratios, ratio)} | {spread(walls[name], ms)} | {spread(wall_ratios, ratio)} |")
                lines.append(row)
                print(row, flush=True)
            print(f"  load avg {os.getloadavg()[0]:.2f}", flush=True)
    tail = f"load avg at the end {os.getloadavg()[0]:.2f}"
    print(tail)
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n" + head + "; " + tail + ".\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
