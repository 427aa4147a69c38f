"""Each instruction-following check has a passing and a failing case."""

from __future__ import annotations

import pytest

from core.domain.settings_sections import CheckSpec
from core.infrastructure.evaluation.checks import CHECKS, run_check, run_checks, summarize_checks

CASES = [
    # kind, value, passing answer, failing answer
    ("valid_json", None, '{"name": "Ann", "age": 3}', "name: Ann, age: 3"),
    ("valid_json", None, '```json\n{"a": 1}\n```', '{"a": 1,}'),
    ("json_keys", ["name", "age"], '{"name": "Ann", "age": 3, "city": "Oslo"}', '{"name": "Ann"}'),
    ("json_keys", ["name"], '{"name": "Ann"}', '["name"]'),
    ("min_words", 3, "one two three", "one two"),
    ("max_words", 3, "one two three", "one two three four"),
    ("max_sentences", 2, "First one. Second one!", "One. Two? Three."),
    ("contains", ["paris", "France"], "Paris is in France.", "Paris is lovely."),
    ("contains", "km", "It is 5 KM away", "It is 5 miles away"),
    ("not_contains", ".", "rain, cloud, sun", "rain, cloud, sun."),
    ("not_contains", ["sorry", "as an ai"], "Here you go", "As an AI I cannot"),
    ("ends_with", "Is there anything else?", "Done. Is there anything else?  ", "Is there anything else? Done."),
    ("starts_with", "Answer:", "  answer: 42", "The answer: 42"),
    ("bullet_count", 3, "- a\n- b\n* c", "- a\n- b"),
    ("bullet_count", {"min": 2, "max": 3}, "1. a\n2) b", "- only one"),
    (
        "language",
        "en",
        "The weather is lovely today and we are going to the park.",
        "Il fait très beau aujourd'hui et nous allons au parc.",
    ),
    (
        "language",
        "fr",
        "Il fait très beau aujourd'hui et nous allons au parc.",
        "The weather is lovely today and we are going to the park.",
    ),
    ("regex", r"^\d{2}/\d{2}/\d{4}$", "05/03/2024", "5 March 2024"),
    ("regex", r"^\d+(, \d+)*$", "3, 7, 19, 42", "3, 7, 19, 42\nDone"),
    ("exact_match", "5000 m", " 5000 m\n", "5000 meters"),
]


def test_every_check_kind_has_cases():
    kinds = set(CheckSpec.model_fields["kind"].annotation.__args__)
    assert set(CHECKS) == kinds
    assert {case[0] for case in CASES} == kinds


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


def test_exact_match_without_value_uses_the_reference():
    assert run_check({"kind": "exact_match"}, "Oslo", reference="Oslo").passed
    assert not run_check({"kind": "exact_match"}, "Oslo", reference="Lima").passed
    assert not run_check({"kind": "exact_match"}, "Oslo").passed


def test_language_detection_is_deterministic():
    text = "ok then"
    results = {run_check({"kind": "language", "value": "en"}, text).detail for _ in range(5)}
    assert len(results) == 1


def test_bad_check_values_fail_instead_of_crashing():
    assert not run_check({"kind": "regex", "value": "("}, "anything").passed
    assert not run_check({"kind": "min_words", "value": "many"}, "anything").passed


def test_summary_counts_checks_and_samples():
    specs = [{"kind": "max_words", "value": 2}, {"kind": "contains", "value": "a"}]
    per_sample = [run_checks(specs, "a b"), run_checks(specs, "b c d"), []]
    summary = summarize_checks(per_sample)
    assert summary["checks"] == 4
    assert summary["samples_with_checks"] == 2
    assert summary["pass_rate"] == pytest.approx(2 / 4)
    assert summary["all_passed_rate"] == pytest.approx(1 / 2)
    assert summary["by_kind"] == {"contains": 0.5, "max_words": 0.5}
    assert summarize_checks([[], []])["pass_rate"] is None
