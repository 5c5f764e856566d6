#!/usr/bin/env python
"""What MasaCtrl Schedule Sweep costs beyond the sampling it does, on the full SD1.5 UNet layout and a CLIP
ViT-L/14 (the CLIP of SD1.5; random weights, real sizes), set up as bench_masactrl.py (CFG, source + target,
euler / normal), timed in one run, rounds interleaved.

The sweep node is timed against the same work done by hand, node by node: for each value the sampling (KSampler
with the swept MasaCtrl), VAE Decode and Alignment Scores. The ratio should be 1.00x: the sweep adds only its
grid, plot and table. The scoring's share of the sweep is reported too.

  python benchmarks/bench_sweep.py --threads 2 --repeats 2 --out benchmarks/RESULTS.md   # appends a section
  python benchmarks/bench_sweep.py --resolution 64 --steps 5 --repeats 1                  # quick check
"""
from __future__ import annotations

import argparse
import atexit
import os
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_masactrl  # noqa: E402  (setup: ComfyUI on the CPU and the full SD1.5 model)

VALUES = "off, 5, 6, -1"  # end_step; MasaCtrl's default start_step is 4


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=128, help="image size in px")
    p.add_argument("--steps", type=int, default=8, help="sampling steps per run; at least 7, for end_step 6")
    p.add_argument("--repeats", type=int, default=2, help="interleaved rounds; the median is kept")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads")
    p.add_argument("--out", type=Path, help="APPEND the results as a new section to this markdown file")
    args = p.parse_args(argv)
    bench_args = bench_masactrl.parse_args(["--threads", str(args.threads), "--steps", str(args.steps),
                                            "--resolution", str(args.resolution)])
    return args, bench_args


def clip_vit_l14(path: Path, comfy_path: Path) -> Path:
    """A random-weight CLIP with ViT-L/14's sizes, saved as a Hugging Face folder."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(comfy_path / "comfy" / "sd1_tokenizer"))
    config = CLIPConfig(text_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                         num_attention_heads=12, vocab_size=len(tokenizer)),
                        vision_config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                           num_attention_heads=16, image_size=224, patch_size=14), projection_dim=768)
    torch.manual_seed(0)
    CLIPModel(config).eval().save_pretrained(str(path))
    CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tokenizer).save_pretrained(str(path))
    return path


def random_vae():
    import comfy.sd
    from comfy.ldm.models.autoencoder import AutoencoderKL
    from comfy_harness import init_random_

    ddconfig = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
    return comfy.sd.VAE(sd=init_random_(AutoencoderKL(ddconfig=ddconfig, embed_dim=4), seed=2).state_dict())


def main():
    args, bench_args = parse_args()
    torch, models, _, attention = bench_masactrl.setup(bench_args)
    import comfy.sample
    import comfy.utils
    from masactrl_suite.attention.comfyui_patches import replace_control
    from masactrl_suite.evaluation.sweep_settings import sweep_settings
    from masactrl_suite.model_files.score_models import ScoreModels, load_clip
    from masactrl_suite.model_files.score_models import score_images
    from masactrl_suite.nodes.sweep_nodes import ScheduleSweep
    from masactrl_suite.evaluation.comfyui_sweep import decode, masactrl_control

    comfy.utils.PROGRESS_BAR_ENABLED = False  # no tqdm bars in the sweep either, as in the runs by hand
    folder = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # the CLIP folder is 1.7 GB
    scorers = ScoreModels(load_clip(str(clip_vit_l14(folder / "clip-vit-l14", bench_masactrl.COMFYUI_PATH))))
    vae, model, steps = random_vae(), models["b"], args.steps
    g = torch.Generator().manual_seed(0)
    positive, negative = [[torch.randn(2, 77, 768, generator=g), {}]], [[torch.randn(1, 77, 768, generator=g), {}]]
    latent = {"samples": torch.zeros(2, 4, args.resolution // 8, args.resolution // 8)}
    prompts = "a photo of a corgi\na photo of a corgi jumping"
    control = masactrl_control(model)
    settings = sweep_settings(control.schedule, "end_step", VALUES, steps, control.layer_map)

    def sweep():
        return ScheduleSweep.execute(model, vae, positive, negative, latent, 0, steps, bench_masactrl.CFG, "euler",
                                     "normal", 1.0, "end_step", VALUES, scorers, prompts, "clip")

    parts = {"sampling": [], "decode": [], "scoring": []}  # per round, summed over the values

    @contextmanager
    def counted(part):
        start = time.perf_counter()
        yield
        parts[part][-1] += time.perf_counter() - start

    def by_hand():
        noise = comfy.sample.prepare_noise(latent["samples"], 0)
        for setting in settings:
            swept = None if setting.schedule is None else replace(control, schedule=setting.schedule)
            with counted("sampling"):
                out = comfy.sample.sample(replace_control(model, swept), noise.clone(), steps, bench_masactrl.CFG,
                                          "euler", "normal", positive, negative, latent["samples"], disable_pbar=True,
                                          seed=0)
            with counted("decode"):
                images = decode(vae, out)
            with counted("scoring"):
                score_images(scorers, images, [0, 0], prompts.splitlines())

    print(f"torch threads {torch.get_num_threads()}, {args.resolution} px, {steps} steps, {len(settings)} values, "
          f"ComfyUI attention {attention}, load avg {os.getloadavg()[0]:.2f}", flush=True)
    sweep()  # first-call costs (model loads) stay out of the timings
    times = {"sweep": [], "by hand": []}
    for r in range(args.repeats):
        for kind in (("sweep", "by hand") if r % 2 == 0 else ("by hand", "sweep")):
            if kind == "by hand":
                for part in parts.values():
                    part.append(0.0)
            t = time.perf_counter()
            sweep() if kind == "sweep" else by_hand()
            times[kind].append(time.perf_counter() - t)
        print(f"round {r + 1}/{args.repeats} done", flush=True)
    sweep_time, hand = statistics.median(times["sweep"]), statistics.median(times["by hand"])
    share = {k: statistics.median(v) for k, v in parts.items()}
    lines = [f"## Schedule sweep: `python benchmarks/bench_sweep.py {' '.join(sys.argv[1:])}`", "",
             f"Full SD1.5 UNet layout and CLIP ViT-L/14 (random weights): cpu, {torch.get_num_threads()} torch "
             f"threads, fp32, {args.resolution} px, batch 2 (source, target), CFG {bench_masactrl.CFG}, euler / normal,"
             f" {steps} steps, end_step over '{VALUES}' ({len(settings)} runs), median of {args.repeats} interleaved "
             f"rounds, load avg {os.getloadavg()[0]:.2f} at the end.", "",
             "| | time (s) | vs by hand |", "|---|---|---|",
             f"| MasaCtrl Schedule Sweep (sampling, decode, scores, grid, plot) | {sweep_time:.2f} | "
             f"{sweep_time / hand:.2f}x |",
             f"| by hand: KSampler + VAE Decode + Alignment Scores per value | {hand:.2f} | 1.00x |",
             f"| of which sampling | {share['sampling']:.2f} | {share['sampling'] / hand:.2f}x |",
             f"| of which VAE decode | {share['decode']:.2f} | {share['decode'] / hand:.2f}x |",
             f"| of which CLIP scores | {share['scoring']:.2f} | {share['scoring'] / hand:.2f}x |"]
    bench_masactrl.report(lines, args.out)


if __name__ == "__main__":
    main()
