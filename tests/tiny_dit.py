"""Tiny random-weight diffusion transformers built from ComfyUI's own model classes and configs (the real Flux,
Flux Fill, Chroma, SD3/MMDiT and Qwen-Image code, only narrower and shallower), in ModelPatchers on the CPU, and
conditioning of the shape their model_base classes expect. ComfyUI must be started first (start_comfy)."""
from __future__ import annotations

from types import SimpleNamespace

import torch

from comfy_harness import init_random_

CONTEXT = 32  # text-encoder width of every tiny model (the prompt's feature size)
POOLED = 32

# Flux.1 dev layout, narrow: 2 heads of 32 (RoPE axes 4 + 14 + 14), 3 double- and 3 single-stream blocks.
FLUX = {"image_model": "flux", "in_channels": 16, "out_channels": 16, "vec_in_dim": POOLED, "context_in_dim": CONTEXT,
        "hidden_size": 64, "mlp_ratio": 4.0, "num_heads": 2, "depth": 3, "depth_single_blocks": 3,
        "axes_dim": [4, 14, 14], "theta": 10000, "qkv_bias": True, "guidance_embed": True, "patch_size": 2}
# Flux Fill (ComfyUI's FluxInpaint): the Flux layout with the known image (16 channels) and the pixel mask packed
# 8x8 into 64 channels concatenated to the latent: in_channels 16 + 16 + 64.
FLUX_FILL = {**FLUX, "in_channels": 96}
CHROMA = {"image_model": "chroma", "in_channels": 64, "out_channels": 64, "context_in_dim": CONTEXT,
          "hidden_size": 64, "mlp_ratio": 4.0, "num_heads": 2, "depth": 2, "depth_single_blocks": 2,
          "axes_dim": [4, 14, 14], "theta": 10000, "patch_size": 2, "qkv_bias": True,
          "in_dim": 64, "out_dim": 64, "hidden_dim": 64, "n_layers": 1}
# SD3.5 medium's MMDiT-X layout, narrow: depth 3 (hidden 192, 3 heads of 64), block 0 with the extra image-only
# attention, RMS q/k norms; absolute position embeddings, no RoPE.
SD3 = {"in_channels": 16, "out_channels": 16, "patch_size": 2, "depth": 3, "input_size": None,
       "adm_in_channels": POOLED, "pos_embed_scaling_factor": None, "num_patches": 256, "pos_embed_max_size": 16,
       "context_embedder_config": {"target": "torch.nn.Linear",
                                   "params": {"in_features": CONTEXT, "out_features": 192}},
       "qk_norm": "rms", "x_block_self_attn_layers": [0]}
QWEN_IMAGE = {"image_model": "qwen_image", "patch_size": 2, "in_channels": 64, "out_channels": 16, "num_layers": 2,
              "attention_head_dim": 32, "num_attention_heads": 2, "joint_attention_dim": CONTEXT,
              "axes_dims_rope": (8, 12, 12)}
# Wan 2.1 text-to-video, narrow: a family MasaCtrl does not patch (text through a separate cross-attention).
WAN = {"image_model": "wan2.1", "model_type": "t2v", "patch_size": (1, 2, 2), "text_len": 16, "in_dim": 16, "dim": 64,
       "ffn_dim": 128, "freq_dim": 256, "text_dim": CONTEXT, "out_dim": 16, "num_heads": 2, "num_layers": 1,
       "window_size": (-1, -1), "qk_norm": True, "cross_attn_norm": True, "eps": 1e-6}


def tiny_model(family: str, seed: int = 0):
    """A ModelPatcher of the family's tiny model, fp32 on the CPU, seeded random weights."""
    import comfy.model_patcher
    import comfy.supported_models as supported

    config_class, unet = {"flux": (supported.Flux, FLUX), "flux_fill": (supported.FluxInpaint, FLUX_FILL),
                          "chroma": (supported.Chroma, CHROMA),
                          "sd3": (supported.SD3, SD3), "qwen_image": (supported.QwenImage, QWEN_IMAGE),
                          "wan": (supported.WAN21_T2V, WAN)}[family]
    model_config = config_class(dict(unet))
    model_config.set_inference_dtype(torch.float32, None)
    model = model_config.get_model({})
    init_random_(model.diffusion_model, seed)
    with torch.no_grad():
        for name, p in model.diffusion_model.named_parameters():
            if name.endswith(".scale"):  # Flux's q/k RMSNorm scales: zero would make every query and key 0
                p.fill_(1.0)
    for name, buffer in model.diffusion_model.named_buffers():  # SD3's pos_embed is a buffer: never initialised
        if name == "pos_embed":
            buffer.copy_(torch.randn(buffer.shape, generator=torch.Generator().manual_seed(seed + 1)) * 0.1)
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)


def prompts(batch: int, tokens: int = 5, seed: int = 1, guidance: float | None = 3.5):
    """(positive, negative) conditioning of `batch` distinct random prompts (negative: zeros), with the pooled
    output and, where given, Flux's guidance."""
    generator = torch.Generator().manual_seed(seed)
    extra = {} if guidance is None else {"guidance": guidance}
    positive = [[torch.randn(batch, tokens, CONTEXT, generator=generator),
                 {"pooled_output": torch.randn(batch, POOLED, generator=generator), **extra}]]
    negative = [[torch.zeros(batch, tokens, CONTEXT), {"pooled_output": torch.zeros(batch, POOLED), **extra}]]
    return positive, negative


def sampler_run(batch: int = 2, height: int = 8, width: int = 12, steps: int = 6, seed: int = 2, frames=None):
    """A fixed sampling job: noise and an empty latent of `batch` images (latent height x width; with `frames`,
    the video-shaped latent of Wan's VAE, which Qwen-Image uses: one frame)."""
    shape = (batch, 16, height, width) if frames is None else (batch, 16, frames, height, width)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    return SimpleNamespace(noise=noise, latent=torch.zeros_like(noise), steps=steps)


def sample(model, job, positive, negative, cfg: float, sampler: str = "euler", scheduler: str = "simple",
           model_options_update=None):
    import comfy.sample

    if model_options_update:
        model = model.clone()
        model.model_options.update(model_options_update)
    return comfy.sample.sample(model, job.noise.clone(), job.steps, cfg, sampler, scheduler, positive, negative,
                               job.latent, disable_pbar=True, seed=0)
