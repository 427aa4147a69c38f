"""Instruction-following checks verifiable without a judge model (IFEval-style).

Each check kind of :class:`core.domain.config.CheckSpec` maps to one function
``(answer, value, reference) -> (passed, detail)``. Checks come from two places: the
``evaluation.checks`` setting (applied to every answer) and the ``checks`` of each record.

Value conventions:

- ``valid_json``: no value. The answer (a Markdown code fence around it is allowed) must parse.
- ``json_keys``: list of keys the answer's JSON object must contain.
- ``min_words`` / ``max_words``: word count bounds (words are whitespace-separated).
- ``max_sentences``: most sentences allowed (sentences end with ``.``, ``!`` or ``?``).
- ``contains`` / ``not_contains``: a string or list of strings, matched case-insensitively.
- ``starts_with`` / ``ends_with``: a string the stripped answer starts or ends with (case-insensitive).
- ``bullet_count``: an exact count, or ``{"min": a, "max": b}``; bullets are lines starting
  with ``-``, ``*``, ``•`` or ``1.``/``1)``.
- ``language``: ISO 639-1 code detected by langdetect (seeded, deterministic).
- ``regex``: a pattern that must be found in the stripped answer (``re.search``; ``^``/``$`` anchor the whole answer).
- ``exact_match``: the stripped answer equals the value (or the reference when no value).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from core.domain.settings_sections import CheckSpec

CheckFunction = Callable[[str, Any, str | None], tuple[bool, str]]

_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n?(.*?)\n?```$", re.DOTALL)
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+\S", re.MULTILINE)


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one check on one answer.

    Attributes:
        kind: The check kind.
        value: The check's parameter.
        passed: Whether the answer passed.
        detail: A short explanation (what was measured).
    """

    kind: str
    value: Any
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """Returns the result as JSON-compatible data."""
        return asdict(self)


def _strip_fence(text: str) -> str:
    stripped = text.strip()
    match = _FENCE.match(stripped)
    return match.group(1).strip() if match else stripped


def _parse_json(text: str) -> tuple[Any, str | None]:
    try:
        return json.loads(_strip_fence(text)), None
    except json.JSONDecodeError as error:
        return None, f"invalid JSON: {error.msg} at position {error.pos}"


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(item) for item in value]


def word_count(text: str) -> int:
    """Counts whitespace-separated words.

    Args:
        text: Any text.

    Returns:
        The number of words.
    """
    return len(text.split())


def sentence_count(text: str) -> int:
    """Counts sentences: pieces ending with ``.``, ``!`` or ``?`` (a trailing piece without one counts too).

    Args:
        text: Any text.

    Returns:
        The number of non-empty sentences.
    """
    pieces = _SENTENCE_END.split(text.strip())
    return sum(1 for piece in pieces if piece.strip())


def bullet_count(text: str) -> int:
    """Counts Markdown bullet or numbered list lines.

    Args:
        text: Any text.

    Returns:
        The number of list lines.
    """
    return len(_BULLET.findall(text))


def detect_language(text: str) -> str | None:
    """Detects the language of a text with langdetect, deterministically (seed 0).

    Args:
        text: Any text.

    Returns:
        An ISO 639-1 code such as ``en``, or None when the text has no detectable language.
    """
    from langdetect import DetectorFactory, detect
    from langdetect.lang_detect_exception import LangDetectException

    DetectorFactory.seed = 0
    try:
        return detect(text)
    except LangDetectException:
        return None


def _valid_json(answer: str, value: Any, reference: str | None) -> tuple[bool, str]:
    _parsed, problem = _parse_json(answer)
    return problem is None, problem or "parses as JSON"


def _json_keys(answer: str, value: Any, reference: str | None) -> tuple[bool, str]:
    parsed, problem = _parse_json(answer)
    if problem is not None:
        return False, problem
    if not isinstance(parsed, dict):
        return False, f"JSON is a {type(parsed).__name__}, not an object"
    missing = [key for key in _as_list(value) if key not in parsed]
    return not missing, f"missing keys {missing}" if missing else "all keys present"


def _min_words(answer: str, value: Any, reference: str | None) -> tuple[bool, str]:
    count = word_count(answer)
    return count >= int(value), f"{count} words (min {int(value)})"


def _max_words(answer: str, value: Any, reference: str | None) -> tuple[bool, str]:
    count = word_count(answer)
    return count <= int(value), f"{count} words (max {int(value)})"


def _max_sentences(answer: str, value: Any, reference: str | None) -> tuple[bool, str]:
    count = sentence_count(answer)
    return count <= int(value), f"{count} sentences (max {int(value)})"


def _contains(answer: str, value: Any, reference: str | None) -> tuple[bool, str]:
    lowered = answer.lower()
    missing = [item for item in _as_list(value) if item.lower() not in lowered]
    return not missing, f"missing {missing}" if missing else "contains all"


