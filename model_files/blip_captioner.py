"""BLIP captioning models (Hugging Face `BlipForConditionalGeneration` folders) in a ComfyUI model folder,
loaded under ComfyUI's model management, and the captioning itself. transformers is imported on first load,
not when ComfyUI starts."""
from __future__ import annotations

import os

import comfy.model_management as mm
import comfy.utils
import torch

from . import hf_folders

FOLDER = "blip"
HUB_MODELS = "Salesforce/blip-image-captioning-large (or -base)"
# What a folder needs, as (what, any one of these files).
REQUIRED_FILES = (
    ("the model's config", ("config.json",)),
    ("the weights", hf_folders.WEIGHTS),
    ("the image processor's config", ("preprocessor_config.json", "processor_config.json")),
    ("the tokenizer's vocabulary", ("vocab.txt", "tokenizer.json")),
)
EXPECTED = ("config.json, model.safetensors (or pytorch_model.bin), preprocessor_config.json and the tokenizer "
            "files (vocab.txt, tokenizer.json, tokenizer_config.json, special_tokens_map.json)")
CHUNK = 8  # images per generate() call
LOADER = "Load BLIP Caption Model (MasaCtrl)"  # the loader node's display name

hf_folders.register(FOLDER)


def model_folders() -> dict[str, str]:
    """name -> full path of every BLIP model folder found in models/blip (and extra_model_paths.yaml's)."""
    return hf_folders.model_folders(FOLDER)


def missing_model_message(name: str | None) -> str:
    what = "no BLIP captioning model was found" if name is None else f"the BLIP model '{name}' was not found"
    folders = hf_folders.search_folders(FOLDER)
    return (f"{LOADER}: {what}. Searched: {', '.join(folders)}. Download "
            f"{HUB_MODELS} from Hugging Face into a sub-folder there, e.g. "
            f"{os.path.join(folders[0], 'blip-image-captioning-large')}, with {EXPECTED}; then refresh "
            "ComfyUI (press R) and choose it in model_name.")


class BlipCaptioner(hf_folders.ManagedModel):
    """A loaded BLIP captioner and its processor."""

    @property
    def blip(self):
        return self.model


def load_blip(path: str) -> BlipCaptioner:
    config = hf_folders.read_config(path, REQUIRED_FILES, LOADER, f"all files of {HUB_MODELS} ({EXPECTED})")
    architectures = config.get("architectures") or ["BlipForConditionalGeneration"]
    if config.get("model_type") != "blip" or "BlipForConditionalGeneration" not in architectures:
        raise ValueError(f"{LOADER}: {path} holds a {config.get('model_type')} model ({', '.join(architectures)}), "
                         f"not a BLIP captioning model (BlipForConditionalGeneration); use {HUB_MODELS}.")
    from transformers import BlipForConditionalGeneration, BlipProcessor

    try:
        blip = BlipForConditionalGeneration.from_pretrained(path, local_files_only=True)
        processor = BlipProcessor.from_pretrained(path, local_files_only=True)
    except Exception as error:  # safetensors, tokenizers and json raise their own types for a broken file
        raise RuntimeError(f"{LOADER}: could not load the BLIP model in {path} ({error}). A file is probably "
                           f"incomplete: download {HUB_MODELS} again, all of {EXPECTED}.") from error
    return BlipCaptioner(hf_folders.managed(blip), processor, path)


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
        raise ValueError(f"BLIP Caption (MasaCtrl): conditional_text ({skip - 1} tokens) plus max_length {max_length} "
                         f"exceeds the {positions - 1} tokens this BLIP can write; lower max_length or shorten "
                         "conditional_text.")
    progress = comfy.utils.ProgressBar(images.shape[0])
    captions = []
    mm.load_models_gpu([captioner.patcher], force_full_load=True)
    device, blip = captioner.patcher.load_device, captioner.blip
    for start in range(0, images.shape[0], chunk):
        mm.throw_exception_if_processing_interrupted()
        batch = hf_folders.to_pil(images[start:start + chunk])
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
