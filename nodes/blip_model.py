"""BLIP captioning models (Hugging Face `BlipForConditionalGeneration` folders) in a ComfyUI model folder,
loaded under ComfyUI's model management, and the captioning itself. transformers is imported on first load,
not when ComfyUI starts."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import comfy.model_management as mm
import comfy.model_patcher
import comfy.utils
import folder_paths
import numpy as np
import torch

FOLDER = "blip"
HUB_MODELS = "Salesforce/blip-image-captioning-large (or -base)"
# What a folder needs, as (what, any one of these files).
REQUIRED_FILES = (
    ("the model's config", ("config.json",)),
    ("the weights", ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                     "pytorch_model.bin.index.json")),
    ("the image processor's config", ("preprocessor_config.json", "processor_config.json")),
    ("the tokenizer's vocabulary", ("vocab.txt", "tokenizer.json")),
)
EXPECTED = ("config.json, model.safetensors (or pytorch_model.bin), preprocessor_config.json and the tokenizer "
            "files (vocab.txt, tokenizer.json, tokenizer_config.json, special_tokens_map.json)")
CHUNK = 8  # images per generate() call
LOADER = "Load BLIP Caption Model"

# Appended, not made the default: a `blip:` entry of extra_model_paths.yaml (read before custom nodes) keeps its place.
folder_paths.add_model_folder_path(FOLDER, os.path.join(folder_paths.models_dir, FOLDER))


def search_folders() -> list[str]:
    """The BLIP model folders: models/blip and those of extra_model_paths.yaml."""
    return folder_paths.get_folder_paths(FOLDER)


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


def model_folders() -> dict[str, str]:
    """name -> full path of every BLIP model folder found; the first search folder wins a name."""
    found = {}
    for root in search_folders():
        for name in _models_under(root):
            found.setdefault(name, os.path.join(root, name))
    return found


def missing_model_message(name: str | None) -> str:
    what = "no BLIP captioning model was found" if name is None else f"the BLIP model '{name}' was not found"
    return (f"{LOADER}: {what}. Searched: {', '.join(search_folders())}. Download "
            f"{HUB_MODELS} from Hugging Face into a sub-folder there, e.g. "
            f"{os.path.join(search_folders()[0], 'blip-image-captioning-large')}, with {EXPECTED}; then refresh "
            "ComfyUI (press R) and choose it in model_name.")


def missing_files(path: str) -> list[str]:
    """What `path` lacks of REQUIRED_FILES, one entry per missing part."""
    present = set(os.listdir(path))
    return [" or ".join(files) + f" ({what})" for what, files in REQUIRED_FILES if not present & set(files)]


@dataclass
class BlipCaptioner:
    """A loaded BLIP: the model inside a ModelPatcher (so ComfyUI loads and offloads it), its processor."""
    patcher: comfy.model_patcher.ModelPatcher
    processor: object
    path: str

    @property
    def blip(self):
        return self.patcher.model.blip


class _BlipHolder(torch.nn.Module):
    # ModelPatcher writes model.device, a read-only property on transformers models: hold the model instead.
    def __init__(self, blip, device):
        super().__init__()
        self.blip = blip
        self.device = device


def _read_config(path: str) -> dict:
    missing = missing_files(path) if os.path.isdir(path) else ["every file: the folder does not exist"]
    if missing:
        raise FileNotFoundError(f"{LOADER}: the BLIP folder {path} is missing {'; '.join(missing)}. Download all "
                                f"files of {HUB_MODELS} from Hugging Face into it: {EXPECTED}.")
    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
            return json.load(f)
    except ValueError as error:
        raise ValueError(f"{LOADER}: {path}/config.json is not valid JSON ({error}); download it again from "
                         f"{HUB_MODELS}.") from None


def load_blip(path: str) -> BlipCaptioner:
    config = _read_config(path)
    architectures = config.get("architectures") or ["BlipForConditionalGeneration"]
    if config.get("model_type") != "blip" or "BlipForConditionalGeneration" not in architectures:
        raise ValueError(f"{LOADER}: {path} holds a {config.get('model_type')} model ({', '.join(architectures)}), "
                         f"not a BLIP captioning model (BlipForConditionalGeneration); use {HUB_MODELS}.")
    from transformers import BlipForConditionalGeneration, BlipProcessor

    load_device, offload_device = mm.get_torch_device(), mm.text_encoder_offload_device()
    if mm.vram_state == mm.VRAMState.NO_VRAM:  # ComfyUI would stream only its own layers' weights; BLIP's are torch's
        load_device = offload_device
    dtype = torch.float16 if mm.should_use_fp16(load_device, prioritize_performance=False) else torch.float32
    try:
        blip = BlipForConditionalGeneration.from_pretrained(path, local_files_only=True)
        processor = BlipProcessor.from_pretrained(path, local_files_only=True)
    except Exception as error:  # safetensors, tokenizers and json raise their own types for a broken file
        raise RuntimeError(f"{LOADER}: could not load the BLIP model in {path} ({error}). A file is probably "
                           f"incomplete: download {HUB_MODELS} again, all of {EXPECTED}.") from error
    blip = blip.to(device=offload_device, dtype=dtype).eval()
    holder = _BlipHolder(blip, offload_device)
    patcher = comfy.model_patcher.ModelPatcher(holder, load_device=load_device, offload_device=offload_device)
    return BlipCaptioner(patcher, processor, path)


def to_pil(images: torch.Tensor) -> list:
    """ComfyUI IMAGE [B, H, W, C] in 0..1 -> RGB PIL images (rounded, so Load Image's pixels come back exact)."""
    from PIL import Image

    pixels = (images[..., :3].float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    if pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    return [Image.fromarray(p) for p in pixels]


def caption_images(captioner: BlipCaptioner, images: torch.Tensor, conditional_text: str, min_length: int,
                   max_length: int, num_beams: int, chunk: int = CHUNK) -> list[str]:
    """One caption per image: the text BLIP generates after `conditional_text` (which is not repeated), with
    min_length..max_length tokens, by beam search (greedy for 1 beam): deterministic."""
    from transformers import LogitsProcessor, LogitsProcessorList

    class Interruptible(LogitsProcessor):  # called once per generated token: lets ComfyUI's Cancel stop a beam search
        def __call__(self, input_ids, scores):
            mm.throw_exception_if_processing_interrupted()
            return scores

    tokenizer = captioner.processor.tokenizer
    prompt = tokenizer(conditional_text.strip(), return_tensors="pt") if conditional_text.strip() else None
    # BLIP's output starts with [DEC] and the conditional text's tokens (all but the trailing [SEP]).
    skip = 1 if prompt is None else prompt["input_ids"].shape[1] - 1
    positions = captioner.blip.config.text_config.max_position_embeddings
    if skip + max_length > positions:
        raise ValueError(f"BLIP Caption: conditional_text ({skip - 1} tokens) plus max_length {max_length} exceeds "
                         f"the {positions - 1} tokens this BLIP can write; lower max_length or shorten "
                         "conditional_text.")
    progress = comfy.utils.ProgressBar(images.shape[0])
    captions = []
    mm.load_models_gpu([captioner.patcher], force_full_load=True)
    device, blip = captioner.patcher.load_device, captioner.blip
    for start in range(0, images.shape[0], chunk):
        mm.throw_exception_if_processing_interrupted()
        batch = to_pil(images[start:start + chunk])
        pixels = captioner.processor.image_processor(batch, return_tensors="pt")["pixel_values"]
        kwargs = {}
        if prompt is not None:
            kwargs = {k: prompt[k].repeat(len(batch), 1).to(device) for k in ("input_ids", "attention_mask")}
        with torch.no_grad():
            out = blip.generate(pixel_values=pixels.to(device=device, dtype=blip.dtype), num_beams=num_beams,
                                do_sample=False, min_new_tokens=min_length, max_new_tokens=max_length,
                                logits_processor=LogitsProcessorList([Interruptible()]), **kwargs)
        captions += [c.strip() for c in tokenizer.batch_decode(out[:, skip:], skip_special_tokens=True)]
        progress.update(len(batch))
    return captions
