"""Each instruction-following check has a passing and a failing case."""

from __future__ import annotations

import pytest

from core.domain.check_kinds import IFEVAL_INSTRUCTION_IDS, PROJECT_CHECK_KINDS
from core.domain.settings_sections import CheckSpec
from core.infrastructure.evaluation.checks import CHECKS, run_check, run_checks, summarize_checks

CASES = [
    # kind, value, passing answer, failing answer (the project's own checks; IFEval's are in test_evaluation_ifeval)
    ("valid_json", None, '{"name": "Ann", "age": 3}', "name: Ann, age: 3"),
    ("valid_json", None, '```json\n{"a": 1}\n```', '{"a": 1,}'),
    ("json_keys", ["name", "age"], '{"name": "Ann", "age": 3, "city": "Oslo"}', '{"name": "Ann"}'),
    ("json_keys", ["name"], '{"name": "Ann"}', '["name"]'),
    ("starts_with", "Answer:", "  answer: 42", "The answer: 42"),
    ("regex", r"^\d{2}/\d{2}/\d{4}$", "05/03/2024", "5 March 2024"),
    ("regex", r"^\d+(, \d+)*$", "3, 7, 19, 42", "3, 7, 19, 42\nDone"),
    ("regex", r"^[^.]*$", "rain, cloud, sun", "rain, cloud, sun."),  # the demo's reverse_words check
    ("exact_match", "5000 m", " 5000 m\n", "5000 meters"),
]


def test_every_project_check_kind_has_cases():
    assert set(CHECKS) == set(PROJECT_CHECK_KINDS)
    assert {case[0] for case in CASES} == set(PROJECT_CHECK_KINDS)
    assert not set(PROJECT_CHECK_KINDS) & set(IFEVAL_INSTRUCTION_IDS)  # no project name pretends to be IFEval's


@pytest.mark.parametrize(
    ("kind", "value", "passing", "failing"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_check_passes_and_fails(kind, value, passing, failing):
    spec = CheckSpec(kind=kind, value=value)
    passed = run_check(spec, passing)
    failed = run_check(spec, failing)
    assert passed.passed, passed.detail
    assert not failed.passed, failed.detail
    assert passed.kind == kind and failed.detail
    assert passed.passed_loose and not failed.passed_loose  # a project check's loose verdict is its strict one


def test_exact_match_without_value_uses_the_reference():
    assert run_check({"kind": "exact_match"}, "Oslo", reference="Oslo").passed
    assert not run_check({"kind": "exact_match"}, "Oslo", reference="Lima").passed
    assert not run_check({"kind": "exact_match"}, "Oslo").passed


def test_language_detection_is_deterministic():
    spec = {"kind": "language", "value": "en"}  # the old name of language:response_language
    results = {(run_check(spec, text).passed, run_check(spec, text).passed_loose) for text in ["ok then"] * 5}
    assert len(results) == 1


def test_bad_check_values_fail_instead_of_crashing():
    assert not run_check({"kind": "regex", "value": "("}, "anything").passed
    assert not run_check({"kind": "min_words", "value": "many"}, "anything").passed


def test_summary_counts_checks_and_samples():
    specs = [{"kind": "max_words", "value": 2}, {"kind": "regex", "value": "a"}]
    per_sample = [run_checks(specs, "a b"), run_checks(specs, "b c d"), []]
    summary = summarize_checks(per_sample)
    assert summary["checks"] == 4
    assert summary["samples_with_checks"] == 2
    assert summary["pass_rate"] == pytest.approx(2 / 4)
    assert summary["all_passed_rate"] == pytest.approx(1 / 2)
    assert summary["by_kind"] == {"length_constraints:number_words": 0.5, "regex": 0.5}
    assert summary["by_kind_count"] == {"length_constraints:number_words": 2, "regex": 2}
    assert summary["ifeval"]["instructions"] == 2 and summary["ifeval"]["prompt_strict"] == 0.5
    assert summarize_checks([[], []])["pass_rate"] is None


def test_loose_verdicts_are_summarized_at_prompt_and_instruction_level():
    specs = [{"kind": "punctuation:no_comma"}, {"kind": "regex", "value": "b"}]
    # strict fails on the comma in the first line; loose passes without that line
    per_sample = [run_checks(specs, "Sure, here:\nb c"), run_checks(specs, "b")]
    summary = summarize_checks(per_sample)
    assert (summary["pass_rate"], summary["pass_rate_loose"]) == (0.75, 1.0)
    assert (summary["all_passed_rate"], summary["all_passed_rate_loose"]) == (0.5, 1.0)
    assert summary["by_kind_loose"] == {"punctuation:no_comma": 1.0, "regex": 1.0}
    assert summary["ifeval"] == {
        "prompt_strict": 0.5,
        "prompt_loose": 1.0,
        "instruction_strict": 0.5,
        "instruction_loose": 1.0,
        "prompts": 2,
        "instructions": 2,
    }
