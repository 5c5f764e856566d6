"""Subject words -> token positions of a prompt, with the model's own tokenizer output.

MasaCtrl's reference code takes token indices ("ref_token_idx=[1]"); users think in words. A word is
found by tokenizing it with the same tokenizer and looking for that token sequence in the prompt,
starting at a word boundary (CLIP's BPE marks the last token of every word with "</w>", T5's SentencePiece
the first with "▁"), so "corgi" matches "corgi," and "(corgi:1.2)" but not the "gi" inside "corgi". Words split into several tokens
select all their tokens; a word that occurs more than once selects every occurrence (their maps add
up, as the reference sums over its token list).
"""
from __future__ import annotations

from dataclasses import dataclass


class SubjectWordError(ValueError):
    """A subject word is not in the prompt, or the word list is malformed; the message names both."""


@dataclass(frozen=True)
class PromptTokens:
    """A prompt as the text encoder sees it: token ids in context order (None for embeddings and
    special tokens), and for each token whether it ends a word."""
    ids: tuple
    ends_word: tuple

    @classmethod
    def from_chunks(cls, chunks, special_ids, ends_word) -> "PromptTokens":
        """chunks: ComfyUI tokenizer output for one encoder, a list of 77-token chunks of
        (token, weight[, word id]); special_ids: start/end/pad ids; ends_word(id) -> bool."""
        ids, ends = [], []
        for chunk in chunks:
            for entry in chunk:
                token = entry[0]
                content = isinstance(token, int) and token not in special_ids
                ids.append(token if content else None)
                ends.append(bool(ends_word(token)) if content else True)
        return cls(tuple(ids), tuple(ends))

    @classmethod
    def from_pieces(cls, chunks, special_ids, starts_word) -> PromptTokens:
        """As from_chunks, for SentencePiece tokenizers (T5), which mark the first token of every word ("▁")
        instead of the last: a token ends a word where the next one starts one (or is special)."""
        starts = PromptTokens.from_chunks(chunks, special_ids, starts_word)
        ends = tuple(i + 1 == len(starts.ids) or starts.ids[i + 1] is None or starts.ends_word[i + 1]
                     for i in range(len(starts.ids)))
        return cls(starts.ids, ends)

    def __len__(self):
        return len(self.ids)

    def content_ids(self) -> tuple:
        return tuple(t for t in self.ids if t is not None)


def parse_words(text: str, field: str) -> tuple[str, ...]:
    """'corgi, red hat' -> ('corgi', 'red hat'); empty items are dropped."""
    words = tuple(w.strip() for w in text.split(",") if w.strip())
    if not words:
        raise SubjectWordError(f"{field} is empty: list the subject's words, separated by commas, e.g. 'corgi'.")
    return words


def find_word(prompt: PromptTokens, word: PromptTokens, word_text: str, prompt_text: str, field: str) -> tuple:
    """Positions (in context order) of every occurrence of `word`'s tokens in `prompt`."""
    needle = word.content_ids()
    if not needle:
        raise SubjectWordError(f"{field}: '{word_text}' has no tokens; write a word of the prompt.")
    positions = []
    n = len(needle)
    for start in range(len(prompt.ids) - n + 1):
        if tuple(prompt.ids[start:start + n]) != needle:
            continue
        at_word_start = start == 0 or prompt.ids[start - 1] is None or prompt.ends_word[start - 1]
        if at_word_start:
            positions.extend(range(start, start + n))
    if not positions:
        raise SubjectWordError(f"{field}: the word '{word_text}' is not in the prompt \"{prompt_text}\"; "
                               "use a word that appears in that prompt (spelling as in the prompt).")
    return tuple(positions)


@dataclass(frozen=True)
class PromptSubject:
    """The subject words of one prompt and their token positions in its context of `length` tokens."""
    words: tuple[str, ...]
    positions: tuple[tuple[int, ...], ...]  # per word
    length: int

    def positions_in_context(self, context_length: int, word: int) -> list[int]:
        """ComfyUI batches prompts of different lengths by repeating each one to a common length;
        a token then sits at p, p + length, p + 2*length, ... (their probabilities add up)."""
        if context_length % self.length:
            raise SubjectWordError(
                f"Masks (MasaCtrl): the sampler's prompt has {context_length} tokens, which is not a whole number "
                f"of repeats of the subject prompt's {self.length}; feed the sampler the CONDITIONING of the "
                "Subject Prompts node whose SUBJECT you connected.")
        return [p + r * self.length for r in range(context_length // self.length) for p in self.positions[word]]


@dataclass(frozen=True)
class Subject:
    """Subject words for the source prompt and for the target prompt(s)."""
    source: PromptSubject
    target: PromptSubject
