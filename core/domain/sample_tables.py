"""Rows shared by the reports and the studio: the per-sample table and instruction pass rates by kind.

The per-sample table has one row per generated answer (prompt, answer, reference, sentence BLEU,
ROUGE-L, checks passed) and is ordered by score, worst first: ROUGE-L, then sentence BLEU, then
the share of checks passed.
"""

from __future__ import annotations

from typing import Any

from core.domain.check_kinds import IFEVAL_INSTRUCTION_IDS
from core.domain.report_format import format_value

SAMPLE_HEADERS = ["#", "Prompt", "Answer", "Reference", "Sentence BLEU", "ROUGE-L", "Checks passed"]
"""Columns of the per-sample table."""

SORT_NOTE = (
    "Sorted by score, worst first: ROUGE-L, then sentence BLEU (0-100), then the share of checks passed. "
    "Checks passed counts strict verdicts; where IFEval's loose verdicts pass more, their count follows."
)

KIND_HEADERS = ["Check", "Family", "Checked", "Pass rate (strict)", "Pass rate (loose)"]
"""Columns of the per-kind pass-rate table of one evaluation."""

ACCURACY_HEADERS = ["Level", "Strict", "Loose"]


def _check_share(sample: dict[str, Any]) -> float:
    checks = sample.get("checks") or []
    return sum(check["passed"] for check in checks) / len(checks) if checks else 0.0


def sample_sort_key(sample: dict[str, Any]) -> tuple[float, float, float, int]:
    """The order of the per-sample table: ascending ROUGE-L, sentence BLEU, checks passed, then index.

    Args:
        sample: An ``evaluation.json`` sample.

    Returns:
        The sort key (missing scores count as 0).
    """
    scores = sample.get("scores") or {}
    return (scores.get("rougeL", 0.0), scores.get("bleu", 0.0), _check_share(sample), sample.get("index", 0))


def checks_passed(sample: dict[str, Any]) -> str:
    """A sample's checks passed, ``"2/3"`` (``"2/3 (loose 3/3)"`` when loose verdicts pass more; ``-`` without checks).

    Args:
        sample: An ``evaluation.json`` sample.

    Returns:
        The text.
    """
    checks = sample.get("checks") or []
    if not checks:
        return "-"
    strict = sum(bool(check["passed"]) for check in checks)
    loose = sum(bool(check.get("passed_loose", check["passed"])) for check in checks)
    return f"{strict}/{len(checks)}" + (f" (loose {loose}/{len(checks)})" if loose != strict else "")


def sample_rows(samples: list[dict[str, Any]], limit: int | None = None) -> list[list[Any]]:
    """Rows of the per-sample table, worst score first.

    Args:
        samples: ``evaluation.json`` samples.
        limit: Keep only the first (worst) rows.

    Returns:
        One row per sample in :data:`SAMPLE_HEADERS` order (scores None where not computed).
    """
    rows = []
    for sample in sorted(samples, key=sample_sort_key)[:limit]:
        scores = sample.get("scores") or {}
        references = "\n".join(sample.get("references") or [sample.get("reference") or ""])
        rows.append(
            [
                sample.get("index", 0) + 1,
                sample.get("prompt", ""),
                sample.get("output", ""),
                references,
                round(scores["bleu"], 2) if "bleu" in scores else None,
                round(scores["rougeL"], 4) if "rougeL" in scores else None,
                checks_passed(sample),
            ]
        )
    return rows


def kind_rows(checks_summary: dict[str, Any]) -> list[list[Any]]:
    """Per-kind pass rates of one evaluation (strict and loose).

    Args:
        checks_summary: ``metrics["checks"]`` of an evaluation.

    Returns:
        Rows in :data:`KIND_HEADERS` order.
    """
    strict = checks_summary.get("by_kind") or {}
    loose = checks_summary.get("by_kind_loose") or {}
    counts = checks_summary.get("by_kind_count") or {}
    return [
        [kind, "IFEval" if kind in IFEVAL_INSTRUCTION_IDS else "project", counts.get(kind), rate, loose.get(kind, rate)]
        for kind, rate in strict.items()
    ]


def accuracy_rows(checks_summary: dict[str, Any]) -> list[list[Any]]:
    """IFEval's prompt- and instruction-level accuracy, strict and loose, over the IFEval instructions.

    Args:
        checks_summary: ``metrics["checks"]`` of an evaluation.

    Returns:
        Rows in :data:`ACCURACY_HEADERS` order (empty when no IFEval instruction was checked).
    """
    ifeval = checks_summary.get("ifeval") or {}
    if not ifeval.get("instructions"):
        return []
    return [
        [f"Prompt level ({ifeval['prompts']} prompts)", ifeval["prompt_strict"], ifeval["prompt_loose"]],
        [
            f"Instruction level ({ifeval['instructions']} instructions)",
            ifeval["instruction_strict"],
            ifeval["instruction_loose"],
        ],
    ]


def kind_comparison(summaries: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Per-kind pass rates of several evaluations side by side (``strict / loose`` per model).

    Args:
        summaries: Model name -> ``metrics["checks"]`` of its evaluation.

    Returns:
        Headers and rows.
    """
    kinds = sorted({kind for summary in summaries.values() for kind in (summary.get("by_kind") or {})})
    rows = []
    for kind in kinds:
        cells: list[Any] = [kind]
        for summary in summaries.values():
            strict = (summary.get("by_kind") or {}).get(kind)
            loose = (summary.get("by_kind_loose") or {}).get(kind, strict)
            cells.append("-" if strict is None else f"{format_value(strict)} / {format_value(loose)}")
        rows.append(cells)
    return ["Check (strict / loose)", *summaries], rows
