"""The headline metrics of an evaluation: their keys in ``evaluation.json``, labels and kinds (no torch).

One list read by the evaluation report, the comparison and the studio's Evaluate tab, so the
same metric carries the same name everywhere.
"""

from __future__ import annotations

from typing import Any

METRIC_LABELS = (
    ("eval_loss", "Loss (response tokens)"),
    ("perplexity", "Perplexity"),
    ("rouge1", "ROUGE-1"),
    ("rouge2", "ROUGE-2"),
    ("rougeL", "ROUGE-L"),
    ("rougeLsum", "ROUGE-Lsum"),
    ("bleu", "BLEU (sacreBLEU, 0-100)"),
    ("exact_match", "Exact match"),
    ("normalized_exact_match", "Normalized exact match"),
    ("checks_pass_rate", "Instruction-level accuracy (strict)"),
    ("checks_pass_rate_loose", "Instruction-level accuracy (loose)"),
    ("checks_all_passed_rate", "Prompt-level accuracy (strict)"),
    ("checks_all_passed_rate_loose", "Prompt-level accuracy (loose)"),
    ("generation_tokens_per_second", "Generation tokens/s"),
)
"""Headline metrics in report order: (key in ``metrics``, label)."""

SCORE_METRICS = (
    "rouge1", "rouge2", "rougeL", "exact_match", "normalized_exact_match", "checks_pass_rate",
    "checks_pass_rate_loose", "checks_all_passed_rate", "checks_all_passed_rate_loose",
)  # fmt: skip
"""Metrics that are rates or scores in [0, 1] (higher is better), drawn on one axis."""


def metric_rows(metrics: dict[str, Any]) -> list[list[Any]]:
    """Rows ``[label, value]`` of the headline metrics present in an evaluation.

    Args:
        metrics: The ``metrics`` mapping.

    Returns:
        The rows.
    """
    return [[label, metrics[key]] for key, label in METRIC_LABELS if metrics.get(key) is not None]
