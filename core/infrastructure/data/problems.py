"""Problems found in input data, each tied to the ``file:line`` and field it concerns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MALFORMED_JSON = "malformed_json"
NOT_UTF8 = "not_utf8"
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
EMPTY_RESPONSE = "empty_response"
EMPTY_PROMPT = "empty_prompt"
UNKNOWN_ROLE = "unknown_role"
BROKEN_ORDER = "broken_order"
UNREADABLE = "unreadable"
UNSUPPORTED_MEDIA = "unsupported_media"
PREFERENCE_DATA = "preference_data"
"""Reasons a record is invalid (the keys of the report's ``skipped`` counts)."""

LANGUAGE_FILTER = "language_filter"
TOO_LONG = "too_long"
EMPTY_LOSS_MASK = "empty_loss_mask"
MAX_SAMPLES = "max_samples"
DUPLICATE = "duplicate"
TRAIN_OVERLAP = "train_overlap"
"""Reasons a valid record is left out (never errors, also counted in ``skipped``)."""


@dataclass(frozen=True)
class Problem:
    """One problem with one input record.

    Attributes:
        source: ``file:line`` (or ``dataset[index]``) of the record.
        field: The field concerned (``record`` for the record as a whole).
        message: What is wrong.
        reason: Short key used for the per-reason counts (e.g. ``missing_field``).
    """

    source: str
    field: str
    message: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.field}: {self.message}"


def unreadable(source: str, error: OSError) -> Problem:
    """The problem of a record or file that could not be read (an I/O error)."""
    return Problem(source, "record", f"unreadable: {error}", UNREADABLE)


class RecordProblems(Exception):
    """Raised by a converter when a record is invalid; carries every problem found in it.

    Attributes:
        problems: The problems, in the order they were found.
    """

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(problem) for problem in problems))


@dataclass(slots=True)
class Outcome:
    """What became of one input record: a conversation, or the reason it was left out.

    Attributes:
        source: ``file:line`` of the record.
        conversation: The converted conversation, or None when the record is skipped.
        problems: Validation problems (errors in strict mode).
        reason: Why the record is skipped (a problem's reason, or a filter such as ``language_filter``).
        split: The split the input names for this record (``split`` field or file name), if any.
    """

    source: str
    conversation: Any = None
    problems: list[Problem] = field(default_factory=list)
    reason: str | None = None
    split: str | None = None
