"""Bootstrap over prompts: confidence intervals of a score and a paired test between two models.

Prompts are resampled with replacement (seeded, so a report is reproducible); the interval is the
percentile interval of the statistic over the resamples. The paired test resamples the same
prompt indices for both models, so it compares them on the same questions.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
CONFIDENCE = 0.95


def _percentiles(values: list[float], confidence: float) -> tuple[float, float]:
    """The (1-confidence)/2 and (1+confidence)/2 percentiles of the values (nearest rank on sorted values)."""
    ordered = sorted(values)
    tail = (1.0 - confidence) / 2.0
    low_index = int(tail * (len(ordered) - 1) + 0.5)
    high_index = int((1.0 - tail) * (len(ordered) - 1) + 0.5)
    return ordered[low_index], ordered[high_index]


def _resampled_indices(count: int, resamples: int, seed: int) -> list[list[int]]:
    generator = random.Random(seed)
    return [[generator.randrange(count) for _ in range(count)] for _ in range(resamples)]


def bootstrap_interval(
    items: Sequence[Any],
    statistic: Callable[[list[Any]], float] = statistics.fmean,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = CONFIDENCE,
) -> list[float] | None:
    """Percentile bootstrap interval of a statistic over per-prompt items.

    Args:
        items: One item per prompt (a score, or whatever ``statistic`` aggregates).
        statistic: Aggregates a resampled list of items (default: the mean).
        resamples: Number of bootstrap resamples.
        seed: Seed of the resampling.
        confidence: Coverage of the interval.

    Returns:
        ``[low, high]``, or None when there are no items.
    """
    if not items:
        return None
    values = [
        statistic([items[index] for index in indices]) for indices in _resampled_indices(len(items), resamples, seed)
    ]
    return list(_percentiles(values, confidence))


@dataclass(frozen=True)
class PairedDifference:
    """How much model A beats model B on the same prompts.

    Attributes:
        difference: The statistic of A minus that of B on all prompts.
        interval: Percentile bootstrap interval of the difference.
        prompts: Number of paired prompts.
        significant: False when the interval contains 0 ("no significant difference").
    """

    difference: float
    interval: list[float]
    prompts: int
    significant: bool

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return asdict(self)


def paired_bootstrap(
    items_a: Sequence[Any],
    items_b: Sequence[Any],
    statistic: Callable[[list[Any]], float] = statistics.fmean,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = CONFIDENCE,
) -> PairedDifference | None:
    """Paired bootstrap test: the same resampled prompts score both models.

    Args:
        items_a: Model A's per-prompt items.
        items_b: Model B's items for the same prompts, in the same order.
        statistic: Aggregates a resampled list of items (default: the mean).
        resamples: Number of bootstrap resamples.
        seed: Seed of the resampling.
        confidence: Coverage of the interval.

    Returns:
        The difference A - B with its interval, or None when there are no prompts.

    Raises:
        ValueError: If the two lists differ in length.
    """
    if len(items_a) != len(items_b):
        raise ValueError(f"paired test needs the same prompts: {len(items_a)} vs {len(items_b)} items")
    if not items_a:
        return None
    differences = [
        statistic([items_a[index] for index in indices]) - statistic([items_b[index] for index in indices])
        for indices in _resampled_indices(len(items_a), resamples, seed)
    ]
    low, high = _percentiles(differences, confidence)
    return PairedDifference(
        difference=statistic(list(items_a)) - statistic(list(items_b)),
        interval=[low, high],
        prompts=len(items_a),
        significant=not (low <= 0.0 <= high),
    )
