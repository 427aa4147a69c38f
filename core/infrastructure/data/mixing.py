"""Mixing several sources into one list of records: ``concat`` or ``weighted`` (``data.mix_strategy``).

* ``concat`` appends the sources in order, each with all its records (already capped by its own
  ``max_samples``).
* ``weighted`` gives source *i* the share ``weight_i / sum(weights)`` of a total ``N``: ``N`` is
  ``data.mix_size`` or, when unset, the largest total whose exact shares fit every non-empty source
  without repeating a record (``min_i floor(available_i * sum(weights) / weight_i)``). Exact shares
  are rounded by the largest-remainder method: every source gets the floor of its share, and the
  records still missing go one each to the sources with the largest fractional parts (ties: the
  earlier source), so the counts add up to ``N`` exactly. Which records a source gives is a shuffle
  seeded by ``data.seed`` and the source's position; the same settings give the same records.
  A source asked for more than it has gives everything once, and repeats records (whole passes of
  its shuffled records, then part of one) only when it allows ``repeat``; otherwise the shortfall is
  a warning and is not redistributed.

Inside the mix, records stay grouped by source in input order; the split that follows shuffles.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from fractions import Fraction

from core.infrastructure.data.problems import Outcome

NOT_IN_MIX = "not_in_mix"
"""Reason of a valid record that the weighted mix did not draw (counted in ``skipped``)."""


@dataclass
class SourcePool:
    """The records one source offers to the mix.

    Attributes:
        name: The source as the user named it.
        records: Valid records after the source's own checks, deduplication and ``max_samples``.
        weight: Its weight (weighted mixing).
        repeat: Whether its records may be drawn again when it is asked for more than it has.
    """

    name: str
    records: list[Outcome]
    weight: float = 1.0
    repeat: bool = False


@dataclass
class MixShare:
    """What one source gave to the mix.

    Attributes:
        requested: Records the weighted mix asked of it (None for concat).
        used: Distinct records of the source in the mix.
        repeated: Extra copies of its records in the mix (only with ``repeat``).
        not_used: Its valid records that the mix did not draw (reason ``not_in_mix``).
    """

    requested: int | None
    used: int
    repeated: int = 0
    not_used: list[Outcome] = field(default_factory=list)


@dataclass
class MixResult:
    """The mixed records, each source's share of them, and warnings about shortfalls."""

    records: list[Outcome]
    shares: list[MixShare]
    warnings: list[str]


def largest_remainder(total: int, weights: list[float]) -> list[int]:
    """Splits ``total`` into integer counts proportional to ``weights`` that add up to ``total`` exactly.

    Args:
        total: The number to split.
        weights: Positive weights (normalised here).

    Returns:
        One count per weight: the floor of its exact share, plus one for the largest fractional
        parts (ties go to the earlier weight) until the counts add up.
    """
    exact = [Fraction(weight) for weight in weights]
    weight_sum = sum(exact)
    quotas = [Fraction(total) * weight / weight_sum for weight in exact]
    counts = [math.floor(quota) for quota in quotas]
    by_remainder = sorted(range(len(quotas)), key=lambda index: (-(quotas[index] - counts[index]), index))
    for index in by_remainder[: total - sum(counts)]:
        counts[index] += 1
    return counts


def total_without_repeats(sizes: list[int], weights: list[float]) -> int:
    """The largest total whose exact weighted shares fit every non-empty source.

    Args:
        sizes: Records available per source.
        weights: Weight per source.

    Returns:
        ``min_i floor(size_i * sum(weights) / weight_i)`` over the sources that have records (0 if none has).
    """
    weight_sum = sum(Fraction(weight) for weight in weights)
    limits = [
        math.floor(size * weight_sum / Fraction(weight)) for size, weight in zip(sizes, weights, strict=True) if size
    ]
    return min(limits, default=0)


def mix_sources(pools: list[SourcePool], strategy: str, mix_size: int | None, seed: int) -> MixResult:
    """Mixes the sources' records.

    Args:
        pools: One pool per source, in source order.
        strategy: ``concat`` or ``weighted``.
        mix_size: Total records of a weighted mix (None: as many as fit without repeating).
        seed: ``data.seed``.

    Returns:
        The mixed records, the share of every source and the shortfall warnings.
    """
    if strategy == "concat":
        shares = [MixShare(requested=None, used=len(pool.records)) for pool in pools]
        return MixResult([record for pool in pools for record in pool.records], shares, [])
    weights = [pool.weight for pool in pools]
    total = mix_size if mix_size is not None else total_without_repeats([len(pool.records) for pool in pools], weights)
    counts = largest_remainder(total, weights)
    records: list[Outcome] = []
    shares: list[MixShare] = []
    warnings: list[str] = []
    for index, (pool, count) in enumerate(zip(pools, counts, strict=True)):
        drawn, share = _draw(pool, count, random.Random(f"mix:{seed}:{index}"))
        records.extend(drawn)
        shares.append(share)
        if count > len(pool.records) and not pool.repeat:
            warnings.append(_shortfall(index, pool, count, total))
    return MixResult(records, shares, warnings)


def _draw(pool: SourcePool, count: int, generator: random.Random) -> tuple[list[Outcome], MixShare]:
    """Draws ``count`` records of a pool (input order kept); repeats whole shuffled passes when allowed."""
    size = len(pool.records)
    order = list(range(size))
    generator.shuffle(order)
    if count <= size or not pool.repeat or size == 0:
        chosen = set(order[: min(count, size)])
        drawn = [record for index, record in enumerate(pool.records) if index in chosen]
        not_used = [
            Outcome(record.source, reason=NOT_IN_MIX)
            for index, record in enumerate(pool.records)
            if index not in chosen
        ]
        return drawn, MixShare(requested=count, used=len(drawn), not_used=not_used)
    passes, rest = divmod(count, size)
    partial = set(order[:rest])
    drawn = list(pool.records) * passes + [record for index, record in enumerate(pool.records) if index in partial]
    return drawn, MixShare(requested=count, used=size, repeated=count - size)


def _shortfall(index: int, pool: SourcePool, count: int, total: int) -> str:
    """The warning for a source asked for more records than it has, with the figures and the ways out."""
    return (
        f"data.datasets[{index}] ({pool.name}): the weighted mix asks {count} of {total} records from it "
        f"(weight {pool.weight:g}) but it has {len(pool.records)} usable records; using {len(pool.records)} "
        f"(short by {count - len(pool.records)}, not taken from the other sources); set repeat: true on this "
        "source to repeat its records, or lower data.mix_size"
    )
