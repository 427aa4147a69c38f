"""Duplicates removed, and held-out splits that never share a prompt with train.

* ``data.deduplicate``: ``exact`` (default) removes a conversation identical to an earlier one,
  ``normalized`` also one that differs only in case, punctuation or whitespace, ``none`` keeps all.
  The first occurrence stays; each removed record is counted as ``duplicate``.
* A validation or test record whose prompt (normalized) also occurs in train is removed from the
  held-out split and counted as ``train_overlap``: held-out scores then measure generalisation, not
  recall.
"""

from __future__ import annotations

from typing import Literal

from core.domain.records import Conversation
from core.infrastructure.data.problems import DUPLICATE, TRAIN_OVERLAP, Outcome
from core.infrastructure.data.report import exact_key, normalized_key, prompt_key


def remove_duplicates(
    outcomes: list[Outcome], mode: Literal["exact", "normalized", "none"], seen: set[str] | None = None
) -> tuple[list[Outcome], list[Outcome]]:
    """Keeps the first of every group of duplicate conversations.

    Args:
        outcomes: Valid outcomes (each with a conversation), in input order.
        mode: ``exact``, ``normalized`` or ``none``.
        seen: Identities of conversations kept before (earlier sources of a mix); updated in place.

    Returns:
        The kept outcomes and one ``duplicate`` outcome per removed record.
    """
    if mode == "none":
        return outcomes, []
    key = exact_key if mode == "exact" else normalized_key
    seen = set() if seen is None else seen
    kept, removed = [], []
    for outcome in outcomes:
        identity = key(outcome.conversation)
        if identity in seen:
            removed.append(Outcome(outcome.source, reason=DUPLICATE))
            continue
        seen.add(identity)
        kept.append(outcome)
    return kept, removed


def remove_train_overlap(
    splits: dict[str, list[Conversation]],
) -> tuple[dict[str, list[Conversation]], list[Outcome]]:
    """Removes from validation and test every record whose prompt occurs in train.

    Args:
        splits: Conversations per split.

    Returns:
        The splits without leaks and one ``train_overlap`` outcome per removed record.
    """
    train = {prompt_key(conversation) for conversation in splits.get("train", [])}
    removed: list[Outcome] = []
    cleaned = dict(splits)
    for split in ("validation", "test"):
        kept = []
        for conversation in splits.get(split, []):
            if prompt_key(conversation) in train:
                removed.append(Outcome(conversation.source, reason=TRAIN_OVERLAP, split=split))
            else:
                kept.append(conversation)
        cleaned[split] = kept
    return cleaned, removed
