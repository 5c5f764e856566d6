"""The evaluation's Markdown tables: per image of one batch, and per setting of a sweep."""
from __future__ import annotations

from .scores import AlignmentScores

COLUMNS = (("image_alignment", "CLIP image"), ("text_alignment", "CLIP text"), ("dino_alignment", "DINO image"))


def number(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def table_columns(with_dino: bool) -> list[tuple[str, str]]:
    """(score, column title) of the tables: DINO's only where a DINO model is loaded."""
    return [c for c in COLUMNS if with_dino or c[0] != "dino_alignment"]


def image_table(scores: AlignmentScores, with_dino: bool) -> str:
    """A Markdown table: one row per image, then the mean over the targets."""
    columns = table_columns(with_dino)
    lines = ["| image | source | " + " | ".join(title for _, title in columns) + " | prompt |",
             "|---|---|" + "---|" * len(columns) + "---|"]
    for s in scores.images:
        role = "(source)" if s.is_source else str(s.source)
        lines.append(f"| {s.index} | {role} | " + " | ".join(number(getattr(s, m)) for m, _ in columns)
                     + f" | {(s.prompt or '').replace('|', '/')} |")  # a | would split the row
    lines.append("| mean of targets | | " + " | ".join(number(scores.mean(m)) for m, _ in columns) + " | |")
    return "\n".join(lines)


def run_table(parameter: str, labels: list[str], runs: list, with_dino: bool) -> str:
    """A Markdown table: one row per setting, with the means over the targets."""
    columns = table_columns(with_dino)
    lines = [f"| {parameter} | " + " | ".join(title for _, title in columns) + " |",
             "|---|" + "---|" * len(columns)]
    lines += [f"| {label} | " + " | ".join(number(scores.mean(m)) for m, _ in columns) + " |"
              for label, scores in zip(labels, runs)]
    return "\n".join(lines)
