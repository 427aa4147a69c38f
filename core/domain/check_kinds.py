"""The kinds of instruction checks, and the one place where old kind names are mapped (no torch).

Two families:

- **IFEval instructions**, named by IFEval's own instruction ids (``keywords:forbidden_words``,
  ``length_constraints:number_words``, ...). Their ``value`` is the instruction's keyword arguments
  as IFEval writes them (``{"forbidden_words": ["cat"]}``), and their verdicts, strict and loose,
  come from the reference implementation (if-verifiable's IFEval registry, see
  :mod:`core.infrastructure.evaluation.ifeval_checks`).
- **Project checks** for the demo data's deterministic formats, which IFEval does not have:
  ``valid_json``, ``json_keys``, ``starts_with``, ``regex`` and ``exact_match``.

The names used before the IFEval delegation (``min_words``, ``not_contains``, ``bullet_count``, ...)
are still read from existing data and configurations: :func:`canonical_check` turns each into the
IFEval instruction it stood for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

IFEVAL_INSTRUCTION_IDS = (
    "keywords:existence",
    "keywords:frequency",
    "keywords:forbidden_words",
    "keywords:letter_frequency",
    "language:response_language",
    "length_constraints:number_sentences",
    "length_constraints:number_paragraphs",
    "length_constraints:number_words",
    "length_constraints:nth_paragraph_first_word",
    "detectable_content:number_placeholders",
    "detectable_content:postscript",
    "detectable_format:number_bullet_lists",
    "detectable_format:constrained_response",
    "detectable_format:number_highlighted_sections",
    "detectable_format:multiple_sections",
    "detectable_format:json_format",
    "detectable_format:title",
    "combination:two_responses",
    "combination:repeat_prompt",
    "startend:end_checker",
    "change_case:capital_word_frequency",
    "change_case:english_capital",
    "change_case:english_lowercase",
    "punctuation:no_comma",
    "startend:quotation",
)
"""IFEval's 25 instruction ids, in its registry's order (a test checks them against the reference)."""

PROJECT_CHECK_KINDS = ("valid_json", "json_keys", "starts_with", "regex", "exact_match")
"""This project's own deterministic checks (no IFEval counterpart; loose verdict = strict verdict)."""

CHECK_KINDS = (*IFEVAL_INSTRUCTION_IDS, *PROJECT_CHECK_KINDS)
"""Every kind a check may have after :func:`canonical_check`."""


def _words(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(item) for item in value or []]


def _plus_one(value: Any) -> Any:
    """``at most N`` is IFEval's ``less than N + 1`` (a non-integer is passed on to fail there)."""
    try:
        return int(value) + 1
    except (TypeError, ValueError):
        return value


def _integer(value: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


LEGACY_CHECK_KINDS: dict[str, tuple[str, Callable[[Any], dict[str, Any]]]] = {
    "min_words": ("length_constraints:number_words", lambda v: {"num_words": _integer(v), "relation": "at least"}),
    "max_words": ("length_constraints:number_words", lambda v: {"num_words": _plus_one(v), "relation": "less than"}),
    "max_sentences": (
        "length_constraints:number_sentences",
        lambda v: {"num_sentences": _plus_one(v), "relation": "less than"},
    ),
    "contains": ("keywords:existence", lambda v: {"keywords": _words(v)}),
    "not_contains": ("keywords:forbidden_words", lambda v: {"forbidden_words": _words(v)}),
    "ends_with": ("startend:end_checker", lambda v: {"end_phrase": str(v)}),
    "bullet_count": ("detectable_format:number_bullet_lists", lambda v: {"num_bullets": _integer(v)}),
    "language": ("language:response_language", lambda v: {"language": str(v).lower()}),
}
"""Old kind name -> (IFEval instruction id, old value -> IFEval keyword arguments)."""


def canonical_check(kind: str, value: Any) -> tuple[str, Any]:
    """Maps an old check name to the IFEval instruction it stood for; other kinds are returned as given.

    Args:
        kind: A kind from :data:`CHECK_KINDS` or :data:`LEGACY_CHECK_KINDS`.
        value: The check's value in the convention of that kind.

    Returns:
        ``(kind, value)`` with an IFEval id and its keyword arguments for an old name.

    Raises:
        ValueError: For an unknown kind, or a ``bullet_count`` range (IFEval counts bullets exactly).
    """
    if kind in LEGACY_CHECK_KINDS:
        if kind == "bullet_count" and isinstance(value, dict):
            raise ValueError("bullet_count with a min/max range has no IFEval counterpart; give an exact count")
        instruction_id, convert = LEGACY_CHECK_KINDS[kind]
        return instruction_id, convert(value)
    if kind not in CHECK_KINDS:
        raise ValueError(
            f"unknown check kind {kind!r}; expected an IFEval instruction id or one of {PROJECT_CHECK_KINDS}"
        )
    return kind, value
