"""Deterministic train/validation/test splits that honour splits the input already names."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

Item = TypeVar("Item")

SPLIT_NAMES = ("train", "validation", "test")


def assign_splits(
    items: Sequence[Item],
    hints: Sequence[str | None],
    validation_fraction: float,
    test_fraction: float,
    seed: int,
) -> dict[str, list[Item]]:
    """Splits items into train/validation/test.

    Items whose hint names a split (a ``split`` field or a ``train.jsonl``-style file name) stay
    there. A split that no item names is carved out of the train pool (hinted train items and
    items without a hint) with its fraction of all items, chosen by a seeded shuffle. Items keep
    their input order inside every split.

    Args:
        items: Items to split.
        hints: Split named by each item, or None.
        validation_fraction: Share of all items for validation when the input names none.
        test_fraction: Share of all items for test when the input names none.
        seed: Shuffle seed.

    Returns:
        Split name -> items.
    """
    named = {split: [index for index, hint in enumerate(hints) if hint == split] for split in SPLIT_NAMES}
    pool = [index for index, hint in enumerate(hints) if hint not in ("validation", "test")]
    order = list(pool)
    random.Random(seed).shuffle(order)
    chosen: dict[str, set[int]] = {"validation": set(), "test": set()}
    cursor = 0
    for split, fraction in (("validation", validation_fraction), ("test", test_fraction)):
        if named[split] or fraction <= 0:
            continue
        size = round(fraction * len(items))
        if size == 0 and len(order) - cursor >= 3:
            size = 1
        size = min(size, max(0, len(order) - cursor - 1))  # always leave at least one train item
        chosen[split] = set(order[cursor : cursor + size])
        cursor += size
    carved = chosen["validation"] | chosen["test"]
    result = {
        "train": [items[index] for index in pool if index not in carved],
        "validation": [items[index] for index in sorted(set(named["validation"]) | chosen["validation"])],
        "test": [items[index] for index in sorted(set(named["test"]) | chosen["test"])],
    }
    return result
