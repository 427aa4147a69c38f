"""Reference-based text metrics (ROUGE, BLEU, exact match) through ``evaluate``'s module API.

The metric modules live in ``metric_modules/<name>/<name>.py`` in this repository and are loaded
with ``evaluate.load(<local directory>)``, which needs no network (``evaluate.load("rouge")``
would fetch the module from the Hub).
"""

from __future__ import annotations

import statistics
from functools import cache
from pathlib import Path
from typing import Any

METRIC_MODULES_DIR = Path(__file__).resolve().parent / "metric_modules"
METRIC_NAMES = ("rouge", "bleu", "exact_match")


@cache
def load_metric(name: str) -> Any:
    """Loads one of this repository's metric modules with ``evaluate.load``.

    Args:
        name: ``rouge``, ``bleu`` or ``exact_match``.

    Returns:
        The ``evaluate.EvaluationModule`` (kept in memory, no cache files written).

    Raises:
        ValueError: If the metric is unknown.
    """
    import evaluate

    if name not in METRIC_NAMES:
        raise ValueError(f"unknown metric {name!r}; choose one of {list(METRIC_NAMES)}")
    return evaluate.load(str(METRIC_MODULES_DIR / name), keep_in_memory=True)


def compute_rouge(predictions: list[str], references: list[str]) -> dict[str, float]:
    """ROUGE-1/2/L/Lsum mean F-measures (equal to ``rouge-score`` averaged over the pairs).

    Args:
        predictions: Generated texts.
        references: Reference texts.

    Returns:
        ``{"rouge1", "rouge2", "rougeL", "rougeLsum"}`` in [0, 1].
    """
    if not predictions:
        return {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0, "rougeLsum": 0.0}
    return load_metric("rouge").compute(predictions=predictions, references=references)


def compute_bleu(predictions: list[str], references: list[str]) -> dict[str, Any]:
    """Corpus BLEU on sacreBLEU's 0-100 scale (equal to ``sacrebleu.corpus_bleu``).

    Args:
        predictions: Generated texts.
        references: Reference texts, one per prediction.

    Returns:
        sacreBLEU's score and its components.
    """
    if not predictions:
        return {"score": 0.0}
    return load_metric("bleu").compute(predictions=predictions, references=references)


def compute_exact_match(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Exact and normalized exact match rates.

    Args:
        predictions: Generated texts.
        references: Reference texts.

    Returns:
        ``{"exact_match", "normalized_exact_match"}`` in [0, 1].
    """
    if not predictions:
        return {"exact_match": 0.0, "normalized_exact_match": 0.0}
    return load_metric("exact_match").compute(predictions=predictions, references=references)


def length_statistics(texts: list[str], token_counts: list[int] | None = None) -> dict[str, float]:
    """Length statistics of responses in words (whitespace-separated) and optionally tokens.

    Args:
        texts: The responses.
        token_counts: Token count of each response, when known.

    Returns:
        Mean, median, min and max words (and mean tokens), plus the share of empty responses.
    """
    words = [len(text.split()) for text in texts]
    if not words:
        return {"mean_words": 0.0, "median_words": 0.0, "min_words": 0, "max_words": 0, "empty_fraction": 0.0}
    result: dict[str, float] = {
        "mean_words": statistics.fmean(words),
        "median_words": float(statistics.median(words)),
        "min_words": min(words),
        "max_words": max(words),
        "empty_fraction": sum(1 for text in texts if not text.strip()) / len(texts),
    }
    if token_counts:
        result["mean_tokens"] = statistics.fmean(token_counts)
    return result