def _not_contains(answer: str, value: Any, reference: str | None) -> tuple[bool, str]:
    lowered = answer.lower()
    found = [item for item in _as_list(value) if item.lower() in lowered]
    return not found, f"contains {found}" if found else "contains none"


def _starts_with(answer: str, value: Any, reference: str | None) -> tuple[bool, str]:
    passed = answer.strip().lower().startswith(str(value).strip().lower())
    return passed, f"starts with {answer.strip()[:30]!r}"


def _ends_with(answer: str, value: Any, reference: str | None) -> tuple[bool, str]:
    passed = answer.strip().lower().endswith(str(value).strip().lower())
    return passed, f"ends with {answer.strip()[-30:]!r}"


def _bullet_count(answer: str, value: Any, reference: str | None) -> tuple[bool, str]:
    count = bullet_count(answer)
    if isinstance(value, dict):
        low, high = value.get("min"), value.get("max")
        passed = (low is None or count >= int(low)) and (high is None or count <= int(high))
        return passed, f"{count} bullets (min {low}, max {high})"
    return count == int(value), f"{count} bullets (expected {int(value)})"


def _language(answer: str, value: Any, reference: str | None) -> tuple[bool, str]:
    detected = detect_language(answer)
    return detected == str(value).lower(), f"detected {detected}"


def _regex(answer: str, value: Any, reference: str | None) -> tuple[bool, str]:
    found = re.search(str(value), answer.strip()) is not None
    return found, "pattern found" if found else "pattern not found"


def _exact_match(answer: str, value: Any, reference: str | None) -> tuple[bool, str]:
    expected = reference if value is None else str(value)
    if expected is None:
        return False, "no expected value or reference"
    passed = answer.strip() == expected.strip()
    return passed, "identical" if passed else f"expected {expected.strip()[:40]!r}"


CHECKS: dict[str, CheckFunction] = {
    "valid_json": _valid_json,
    "json_keys": _json_keys,
    "min_words": _min_words,
    "max_words": _max_words,
    "max_sentences": _max_sentences,
    "contains": _contains,
    "not_contains": _not_contains,
    "ends_with": _ends_with,
    "starts_with": _starts_with,
    "bullet_count": _bullet_count,
    "language": _language,
    "regex": _regex,
    "exact_match": _exact_match,
}
"""Check kind -> function; the keys equal the kinds allowed by :class:`CheckSpec`."""


def run_check(spec: CheckSpec | dict[str, Any], answer: str, reference: str | None = None) -> CheckResult:
    """Runs one check on an answer.

    Args:
        spec: The check (a :class:`CheckSpec` or a mapping with ``kind`` and ``value``).
        answer: The generated answer.
        reference: The reference answer (used by ``exact_match`` without a value).

    Returns:
        The result; a malformed value fails the check with the problem as detail.
    """
    spec = spec if isinstance(spec, CheckSpec) else CheckSpec.model_validate(spec)
    try:
        passed, detail = CHECKS[spec.kind](answer, spec.value, reference)
    except (TypeError, ValueError, re.error) as error:
        passed, detail = False, f"bad check value {spec.value!r}: {error}"
    return CheckResult(kind=spec.kind, value=spec.value, passed=bool(passed), detail=detail)


def run_checks(
    specs: Iterable[CheckSpec | dict[str, Any]], answer: str, reference: str | None = None
) -> list[CheckResult]:
    """Runs several checks on one answer.

    Args:
        specs: The checks.
        answer: The generated answer.
        reference: The reference answer.

    Returns:
        One result per check, in order.
    """
    return [run_check(spec, answer, reference) for spec in specs]


def summarize_checks(per_sample: list[list[CheckResult]]) -> dict[str, Any]:
    """Aggregates check results over samples.

    Args:
        per_sample: The results of each sample.

    Returns:
        ``pass_rate`` (share of all checks passed), ``all_passed_rate`` (share of samples with
        checks that passed every one), ``checks``/``samples_with_checks`` counts and ``by_kind``
        pass rates. Rates are None when there were no checks.
    """
    flat = [result for results in per_sample for result in results]
    with_checks = [results for results in per_sample if results]
    by_kind: dict[str, list[bool]] = {}
    for result in flat:
        by_kind.setdefault(result.kind, []).append(result.passed)
    return {
        "pass_rate": sum(result.passed for result in flat) / len(flat) if flat else None,
        "all_passed_rate": (
            sum(all(result.passed for result in results) for results in with_checks) / len(with_checks)
            if with_checks
            else None
        ),
        "checks": len(flat),
        "samples_with_checks": len(with_checks),
        "by_kind": {kind: sum(values) / len(values) for kind, values in sorted(by_kind.items())},
    }
