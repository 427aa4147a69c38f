"""Bootstrap confidence intervals of an evaluation's rates and scores, and paired tests between runs.

Every interval resamples the prompts (seeded): per-sample means for ROUGE and exact match, the
share of all checks passed for ``checks_pass_rate`` (strict) and ``checks_pass_rate_loose``
(IFEval's loose verdicts), and corpus BLEU recomputed from the resampled
samples' n-gram statistics (so BLEU's interval is around corpus BLEU, not a mean of sentence BLEU).
"""

from __future__ import annotations

from typing import Any

from core.domain.bootstrap import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    PairedDifference,
    bootstrap_interval,
    paired_bootstrap,
)

MEAN_METRICS = ("rouge1", "rouge2", "rougeL", "rougeLsum", "exact_match", "normalized_exact_match")


def _check_share(items: list[tuple[int, int]]) -> float:
    """Share of all checks passed over (passed, total) pairs (0 when there are no checks)."""
    total = sum(count for _, count in items)
    return sum(passed for passed, _ in items) / total if total else 0.0


def _bleu(items: list[list[int]]) -> float:
    from core.infrastructure.evaluation.text_metrics import corpus_bleu_from_statistics

    return corpus_bleu_from_statistics(items)


def metric_intervals(
    samples: list[dict[str, Any]],
    bleu_statistics: list[list[int]] | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> dict[str, list[float]]:
    """95 % bootstrap intervals of every rate and score the samples carry.

    Args:
        samples: ``evaluation.json`` samples (``scores``, ``checks``, ``passed_all_checks``).
        bleu_statistics: Per-sample BLEU statistics (see :class:`~core.infrastructure.evaluation.text_scores.TextScores`).
        resamples: Bootstrap resamples.
        seed: Seed of the resampling.

    Returns:
        ``{metric: [low, high]}`` for the metrics present.
    """
    options = {"resamples": resamples, "seed": seed}
    intervals: dict[str, list[float] | None] = {}
    for metric in MEAN_METRICS:
        if samples and all(metric in (sample.get("scores") or {}) for sample in samples):
            intervals[metric] = bootstrap_interval([sample["scores"][metric] for sample in samples], **options)
    if bleu_statistics:
        intervals["bleu"] = bootstrap_interval(bleu_statistics, statistic=_bleu, **options)
    checked = [sample for sample in samples if sample.get("checks")]
    for field, suffix in (("passed", ""), ("passed_loose", "_loose")):
        if not checked:
            break
        verdicts = [[bool(check.get(field, check["passed"])) for check in sample["checks"]] for sample in checked]
        items = [(sum(sample_verdicts), len(sample_verdicts)) for sample_verdicts in verdicts]
        intervals[f"checks_pass_rate{suffix}"] = bootstrap_interval(items, statistic=_check_share, **options)
        passed_all = [float(all(sample_verdicts)) for sample_verdicts in verdicts]
        intervals[f"checks_all_passed_rate{suffix}"] = bootstrap_interval(passed_all, **options)
    return {metric: interval for metric, interval in intervals.items() if interval is not None}


def _paired_items(sample: dict[str, Any], metric: str) -> Any:
    """What one sample contributes to a paired test of ``metric`` (None when it has nothing)."""
    if metric == "checks_pass_rate":
        checks = sample.get("checks") or []
        return (sum(check["passed"] for check in checks), len(checks)) if checks else None
    return (sample.get("scores") or {}).get(metric)


def paired_test(
    samples_a: list[dict[str, Any]],
    samples_b: list[dict[str, Any]],
    metric: str,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> PairedDifference | None:
    """Paired bootstrap of ``metric`` (A minus B) over the prompts both evaluations answered.

    Prompts are matched by ``(source, prompt)``; prompts one model lacks, or that carry no value of
    the metric, are left out.

    Args:
        samples_a: Model A's ``evaluation.json`` samples.
        samples_b: Model B's samples.
        metric: ``checks_pass_rate`` or a per-sample score (``normalized_exact_match``, ``rougeL``, ...).
        resamples: Bootstrap resamples.
        seed: Seed of the resampling.

    Returns:
        The paired difference, or None when no prompt is shared.
    """
    indexed_b = {(sample.get("source"), sample.get("prompt")): sample for sample in samples_b}
    pairs = []
    for sample in samples_a:
        other = indexed_b.get((sample.get("source"), sample.get("prompt")))
        if other is None:
            continue
        item_a, item_b = _paired_items(sample, metric), _paired_items(other, metric)
        if item_a is not None and item_b is not None:
            pairs.append((item_a, item_b))
    statistic = _check_share if metric == "checks_pass_rate" else None
    options = {"resamples": resamples, "seed": seed, **({"statistic": statistic} if statistic else {})}
    return paired_bootstrap([a for a, _ in pairs], [b for _, b in pairs], **options)
