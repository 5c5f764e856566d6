"""Hugging Face model folders (config.json + weights + processor files) inside ComfyUI's model folders: finding
them, saying what a folder lacks, holding a transformers model under ComfyUI's model management, and handing
ComfyUI images to its processor."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import comfy.model_management as mm
import comfy.model_patcher
import folder_paths
import numpy as np
import torch

WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")


def register(folder: str) -> None:
    """models/<folder>, appended (not made the default): an extra_model_paths.yaml entry keeps its place."""
    folder_paths.add_model_folder_path(folder, os.path.join(folder_paths.models_dir, folder))


def search_folders(folder: str) -> list[str]:
    """models/<folder> and the folders extra_model_paths.yaml adds for it."""
    return folder_paths.get_folder_paths(folder)


def _models_under(root: str, rel: str = "", depth: int = 1):
    """Sub-folders holding a config.json (down to org/name and the Hugging Face cache's snapshots/<hash>);
    a top-level folder with none is listed too, so that choosing it says which files are missing."""
    try:
        names = sorted(n for n in os.listdir(os.path.join(root, rel)) if not n.startswith("."))
    except OSError:
        return
    for name in names:
        path = os.path.join(rel, name) if rel else name
        if not os.path.isdir(os.path.join(root, path)):
            continue
        if os.path.isfile(os.path.join(root, path, "config.json")):
            yield path.replace(os.sep, "/")
            continue
        inner = list(_models_under(root, path, depth + 1)) if depth < 3 else []
        yield from inner if inner else ([path.replace(os.sep, "/")] if depth == 1 else [])


def model_folders(folder: str, model_types: tuple[str, ...] | None = None) -> dict[str, str]:
    """name -> full path of every model folder found; the first search folder wins a name. With model_types,
    only folders whose config.json names one of them (folders without a readable config are kept, so that
    choosing one says what is missing)."""
    found = {}
    for root in search_folders(folder):
        for name in _models_under(root):
            path = os.path.join(root, name)
            if model_types is None or model_type(path) in model_types + (None,):
                found.setdefault(name, path)
    return found


def model_type(path: str) -> str | None:
    """config.json's model_type, or None where there is no readable config."""
    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
            return json.load(f).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


def missing_files(path: str, required: tuple[tuple[str, tuple[str, ...]], ...]) -> list[str]:
    """What `path` lacks of `required` ((what, any one of these files), ...), one entry per missing part."""
    present = set(os.listdir(path))
    return [" or ".join(files) + f" ({what})" for what, files in required if not present & set(files)]


def read_config(path: str, required, node: str, download: str) -> dict:
    """config.json of a complete folder; otherwise an error naming the folder, the missing files and what to
    download (`download`: e.g. 'all files of openai/clip-vit-large-patch14 from Hugging Face')."""
    missing = missing_files(path, required) if os.path.isdir(path) else ["every file: the folder does not exist"]
    if missing:
        raise FileNotFoundError(f"{node}: the model folder {path} is missing {'; '.join(missing)}. "
                                f"Download {download} into it.")
    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
            return json.load(f)
    except ValueError as error:
        raise ValueError(f"{node}: {path}/config.json is not valid JSON ({error}); download {download} "
                         "again.") from None


@dataclass
class ManagedModel:
    """A loaded transformers model inside a ModelPatcher (so ComfyUI loads and offloads it), with its processor."""
    patcher: comfy.model_patcher.ModelPatcher
    processor: object
    path: str

    @property
    def model(self):
        return self.patcher.model.model


class ModelHolder(torch.nn.Module):
    # ModelPatcher writes model.device, a read-only property on transformers models: hold the model instead.
    def __init__(self, model, device):
        super().__init__()
        self.model = model
        self.device = device


def managed(model: torch.nn.Module) -> comfy.model_patcher.ModelPatcher:
    """`model` in a ModelPatcher, in the dtype ComfyUI would use, so mm.load_models_gpu loads and offloads it
    like ComfyUI's own models; the model itself is patcher.model.model."""
    load_device, offload_device = mm.get_torch_device(), mm.text_encoder_offload_device()
    if mm.vram_state == mm.VRAMState.NO_VRAM:  # ComfyUI would stream only its own layers' weights; these are torch's
        load_device = offload_device
    dtype = torch.float16 if mm.should_use_fp16(load_device, prioritize_performance=False) else torch.float32
    model = model.to(device=offload_device, dtype=dtype).eval()
    return comfy.model_patcher.ModelPatcher(ModelHolder(model, offload_device), load_device=load_device,
                                            offload_device=offload_device)


def to_pil(images: torch.Tensor) -> list:
    """ComfyUI IMAGE [B, H, W, C] in 0..1 -> RGB PIL images (rounded, so Load Image's pixels come back exact)."""
    from PIL import Image

    pixels = (images[..., :3].float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    if pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    return [Image.fromarray(p) for p in pixels]
