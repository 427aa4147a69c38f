"""The per-sample table (worst score first), pass rates by kind, loose intervals, and the comparison's kind table."""

from __future__ import annotations

from core.domain.sample_tables import (
    SAMPLE_HEADERS,
    accuracy_rows,
    checks_passed,
    kind_comparison,
    kind_rows,
    sample_rows,
)
from core.infrastructure.evaluation.intervals import metric_intervals


def _check(kind: str, passed: bool, loose: bool | None = None) -> dict:
    return {
        "kind": kind,
        "value": None,
        "passed": passed,
        "detail": "",
        "passed_loose": passed if loose is None else loose,
    }


SAMPLES = [
    {
        "index": 0,
        "prompt": "good",
        "output": "a",
        "reference": "a",
        "scores": {"rougeL": 1.0, "bleu": 100.0},
        "checks": [_check("regex", True)],
    },
    {
        "index": 1,
        "prompt": "bad",
        "output": "b",
        "reference": "c",
        "scores": {"rougeL": 0.0, "bleu": 0.0},
        "checks": [_check("punctuation:no_comma", False, True), _check("regex", True)],
    },
    {
        "index": 2,
        "prompt": "middling",
        "output": "x y",
        "references": ["x z", "x y z"],
        "reference": "x z",
        "scores": {"rougeL": 0.5, "bleu": 20.0},
        "checks": [],
    },
]


def test_sample_rows_are_sorted_worst_first_with_the_issue_columns():
    rows = sample_rows(SAMPLES)
    assert SAMPLE_HEADERS == ["#", "Prompt", "Answer", "Reference", "Sentence BLEU", "ROUGE-L", "Checks passed"]
    assert [row[1] for row in rows] == ["bad", "middling", "good"]
    assert rows[0] == [2, "bad", "b", "c", 0.0, 0.0, "1/2 (loose 2/2)"]
    assert rows[1][3] == "x z\nx y z" and rows[1][6] == "-"
    assert [row[1] for row in sample_rows(SAMPLES, limit=1)] == ["bad"]


def test_ties_on_rouge_are_broken_by_bleu_then_checks():
    tied = [
        {"index": 0, "prompt": "p0", "output": "", "reference": "", "scores": {"rougeL": 0.2, "bleu": 9.0}},
        {"index": 1, "prompt": "p1", "output": "", "reference": "", "scores": {"rougeL": 0.2, "bleu": 3.0}},
    ]
    assert [row[1] for row in sample_rows(tied)] == ["p1", "p0"]


def test_checks_passed_text():
    assert checks_passed(SAMPLES[0]) == "1/1"
    assert checks_passed({"checks": [{"kind": "regex", "passed": False}]}) == "0/1"  # old file: no passed_loose


def test_kind_rows_and_accuracy_rows():
    summary = {
        "by_kind": {"punctuation:no_comma": 0.0, "regex": 1.0},
        "by_kind_loose": {"punctuation:no_comma": 1.0, "regex": 1.0},
        "by_kind_count": {"punctuation:no_comma": 1, "regex": 2},
        "ifeval": {
            "prompt_strict": 0.0,
            "prompt_loose": 1.0,
            "instruction_strict": 0.0,
            "instruction_loose": 1.0,
            "prompts": 1,
            "instructions": 1,
        },
    }
    assert kind_rows(summary) == [["punctuation:no_comma", "IFEval", 1, 0.0, 1.0], ["regex", "project", 2, 1.0, 1.0]]
    assert accuracy_rows(summary) == [
        ["Prompt level (1 prompts)", 0.0, 1.0],
        ["Instruction level (1 instructions)", 0.0, 1.0],
    ]
    assert accuracy_rows({"by_kind": {"regex": 1.0}}) == []
    headers, rows = kind_comparison({"base": {"by_kind": {"regex": 0.5}}, "lora": summary})
    assert headers == ["Check (strict / loose)", "base", "lora"]
    assert rows == [["punctuation:no_comma", "-", "0 / 1"], ["regex", "0.5 / 0.5", "1 / 1"]]


def test_loose_intervals_use_the_loose_verdicts():
    samples = [{"checks": [_check("punctuation:no_comma", False, True)], "passed_all_checks": False}] * 12
    intervals = metric_intervals(samples)
    assert intervals["checks_pass_rate"] == [0.0, 0.0]
    assert intervals["checks_pass_rate_loose"] == [1.0, 1.0]
    assert intervals["checks_all_passed_rate_loose"] == [1.0, 1.0]
