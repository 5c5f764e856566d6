"""Prompts in ComfyUI's CONDITIONING and tokenizer formats (imports nothing of ComfyUI): prompts stacked along
the batch so image i is denoised with prompt i, and the token positions of a prompt's subject words."""
from __future__ import annotations

import math

import torch

from .subject_words import PromptSubject, PromptTokens, find_word, parse_words


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


def _prompt_tokens(clip, tokens) -> PromptTokens:
    """PromptTokens of clip.tokenize()'s output."""
    key = next(iter(tokens))  # SDXL has two encoders with the same token layout; any one will do
    tokenizer = getattr(clip.tokenizer, f"clip_{key}")
    special = {tokenizer.start_token, tokenizer.end_token, tokenizer.pad_token}
    return PromptTokens.from_chunks(tokens[key], special,
                                    lambda t: tokenizer.inv_vocab.get(t, "</w>").endswith("</w>"))


def prompt_subject(clip, prompt: str, tokens, words_text: str, field: str) -> PromptSubject:
    """The subject words of `prompt`, whose clip.tokenize() output is `tokens`."""
    prompt_tokens = _prompt_tokens(clip, tokens)
    words = parse_words(words_text, field)
    positions = tuple(find_word(prompt_tokens, _prompt_tokens(clip, clip.tokenize(w)), w, prompt, field)
                      for w in words)
    return PromptSubject(words, positions, len(prompt_tokens))
