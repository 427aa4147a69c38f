"""From the mix to the kept records of every split, by the pass's hashes and counts (no conversation in memory).

The mix is capped by ``data.max_samples`` and split; held-out records whose prompt is in train are
removed; records that gave no training sample (``too_long``, ``empty_loss_mask``) are left out; the
counts of the report (lengths before truncation, assistant turns, duplicates, overlap) are summed
from the pass's columns (:class:`~core.infrastructure.data.record_store.RecordStore`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.domain.data_settings import DataSettings
from core.infrastructure.data.dedup import duplicates_summary, overlap_summary, remove_train_overlap
from core.infrastructure.data.problems import Outcome
from core.infrastructure.data.record_store import RecordStore
from core.infrastructure.data.source_pipeline import limit_samples
from core.infrastructure.data.splits import assign_splits

Splits = dict[str, list[Outcome]]


def rows_of(outcomes: list[Outcome]) -> np.ndarray:
    """The pass rows of valid records, in order.

    Args:
        outcomes: Valid outcomes (each holding its :class:`StoredRecord`).

    Returns:
        Their rows.
    """
    return np.fromiter((outcome.conversation.row for outcome in outcomes), dtype=np.int64, count=len(outcomes))


def split_records(mixed: list[Outcome], data: DataSettings, store: RecordStore) -> tuple[Splits, list[Outcome]]:
    """The mix capped by ``data.max_samples``, split, without held-out records whose prompt is in train.

    Args:
        mixed: The mixed records.
        data: ``data`` settings (``max_samples``, fractions, ``seed``).
        store: The pass's columns (``prompt_key``).

    Returns:
        Records per split, and the records left out here (``max_samples``, ``train_overlap``).
    """
    valid, capped = limit_samples(mixed, data.max_samples, data.seed)
    splits = assign_splits(
        valid, [outcome.split for outcome in valid], data.validation_fraction, data.test_fraction, data.seed
    )
    prompts = store.column("prompt_key")
    splits, leaks = remove_train_overlap(splits, lambda outcome: int(prompts[outcome.conversation.row]))
    return splits, capped + leaks


def tokenized_records(splits: Splits, store: RecordStore) -> tuple[Splits, list[Outcome], dict[str, Any]]:
    """Leaves out the records that gave no training sample, and sums the report's token counts.

    Args:
        splits: Records per split.
        store: The pass's columns.

    Returns:
        Kept records per split, the left-out ones (with the pass's reason), and ``lengths`` (every
        record's length before any cut), ``assistant_turns``, ``assistant_turns_trained``, ``records_cut``.
    """
    reasons = store.column("token_reason")
    kept: Splits = {}
    dropped: list[Outcome] = []
    all_rows = []
    for split, outcomes in splits.items():
        rows = rows_of(outcomes)
        all_rows.append(rows)
        kept[split] = [outcome for outcome, row in zip(outcomes, rows, strict=True) if reasons[row] is None]
        dropped += [
            Outcome(outcome.source, reason=reasons[row])
            for outcome, row in zip(outcomes, rows, strict=True)
            if reasons[row] is not None
        ]
    rows = np.concatenate(all_rows) if all_rows else np.zeros(0, dtype=np.int64)
    stats = {
        "lengths": store.column("length")[rows].tolist(),
        "assistant_turns": int(store.column("assistant_turns")[rows].sum()),
        "assistant_turns_trained": int(store.column("assistant_turns_trained")[rows].sum()),
        "records_cut": int(store.column("cut")[rows].sum()),
    }
    return kept, dropped, stats


def quality(kept: Splits, store: RecordStore) -> dict[str, Any]:
    """The report's ``duplicates`` and ``overlap`` among the kept records.

    Args:
        kept: Kept records per split.
        store: The pass's columns (``exact_key``, ``normalized_key``, ``prompt_key``).

    Returns:
        ``{"duplicates": ..., "overlap": ...}``.
    """
    order = [outcome for split in ("train", "validation", "test") for outcome in kept.get(split, [])]
    rows = rows_of(order)
    duplicates = duplicates_summary(
        [outcome.source for outcome in order], store.column("exact_key")[rows], store.column("normalized_key")[rows]
    )
    prompts = store.column("prompt_key")
    overlap = overlap_summary(
        {split: [outcome.source for outcome in outcomes] for split, outcomes in kept.items()},
        {split: prompts[rows_of(outcomes)] for split, outcomes in kept.items()},
    )
    return {"duplicates": duplicates, "overlap": overlap}
