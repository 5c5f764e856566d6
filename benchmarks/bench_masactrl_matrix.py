#!/usr/bin/env python
"""MasaCtrl at the cost of plain sampling? Sampling time and peak memory of the real nodes, same kernel.

The full SD1.5 UNet layout (random weights) in ComfyUI's own sampler: batch 2 (source + target) with CFG
(4 UNet rows), euler, `--steps` steps, and these models, made by the pack's real node classes:
  (a) unpatched
  (b) MasaCtrl node, default layers (start_layer 10: the decoder's last six), start_step 0
  (c) MasaCtrl node, all 16 layers (start_layer 0), start_step 0
  (d) (b) + MasaCtrl Masks node, automatic masks (maps captured at 1/4 resolution, threshold 0.1)
  (e) (c) + MasaCtrl Masks node, automatic masks
start_step 0 so that every timed step is an active one: with the node's default start_step 4 the steps
before it cost what (a) costs. The configs run interleaved, in reversed order every other round. Printed per
config: s/step (process CPU time, which with one torch thread is the work itself and does not count waiting
for a core on a shared machine; wall time; and the CPU time inside the transformer blocks, where all of
MasaCtrl's work happens) as min/median/max over the rounds, its ratio to (a) in the
same round (min/median/max), the load average, and every round. With --memory, peak memory of one sampling
run per config, each in a fresh process (growth of VmHWM over the RSS with the model built).

  OMP_NUM_THREADS=1 python benchmarks/bench_masactrl_matrix.py --pytorch-attention --resolution 256
  OMP_NUM_THREADS=1 python benchmarks/bench_masactrl_matrix.py --resolution 512 --steps 1 --configs a c e

--pytorch-attention is ComfyUI's --use-pytorch-cross-attention (every unpatched layer on torch SDPA, the
kernel MasaCtrl's layers then use too); without it ComfyUI's CPU default (sub-quadratic attention) runs the
unpatched layers. ComfyUI is found at $COMFYUI_PATH (default ~/ComfyUI).
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from bench_common import peak_growth_in_child, print_peak_growth, spread, start_comfyui

CONFIGS = {"a": "unpatched", "b": "MasaCtrl default layers (10-15), step 0+", "c": "MasaCtrl all 16 layers, step 0+",
           "d": "(b) + automatic masks (maps included)", "e": "(c) + automatic masks (maps included)"}
BLOCK_TIME = [0.0]  # seconds of thread CPU time spent inside transformer blocks (see setup)
CFG = 7.5  # not 1.0: at cfg 1 ComfyUI skips the uncond pass and the UNet would see 2 rows, not 4


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=256, help="image size in px (latent = /8)")
    p.add_argument("--steps", type=int, default=2, help="timed sampling steps per run")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (spread = min/median/max over them)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument("--pytorch-attention", action="store_true", help="ComfyUI's --use-pytorch-cross-attention")
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--memory", action="store_true", help="also measure peak memory (one fresh process per config)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="also append the markdown section to this file")
    p.add_argument("--mem-child", choices=list(CONFIGS), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def setup(args):
    """Import ComfyUI and the pack's nodes; build the model, the configs' models (by the nodes) and the batch."""
    torch = start_comfyui(args.threads, pytorch_attention=args.pytorch_attention)
    import comfy.ldm.modules.attention as comfy_attention
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.sample

    from comfy_harness import SD15_FULL_UNET, build_sd15_model
    from masactrl_suite.attention.subject_words import PromptSubject, Subject
    from masactrl_suite.nodes.masactrl_nodes import MasaCtrl
    from masactrl_suite.nodes.mask_nodes import MaskGuidanceNode

    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    _, base = build_sd15_model(SD15_FULL_UNET, dtype=dtype)
    model = comfy.model_patcher.ModelPatcher(base, load_device=mm.get_torch_device(),
                                             offload_device=mm.unet_offload_device())

    def masactrl(start_layer):
        return MasaCtrl.execute(model, schedule_by="steps", start_step=0, end_step=-1, step_interval=1,
                                start_percent=0.0, end_percent=1.0, start_layer=start_layer, end_layer=-1,
                                encoder=True, middle=True, decoder=True, source_indices="0").result[0]

    def masks(patched):  # subject: token 5 of both prompts (what Subject Prompts makes of a one-token word)
        word = PromptSubject(("subject",), ((5,),), 77)
        return MaskGuidanceNode.execute(patched, threshold=0.1, map_resolution="1/4 (paper)", map_layers="all",
                                        subject=Subject(word, word)).result[0]

    build = {"a": lambda: model.clone(), "b": lambda: masactrl(10), "c": lambda: masactrl(0),
             "d": lambda: masks(masactrl(10)), "e": lambda: masks(masactrl(0))}
    keys = [args.mem_child] if args.mem_child else args.configs
    models = {key: build[key]() for key in keys}
    g = torch.Generator().manual_seed(args.seed)
    latent = torch.zeros(2, 4, args.resolution // 8, args.resolution // 8)
    noise = torch.randn(latent.shape, generator=g)
    positive = [[torch.randn(2, 77, 768, generator=g), {}]]  # two prompts: source, target
    negative = [[torch.randn(1, 77, 768, generator=g), {}]]

    block = comfy_attention.BasicTransformerBlock
    original_forward = block.forward

    def timed_forward(self, *a, **kw):  # CPU time inside the 16 transformer blocks (attn1, attn2, ff)
        c0 = time.thread_time()
        try:
            return original_forward(self, *a, **kw)
        finally:
            BLOCK_TIME[0] += time.thread_time() - c0
    block.forward = timed_forward

    def sample(key, steps):
        return comfy.sample.sample(models[key], noise, steps, CFG, "euler", "normal", positive, negative, latent,
                                   disable_pbar=True, seed=args.seed)
    return torch, models, sample, comfy_attention.optimized_attention.__name__


def mem_child(args):
    sample = setup(args)[2]
    sample(args.mem_child, 1)  # first-call costs (allocator, kernel selection) out of the way
    print_peak_growth(lambda: sample(args.mem_child, args.steps))


def peak_memory(args, key):
    opts = ["--resolution", args.resolution, "--steps", 1, "--threads", args.threads, "--dtype", args.dtype,
            "--seed", args.seed, "--mem-child", key] + (["--pytorch-attention"] if args.pytorch_attention else [])
    return peak_growth_in_child(__file__, opts, key)


def main():
    args = parse_args()
    if args.mem_child:
        return mem_child(args)
    torch, models, sample, attention = setup(args)
    head = (f"cpu, {torch.get_num_threads()} torch thread(s) (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}), "
            f"{args.resolution} px (latent {args.resolution // 8}), {args.dtype}, batch 2 + CFG (4 UNet rows), euler, "
            f"{args.steps} steps per run, {args.rounds} interleaved rounds, ComfyUI attention {attention}")
    print(head + f", load avg at start {os.getloadavg()[0]:.2f}", flush=True)
    start_load = os.getloadavg()[0]
    outs = {}
    for key in models:  # warm-up, untimed; also the output of each config
        outs[key] = sample(key, args.steps)
    cpu, wall, blocks, rounds = {k: [] for k in models}, {k: [] for k in models}, {k: [] for k in models}, []
    for r in range(args.rounds):
        order = list(models) if r % 2 == 0 else list(reversed(models))
        for key in order:
            BLOCK_TIME[0] = 0.0
            c0, t0 = time.process_time(), time.perf_counter()
            sample(key, args.steps)
            cpu[key].append((time.process_time() - c0) / args.steps)
            wall[key].append((time.perf_counter() - t0) / args.steps)
            blocks[key].append(BLOCK_TIME[0] / args.steps)
        line = (f"round {r + 1}: " + ", ".join(f"({k}) {cpu[k][-1]:.2f}/{wall[k][-1]:.2f}/{blocks[k][-1]:.2f}"
                                               for k in models)
                + f" s/step CPU/wall/transformer blocks, load avg {os.getloadavg()[0]:.2f}")
        rounds.append(line)
        print(line, flush=True)
    memory = {k: peak_memory(args, k) for k in models} if args.memory else None
    ratio = lambda x: f"{x:.3f}x"  # noqa: E731
    sec = lambda x: f"{x:.2f}"  # noqa: E731
    lines = [f"Full SD1.5 UNet layout (random weights), ComfyUI sampler, pack nodes: {head}; load avg "
             f"{start_load:.2f} at start, {os.getloadavg()[0]:.2f} at the end.", "",
             "| config | max abs out diff vs (a) | CPU s/step min/med/max | vs (a), CPU, min/med/max | "
             "wall s/step min/med/max | vs (a), wall, min/med/max | transformer blocks CPU s/step | vs (a), blocks |"
             + (" peak mem growth (MiB) | vs (a) |" if memory else ""),
             "|---|---|---|---|---|---|---|---|" + ("---|---|" if memory else "")]
    for k in models:
        diff = f"{(outs[k] - outs['a']).abs().max().item():.3g}" if "a" in outs else "n/a"
        base_cpu, base_wall = cpu.get("a", cpu[k]), wall.get("a", wall[k])
        row = (f"| ({k}) {CONFIGS[k]} | {diff} | {spread(cpu[k], sec)} | "
               f"{spread([x / b for x, b in zip(cpu[k], base_cpu)], ratio)} | {spread(wall[k], sec)} | "
               f"{spread([x / b for x, b in zip(wall[k], base_wall)], ratio)} | {spread(blocks[k], sec)} | "
               f"{spread([x / b for x, b in zip(blocks[k], blocks.get('a', blocks[k]))], ratio)} |")
        if memory:
            base = memory.get("a", memory[k])["growth_mib"]
            row += f" {memory[k]['growth_mib']:.0f} | {memory[k]['growth_mib'] / base:.2f}x |"
        lines.append(row)
    lines += ["", "Transformer blocks: thread CPU time inside ComfyUI's 16 BasicTransformerBlock calls per UNet call "
              "(attn1 with MasaCtrl, attn2 with the map capture, feed-forward), where everything MasaCtrl does "
              "happens; the rest of the step (ResNet blocks, sampler) is the same work in every config.",
              "", "Rounds (s/step, process CPU time / wall / transformer blocks): " + "; ".join(rounds) + "."]
    if memory:
        lines += ["", "Peak memory: growth of VmHWM (reset via /proc/self/clear_refs after a warm-up step) over the "
                  f"RSS with the model built, one {args.steps}-step run per config, each in a fresh process; resident "
                  f"before sampling: {memory[next(iter(memory))]['rss_mib']:.0f} MiB."]
    text = "\n".join(lines)
    print("\n" + text)
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n" + text + "\n")


if __name__ == "__main__":
    main()
