"""Prompts in ComfyUI's CONDITIONING and tokenizer formats (imports nothing of ComfyUI): prompts stacked along
the batch so image i is denoised with prompt i, and the token positions of a prompt's subject words."""
from __future__ import annotations

import math

import torch

from .subject_words import PromptSubject, PromptTokens, SubjectWordError, find_word, parse_words


def _repeat_tokens(tensor: torch.Tensor, length: int) -> torch.Tensor:
    # Repeating the whole token sequence leaves cross-attention unchanged (each key appears the same
    # number of times), which is how ComfyUI itself batches prompts of different lengths.
    return tensor.repeat(1, length // tensor.shape[1], 1)


def batch_conditioning(source, target):
    if len(source) != len(target):
        raise ValueError(f"Batch Conditioning: source has {len(source)} conditioning entries and target has "
                         f"{len(target)}; batch prompts before combining or applying ControlNet to one side.")
    out = []
    for (src, src_opts), (tgt, tgt_opts) in zip(source, target):
        if src.shape[2] != tgt.shape[2]:
            raise ValueError(f"Batch Conditioning: source and target come from different text encoders "
                             f"(width {src.shape[2]} vs {tgt.shape[2]}); encode both with the same CLIP.")
        dropped = sorted(set(tgt_opts) - set(src_opts) - {"pooled_output"})
        if dropped:
            raise ValueError(f"Batch Conditioning: target carries {dropped} that source lacks, and the batch keeps "
                             "source's settings; apply those (e.g. ControlNet) after this node instead.")
        length = math.lcm(src.shape[1], tgt.shape[1])
        opts = dict(src_opts)
        if "pooled_output" in src_opts and "pooled_output" in tgt_opts:
            opts["pooled_output"] = torch.cat([src_opts["pooled_output"], tgt_opts["pooled_output"]])
        out.append([torch.cat([_repeat_tokens(src, length), _repeat_tokens(tgt, length)]), opts])
    return out


def build_prompts(captions: list[str], prefix: str, suffix: str) -> list[str]:
    return [prefix + caption + suffix for caption in captions]


def encode_prompts(clip, prompts: list[str]):
    """One CONDITIONING whose batch row i is prompt i, as CLIPTextEncode encodes it."""
    conditioning = None
    for prompt in prompts:
        encoded = clip.encode_from_tokens_scheduled(clip.tokenize(prompt))
        conditioning = encoded if conditioning is None else batch_conditioning(conditioning, encoded)
    return conditioning


def _prompt_tokens(clip, tokens, key: str) -> PromptTokens:
    """PromptTokens of clip.tokenize()'s output for one of its tokenizers."""
    tokenizer = getattr(clip.tokenizer, f"clip_{key}", None) or getattr(clip.tokenizer, key)
    special = {tokenizer.start_token, tokenizer.end_token, tokenizer.pad_token} - {None}
    if key == "t5xxl":  # SentencePiece: "▁" starts a word
        return PromptTokens.from_pieces(tokens[key], special, lambda t: tokenizer.inv_vocab.get(t, "▁").startswith("▁"))
    return PromptTokens.from_chunks(tokens[key], special,
                                    lambda t: tokenizer.inv_vocab.get(t, "</w>").endswith("</w>"))


def prompt_subject(clip, prompt: str, tokens, words_text: str, field: str) -> PromptSubject:
    """The subject words of `prompt`, whose clip.tokenize() output is `tokens`."""
    key, after = _text_stream(clip, tokens)
    prompt_tokens = _prompt_tokens(clip, tokens, key)
    words = parse_words(words_text, field)
    positions = tuple(find_word(prompt_tokens, _prompt_tokens(clip, clip.tokenize(w), key), w, prompt, field)
                      for w in words)
    return PromptSubject(words, positions, len(prompt_tokens) + after)


def _text_stream(clip, tokens) -> tuple[str, int]:
    """(the tokenizer whose tokens the model's attention sees first, the tokens that follow them in the context).
    SD1.x/SDXL: CLIP's 77 (SDXL's two encoders share one layout). Flux.1 and Chroma: T5's tokens (Flux's CLIP-L
    gives only the pooled vector). SD3.x: CLIP-L/G's 77, then T5's when a T5 encoder is loaded."""
    keys = set(tokens)
    model = clip.cond_stage_model
    if "t5xxl" in keys and "g" not in keys:
        return "t5xxl", 0
    if keys <= {"l", "g"}:
        return ("l" if "l" in keys else "g"), 0
    if keys == {"l", "g", "t5xxl"}:  # SD3.x: [CLIP-L/G ; T5] along the tokens, or T5 alone
        if getattr(model, "clip_l", None) is None and getattr(model, "clip_g", None) is None:
            return "t5xxl", 0
        return "l", len(_prompt_tokens(clip, tokens, "t5xxl")) if getattr(model, "t5xxl", None) is not None else 0
    raise SubjectWordError(f"Subject Prompts: subject words work with CLIP and T5 text encoders (SD1.x, SDXL, "
                           f"Flux.1, Chroma, SD3.x); this CLIP's tokenizer ({', '.join(sorted(keys))}) is not one of "
                           "them. Connect source_mask and target_mask to MasaCtrl Masks instead.")
