"""Instruction checks verifiable without a judge model: IFEval's instructions and the project's own.

Each :class:`core.domain.settings_sections.CheckSpec` is either

- an **IFEval instruction** (``kind`` an IFEval instruction id, ``value`` its keyword arguments):
  the strict and loose verdicts are the reference implementation's
  (:mod:`core.infrastructure.evaluation.ifeval_checks`); or
- a **project check** (deterministic formats of the demo data; the loose verdict equals the strict one):

  - ``valid_json``: no value. The answer (a Markdown code fence around it is allowed) must parse.
  - ``json_keys``: list of keys the answer's JSON object must contain.
  - ``starts_with``: a string the stripped answer starts with (case-insensitive).
  - ``regex``: a pattern found in the stripped answer (``re.search``; ``^``/``$`` anchor the whole answer).
  - ``exact_match``: the stripped answer equals the value (or the reference when no value).

Checks come from the ``evaluation.checks`` setting (applied to every answer) and each record's ``checks``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from core.domain.check_kinds import IFEVAL_INSTRUCTION_IDS
from core.domain.settings_sections import CheckSpec

CheckFunction = Callable[[str, Any, str | None], tuple[bool, str]]

_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n?(.*?)\n?```$", re.DOTALL)


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one check on one answer.

    Attributes:
        kind: The check kind.
        value: The check's parameter.
        passed: Whether the answer passed (IFEval's strict verdict for an IFEval instruction).
        detail: A short explanation (what was measured).
        passed_loose: IFEval's loose verdict (the strict one for a project check).
    """

    kind: str
    value: Any
    passed: bool
    detail: str
    passed_loose: bool | None = None

    def __post_init__(self) -> None:
        if self.passed_loose is None:
            object.__setattr__(self, "passed_loose", self.passed)

    @property
    def is_ifeval(self) -> bool:
        """Whether the check is an IFEval instruction (its verdicts are the reference's)."""
        return self.kind in IFEVAL_INSTRUCTION_IDS

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


def _starts_with(answer: str, value: Any, reference: str | None) -> tuple[bool, str]:
    passed = answer.strip().lower().startswith(str(value).strip().lower())
    return passed, f"starts with {answer.strip()[:30]!r}"


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
    "starts_with": _starts_with,
    "regex": _regex,
    "exact_match": _exact_match,
}
"""Project check kind -> function; the keys equal :data:`core.domain.check_kinds.PROJECT_CHECK_KINDS`."""


def run_check(
    spec: CheckSpec | dict[str, Any], answer: str, reference: str | None = None, prompt: str = ""
) -> CheckResult:
    """Runs one check on an answer.

    Args:
        spec: The check (a :class:`CheckSpec` or a mapping with ``kind`` and ``value``; old kind names
            are read as the IFEval instruction they stood for).
        answer: The generated answer.
        reference: The reference answer (used by ``exact_match`` without a value).
        prompt: The prompt (handed to the IFEval reference).

    Returns:
        The result; a malformed value fails the check with the problem as detail.
    """
    spec = spec if isinstance(spec, CheckSpec) else CheckSpec.model_validate(spec)
    try:
        if spec.kind in IFEVAL_INSTRUCTION_IDS:
            from core.infrastructure.evaluation.ifeval_checks import ifeval_verdict

            verdict = ifeval_verdict(spec.kind, spec.value, answer, prompt)
            return CheckResult(spec.kind, spec.value, verdict.strict, verdict.detail, verdict.loose)
        passed, detail = CHECKS[spec.kind](answer, spec.value, reference)
    except (TypeError, ValueError, AttributeError, re.error) as error:
        passed, detail = False, f"bad check value {spec.value!r}: {error}"
    return CheckResult(kind=spec.kind, value=spec.value, passed=bool(passed), detail=detail)


def run_checks(
    specs: Iterable[CheckSpec | dict[str, Any]], answer: str, reference: str | None = None, prompt: str = ""
) -> list[CheckResult]:
    """Runs several checks on one answer.

    Args:
        specs: The checks.
        answer: The generated answer.
        reference: The reference answer.
        prompt: The prompt.

    Returns:
        One result per check, in order.
    """
    return [run_check(spec, answer, reference, prompt) for spec in specs]


def _rate(values: list[bool]) -> float | None:
    return sum(values) / len(values) if values else None


def accuracy(per_sample: list[list[CheckResult]]) -> dict[str, Any]:
    """IFEval's four accuracies over the samples that have checks.

    Args:
        per_sample: The results of each sample (samples without results are left out).

    Returns:
        ``prompt_strict``/``prompt_loose`` (share of samples passing every check),
        ``instruction_strict``/``instruction_loose`` (share of checks passed), and the ``prompts``
        and ``instructions`` counted; rates are None without checks.
    """
    with_checks = [results for results in per_sample if results]
    flat = [result for results in with_checks for result in results]
    return {
        "prompt_strict": _rate([all(result.passed for result in results) for results in with_checks]),
        "prompt_loose": _rate([all(result.passed_loose for result in results) for results in with_checks]),
        "instruction_strict": _rate([result.passed for result in flat]),
        "instruction_loose": _rate([result.passed_loose for result in flat]),
        "prompts": len(with_checks),
        "instructions": len(flat),
    }


def summarize_checks(per_sample: list[list[CheckResult]]) -> dict[str, Any]:
    """Aggregates check results over samples.

    Args:
        per_sample: The results of each sample.

    Returns:
        ``pass_rate``/``pass_rate_loose`` (instruction level: share of all checks passed, strict and
        loose), ``all_passed_rate``/``all_passed_rate_loose`` (prompt level: share of samples with
        checks that passed every one), ``checks``/``samples_with_checks`` counts, ``by_kind`` and
        ``by_kind_loose`` pass rates with ``by_kind_count``, and ``ifeval``: the four accuracies over
        the IFEval instructions only (:func:`accuracy`). Rates are None when there were no checks.
    """
    overall = accuracy(per_sample)
    by_kind: dict[str, list[CheckResult]] = {}
    for results in per_sample:
        for result in results:
            by_kind.setdefault(result.kind, []).append(result)
    ifeval_only = [[result for result in results if result.is_ifeval] for results in per_sample]
    return {
        "pass_rate": overall["instruction_strict"],
        "pass_rate_loose": overall["instruction_loose"],
        "all_passed_rate": overall["prompt_strict"],
        "all_passed_rate_loose": overall["prompt_loose"],
        "checks": overall["instructions"],
        "samples_with_checks": overall["prompts"],
        "by_kind": {kind: _rate([r.passed for r in results]) for kind, results in sorted(by_kind.items())},
        "by_kind_loose": {kind: _rate([r.passed_loose for r in results]) for kind, results in sorted(by_kind.items())},
        "by_kind_count": {kind: len(results) for kind, results in sorted(by_kind.items())},
        "ifeval": accuracy(ifeval_only),
    }
