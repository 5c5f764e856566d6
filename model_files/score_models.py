"""The models behind the alignment scores, from Hugging Face folders in ComfyUI's model folders: CLIP (both
towers, `CLIPModel`) in models/clip_vision, and optionally DINO (DINOv2, or DINO v1 ViT) in models/dino. They
run under ComfyUI's model management; transformers is imported on first load."""
from __future__ import annotations

import os
from dataclasses import dataclass

import comfy.model_management as mm
import torch

from ..evaluation.scores import alignment_scores
from . import hf_folders

CLIP_FOLDER = "clip_vision"  # ComfyUI's own folder for CLIP image models
DINO_FOLDER = "dino"
CLIP_TYPES, DINO_TYPES = ("clip",), ("dinov2", "vit")
CLIP_HUB = "openai/clip-vit-large-patch14 (or another CLIPModel, e.g. openai/clip-vit-base-patch32)"
DINO_HUB = "facebook/dinov2-base (or facebook/dino-vits16)"
PROCESSOR = ("the image processor's config", ("preprocessor_config.json", "processor_config.json"))
CLIP_FILES = (("the model's config", ("config.json",)), ("the weights", hf_folders.WEIGHTS), PROCESSOR,
              ("the tokenizer", ("tokenizer.json", "vocab.json")))
DINO_FILES = CLIP_FILES[:3]
CLIP_EXPECTED = "config.json, model.safetensors, preprocessor_config.json, tokenizer.json (or vocab.json + merges.txt)"
DINO_EXPECTED = "config.json, model.safetensors, preprocessor_config.json"
LOADER = "Load Alignment Score Models (MasaCtrl)"  # the loader node's display name
CHUNK = 16  # images per forward pass

hf_folders.register(DINO_FOLDER)


def clip_folders() -> dict[str, str]:
    return hf_folders.model_folders(CLIP_FOLDER, CLIP_TYPES)


def dino_folders() -> dict[str, str]:
    return hf_folders.model_folders(DINO_FOLDER, DINO_TYPES)


def missing_model_message(kind: str, name: str | None) -> str:
    folder, hub, expected = ((CLIP_FOLDER, CLIP_HUB, CLIP_EXPECTED) if kind == "CLIP"
                             else (DINO_FOLDER, DINO_HUB, DINO_EXPECTED))
    what = f"no {kind} model folder was found" if name is None else f"the {kind} model '{name}' was not found"
    folders = hf_folders.search_folders(folder)
    return (f"{LOADER}: {what}. Searched: {', '.join(folders)}. Download {hub} from Hugging Face into a "
            f"sub-folder there, e.g. {os.path.join(folders[0], hub.split()[0].split('/')[1])}, with {expected}; "
            "then refresh ComfyUI (press R) and choose it.")


class EmbeddingModel(hf_folders.ManagedModel):
    """A loaded CLIP or DINO and its processor."""

    def pixel_batches(self, images: torch.Tensor):
        """The model's inputs for a ComfyUI IMAGE batch, CHUNK images at a time, prepared by its own image
        processor (resize, centre crop, normalisation), on its device; the model loaded there first."""
        mm.load_models_gpu([self.patcher], force_full_load=True)
        image_processor = getattr(self.processor, "image_processor", self.processor)
        for start in range(0, images.shape[0], CHUNK):
            mm.throw_exception_if_processing_interrupted()
            pixels = image_processor(hf_folders.to_pil(images[start:start + CHUNK]), return_tensors="pt")
            yield pixels["pixel_values"].to(device=self.patcher.load_device, dtype=self.model.dtype)


@dataclass
class ScoreModels:
    """What Load Alignment Score Models outputs: CLIP, and DINO where chosen."""
    clip: EmbeddingModel
    dino: EmbeddingModel | None = None


def _load(path: str, required, hub: str, expected: str, types: tuple[str, ...], kind: str) -> EmbeddingModel:
    found = hf_folders.model_type(path)  # checked first: another model's folder lacks other files too
    if found is not None and found not in types:
        raise ValueError(f"{LOADER}: {path} holds a {found} model, not a {kind} model ({' or '.join(types)}); "
                         f"use {hub}.")
    hf_folders.read_config(path, required, LOADER, f"all files of {hub} ({expected})")
    from transformers import AutoImageProcessor, AutoModel, CLIPModel, CLIPProcessor

    try:
        if kind == "CLIP":
            model, processor = CLIPModel.from_pretrained(path), CLIPProcessor.from_pretrained(path)
        else:
            model, processor = AutoModel.from_pretrained(path), AutoImageProcessor.from_pretrained(path)
    except Exception as error:  # safetensors, tokenizers and json raise their own types for a broken file
        raise RuntimeError(f"{LOADER}: could not load the {kind} model in {path} ({error}). A file is probably "
                           f"incomplete: download {hub} again, all of {expected}.") from error
    return EmbeddingModel(hf_folders.managed(model), processor, path)


def load_clip(path: str) -> EmbeddingModel:
    return _load(path, CLIP_FILES, CLIP_HUB, CLIP_EXPECTED, CLIP_TYPES, "CLIP")


def load_dino(path: str) -> EmbeddingModel:
    return _load(path, DINO_FILES, DINO_HUB, DINO_EXPECTED, DINO_TYPES, "DINO")


@torch.no_grad()
def clip_image_embeddings(clip: EmbeddingModel, images: torch.Tensor) -> torch.Tensor:
    """[B, D] CLIP image embeddings (the projected pooled output, as CLIPModel.get_image_features), float32, CPU."""
    model = clip.model
    return torch.cat([model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output).float().cpu()
                      for pixels in clip.pixel_batches(images)])


@torch.no_grad()
def clip_text_embeddings(clip: EmbeddingModel, prompts: list[str]) -> torch.Tensor:
    """[N, D] CLIP text embeddings (projected pooled output); prompts longer than CLIP's context are cut."""
    mm.load_models_gpu([clip.patcher], force_full_load=True)
    model = clip.model
    tokens = clip.processor.tokenizer(prompts, padding=True, truncation=True, return_tensors="pt",
                                      max_length=model.config.text_config.max_position_embeddings)
    tokens = {k: tokens[k].to(clip.patcher.load_device) for k in ("input_ids", "attention_mask")}
    return model.text_projection(model.text_model(**tokens).pooler_output).float().cpu()


@torch.no_grad()
def dino_embeddings(dino: EmbeddingModel, images: torch.Tensor) -> torch.Tensor:
    """[B, D] DINO embeddings: the class token after the final layer norm (DreamBooth's DINO score)."""
    return torch.cat([dino.model(pixel_values=pixels).last_hidden_state[:, 0].float().cpu()
                      for pixels in dino.pixel_batches(images)])


def score_images(models: ScoreModels, images: torch.Tensor, owner: list[int], prompts: list[str | None]):
    """CLIP (and DINO) scores of one image batch."""
    clip_images = clip_image_embeddings(models.clip, images)
    given = [p for p in prompts if p is not None]
    clip_texts = clip_text_embeddings(models.clip, given) if given else None
    dino = dino_embeddings(models.dino, images) if models.dino is not None else None
    return alignment_scores(owner, prompts, clip_images, clip_texts, dino)
