#!/usr/bin/env python
"""MasaCtrl on diffusion transformers at the cost of plain sampling? Time and peak memory, MasaCtrl on vs off.

Full-width block layouts with random weights, built from ComfyUI's own classes and configs:
  flux:  Flux.1 dev (hidden 3072, 24 heads of 128, RoPE axes 16/56/56, T5 width 4096, guidance embedding)
  sd35:  SD3.5 large (MMDiT: hidden 2432, 38 heads of 64, RMS q/k norms, absolute positions)
Their 57 and 38 blocks do not fit a CPU machine's memory in fp32, so the model keeps `--double` double-stream
(joint) and `--single` single-stream blocks of the real width; every block of a kind costs the same, so the
ratio inside the blocks (printed) is the full model's ratio, and the whole-call ratio understates nothing the
blocks do. MasaCtrl acts on every kept block (start_step 0, start_layer 0): the worst case.

Batch: a source and a target (Flux: cfg 1, guidance-distilled, no uncond pass; SD3.5: cfg 4.5, cond and uncond
rows), euler, `--steps` steps. Configs run interleaved, in reversed order every other round. Printed per config:
process CPU time per step (with one torch thread the work itself, not waiting for a core on a shared machine),
wall time, and CPU time inside the blocks, as min/median/max over rounds, each round's ratio to "off", and the
load average. With --memory, peak memory of one sampling run per config, each in a fresh process (growth of
VmHWM over the RSS with the model built). Both configs run ComfyUI's own attention function (MasaCtrl hands it
the swapped keys): same kernel by construction; --pytorch-attention selects SDPA for both.

  OMP_NUM_THREADS=1 python benchmarks/bench_dit_masactrl.py --family flux --resolution 256 --memory
  OMP_NUM_THREADS=1 python benchmarks/bench_dit_masactrl.py --family sd35 --resolution 256 --memory
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from bench_common import peak_growth_in_child, print_peak_growth, spread, start_comfyui

BLOCK_TIME = [0.0]
TEXT_TOKENS = 256  # T5's prompt length in ComfyUI's Flux/SD3 workflows is 256 or more; 256 keeps the CPU run short
FLUX_DEV = {"image_model": "flux", "in_channels": 16, "out_channels": 16, "vec_in_dim": 768, "context_in_dim": 4096,
            "hidden_size": 3072, "mlp_ratio": 4.0, "num_heads": 24, "depth": 19, "depth_single_blocks": 38,
            "axes_dim": [16, 56, 56], "theta": 10000, "qkv_bias": True, "guidance_embed": True, "patch_size": 2}
SD35_LARGE = {"in_channels": 16, "out_channels": 16, "patch_size": 2, "depth": 38, "input_size": None,
              "adm_in_channels": 2048, "pos_embed_scaling_factor": None, "num_patches": 36864,
              "pos_embed_max_size": 192, "qk_norm": "rms", "x_block_self_attn_layers": [],
              "context_embedder_config": {"target": "torch.nn.Linear",
                                          "params": {"in_features": 4096, "out_features": 2432}}}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", choices=["flux", "sd35"], default="flux")
    p.add_argument("--resolution", type=int, default=256, help="image size in px (latent = /8)")
    p.add_argument("--double", type=int, default=1, help="double-stream (joint) blocks kept at full width")
    p.add_argument("--single", type=int, default=1, help="single-stream blocks kept (Flux)")
    p.add_argument("--steps", type=int, default=2, help="timed sampling steps per run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--pytorch-attention", action="store_true", help="ComfyUI's --use-pytorch-cross-attention")
    p.add_argument("--memory", action="store_true", help="also measure peak memory (a fresh process per config)")
    p.add_argument("--out", type=Path, help="also append the markdown section to this file")
    p.add_argument("--mem-child", choices=["off", "on"], help=argparse.SUPPRESS)
    return p.parse_args(argv)


def build_model(args, torch):
    """The family's full-width model with the kept blocks only: built on the meta device (no memory), cut to
    the kept blocks, then materialised with seeded random weights."""
    import comfy.model_base
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models as supported

    from comfy_harness import init_random_

    config_class, unet = (supported.Flux, FLUX_DEV) if args.family == "flux" else (supported.SD3, SD35_LARGE)
    model_config = config_class(dict(unet))
    model_config.set_inference_dtype(torch.float32, None)
    model = model_config.get_model({}, device=torch.device("meta"))
    net = model.diffusion_model
    if args.family == "flux":
        net.double_blocks, net.single_blocks = net.double_blocks[:args.double], net.single_blocks[:args.single]
    else:
        net.joint_blocks = net.joint_blocks[:args.double]
    model.to_empty(device="cpu")
    # to_empty leaves every buffer uninitialised, model_sampling's sigma table too: build that part again, as
    # ComfyUI builds it for this model, so sampling runs on the model's real schedule.
    model.model_sampling = comfy.model_base.model_sampling(model_config, model.model_type)
    init_random_(net, 0)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith(".scale"):  # Flux's q/k RMSNorm scales
                p.fill_(1.0)
        for name, b in net.named_buffers():
            b.copy_(torch.randn(b.shape, generator=torch.Generator().manual_seed(1)) * 0.02)
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device()), net


def setup(args):
    torch = start_comfyui(args.threads, pytorch_attention=args.pytorch_attention)
    import comfy.ldm.modules.attention as comfy_attention
    import comfy.sample

    from masactrl_suite.nodes.masactrl_nodes import MasaCtrl

    model, net = build_model(args, torch)
    on = MasaCtrl.execute(model, schedule_by="steps", start_step=0, end_step=-1, step_interval=1, start_percent=0.0,
                          end_percent=1.0, start_layer=0, end_layer=-1, encoder=True, middle=True, decoder=True,
                          source_indices="0").result[0]
    models = {"off": model, "on": on}
    g = torch.Generator().manual_seed(0)
    side = args.resolution // 8
    latent = torch.zeros(2, 16, side, side)
    noise = torch.randn(latent.shape, generator=g)
    pooled = 768 if args.family == "flux" else 2048
    extra = {"guidance": 3.5} if args.family == "flux" else {}
    positive = [[torch.randn(2, TEXT_TOKENS, 4096, generator=g), {"pooled_output": torch.randn(2, pooled), **extra}]]
    negative = [[torch.zeros(1, TEXT_TOKENS, 4096), {"pooled_output": torch.zeros(1, pooled), **extra}]]
    cfg = 1.0 if args.family == "flux" else 4.5

    blocks = list(getattr(net, "double_blocks", [])) + list(getattr(net, "single_blocks", [])) + list(
        getattr(net, "joint_blocks", []))
    for block in blocks:  # CPU time inside the kept blocks, where all of MasaCtrl's work happens
        original = block.forward

        def timed(*a, _original=original, **kw):
            c0 = time.thread_time()
            try:
                return _original(*a, **kw)
            finally:
                BLOCK_TIME[0] += time.thread_time() - c0
        block.forward = timed

    def sample(key, steps):
        return comfy.sample.sample(models[key], noise, steps, cfg, "euler", "simple", positive, negative, latent,
                                   disable_pbar=True, seed=0)
    return models, sample, comfy_attention.optimized_attention.__name__


def mem_child(args):
    sample = setup(args)[1]
    sample(args.mem_child, 1)  # first-call costs out of the way
    print_peak_growth(lambda: sample(args.mem_child, args.steps))


def peak_memory(args, key):
    opts = ["--family", args.family, "--resolution", args.resolution, "--double", args.double, "--single",
            args.single, "--steps", 1, "--threads", args.threads, "--mem-child", key]
    opts += ["--pytorch-attention"] if args.pytorch_attention else []
    return peak_growth_in_child(__file__, opts, key)


def main():
    args = parse_args()
    if args.mem_child:
        return mem_child(args)
    _, sample, kernel = setup(args)
    keys = ["off", "on"]
    for key in keys:
        sample(key, 1)  # warm-up
    times = {key: {"cpu": [], "wall": [], "blocks": []} for key in keys}
    loads = [os.getloadavg()[0]]
    for round_ in range(args.rounds):
        for key in keys if round_ % 2 == 0 else keys[::-1]:
            BLOCK_TIME[0] = 0.0
            c0, w0 = time.process_time(), time.perf_counter()
            sample(key, args.steps)
            times[key]["cpu"].append((time.process_time() - c0) / args.steps)
            times[key]["wall"].append((time.perf_counter() - w0) / args.steps)
            times[key]["blocks"].append(BLOCK_TIME[0] / args.steps)
        loads.append(os.getloadavg()[0])
    kept = f"{args.double} double" + (f" + {args.single} single" if args.family == "flux" else "") + " blocks"
    lines = [(f"### {args.family}: {args.resolution} px, {kept} at full width, {args.steps} steps x {args.rounds} "
              f"rounds, kernel {kernel}"),
             f"load average during the run: {spread(loads, lambda x: f'{x:.2f}')} (min/median/max)", "",
             "| config | CPU s/step | wall s/step | CPU s/step in blocks | CPU vs off | blocks vs off | wall vs off |",
             "|---|---|---|---|---|---|---|"]
    for key in keys:
        t = times[key]
        ratios = {m: [a / b for a, b in zip(t[m], times["off"][m])] for m in ("cpu", "blocks", "wall")}
        lines.append(f"| MasaCtrl {key} | {spread(t['cpu'], lambda x: f'{x:.2f}')} | "
                     f"{spread(t['wall'], lambda x: f'{x:.2f}')} | {spread(t['blocks'], lambda x: f'{x:.2f}')} | "
                     + " | ".join(spread(ratios[m], lambda x: f'{x:.3f}x') for m in ("cpu", "blocks", "wall")) + " |")
    if args.memory:
        peaks = {key: peak_memory(args, key) for key in keys}
        lines += ["", "| config | peak memory growth during sampling (MiB) | vs off |", "|---|---|---|"]
        lines += [f"| MasaCtrl {key} | {peaks[key]['growth_mib']:.0f} | "
                  f"{peaks[key]['growth_mib'] / peaks['off']['growth_mib']:.3f}x |" for key in keys]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n" + text + "\n")


if __name__ == "__main__":
    main()
