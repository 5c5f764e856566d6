"""ComfyUI glue for Vital Layers: one sampling run with every block, then one per block with that block bypassed
(a dit block patch that returns the block's input), same noise and settings, on one progress bar."""
from __future__ import annotations

import comfy.model_management
import comfy.sample
import comfy.utils

from ..attention.comfyui_dit_patches import dit_layer_map_of, installed_dit_patches
from .comfyui_sweep import progress_callback
from .vital_layers import relative_change

NODE = "Vital Layers (MasaCtrl)"


def bypass(args, extra):
    """The block's output is its input: Stable Flow's layer removal."""
    return {key: args[key] for key in ("img", "txt") if key in args}


def block_names(layer_map) -> list[str]:
    return [f"{kind.removesuffix('_block')} {index}" for kind, index in layer_map.sites]


def measure_vital_layers(model, positive, negative, latent_image: dict, seed: int, steps: int, cfg: float,
                         sampler_name: str, scheduler: str):
    """(the layer map, the change of the final latents per bypassed block). The model is not changed."""
    if installed_dit_patches(model):
        raise ValueError(f"{NODE}: this model already has MasaCtrl; connect the model from before the MasaCtrl "
                         "node, so that the ranking is the model's own.")
    diffusion_model = model.get_model_object("diffusion_model")
    if hasattr(diffusion_model, "input_blocks"):
        raise ValueError(f"{NODE}: model is a UNet; this node ranks the blocks of a diffusion transformer (Flux.1, "
                         "Chroma, SD3.x, Qwen-Image). On a UNet MasaCtrl's layers are the paper's: leave the MasaCtrl "
                         "node's start_layer at -1 (auto).")
    layer_map = dit_layer_map_of(diffusion_model)
    samples = comfy.sample.fix_empty_latent_channels(model, latent_image["samples"])
    noise = comfy.sample.prepare_noise(samples, seed, latent_image.get("batch_index"))
    callback_for = progress_callback(model, len(layer_map) + 1, steps)

    def run(patched, index):
        comfy.model_management.throw_exception_if_processing_interrupted()
        return comfy.sample.sample(patched, noise.clone(), steps, cfg, sampler_name, scheduler, positive, negative,
                                   samples, noise_mask=latent_image.get("noise_mask"), callback=callback_for(index),
                                   disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)

    reference = run(model, 0)
    changes = []
    for index, site in enumerate(layer_map.sites, 1):
        patched = model.clone()
        patched.set_model_patch_replace(bypass, "dit", *site)
        changes.append(relative_change(reference, run(patched, index)))
    return layer_map, changes
