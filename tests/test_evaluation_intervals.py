"""Bootstrap intervals and paired tests on constructed per-sample scores where the answer is known."""

from __future__ import annotations

import math
import random

import pytest
import sacrebleu

from core.domain.bootstrap import bootstrap_interval, paired_bootstrap
from core.infrastructure.evaluation.comparison import paired_tests, significance_sentence
from core.infrastructure.evaluation.intervals import metric_intervals, paired_test
from core.infrastructure.evaluation.text_metrics import corpus_bleu_from_statistics
from core.infrastructure.evaluation.text_scores import score_texts


def test_interval_of_a_rate_matches_the_binomial_standard_error():
    values = [1.0] * 50 + [0.0] * 50
    low, high = bootstrap_interval(values)
    half_width = 1.96 * math.sqrt(0.25 / 100)  # 0.098
    assert low < 0.5 < high
    assert low == pytest.approx(0.5 - half_width, abs=0.02) and high == pytest.approx(0.5 + half_width, abs=0.02)
    assert bootstrap_interval(values) == [low, high]  # seeded: reproducible
    assert bootstrap_interval([0.7] * 10) == [0.7, 0.7]
    assert bootstrap_interval([]) is None


def test_paired_test_known_answers():
    always, never = [1.0] * 32, [0.0] * 32
    decisive = paired_bootstrap(always, never)
    assert decisive.difference == 1.0 and decisive.interval == [1.0, 1.0] and decisive.significant
    same = paired_bootstrap(always, always)
    assert same.difference == 0.0 and same.interval == [0.0, 0.0] and not same.significant
    one_answer = paired_bootstrap([1.0] + [0.0] * 31, never)  # one answer in 32 prompts: 3 points
    assert one_answer.difference == pytest.approx(1 / 32) and not one_answer.significant
    assert one_answer.interval[0] == 0.0
    many = paired_bootstrap([1.0] * 20 + [0.0] * 12, never)
    assert many.significant and many.interval[0] > 0.4
    with pytest.raises(ValueError, match="same prompts"):
        paired_bootstrap([1.0], [1.0, 0.0])


def test_pairing_detects_a_consistent_gain_that_marginal_intervals_hide():
    rng = random.Random(3)
    weaker = [rng.random() for _ in range(40)]
    stronger = [value + 0.05 for value in weaker]
    _, high_weak = bootstrap_interval(weaker)
    low_strong, _ = bootstrap_interval(stronger)
    assert low_strong < high_weak  # the two intervals overlap...
    paired = paired_bootstrap(stronger, weaker)
    assert paired.significant and paired.interval == [pytest.approx(0.05), pytest.approx(0.05)]  # ...the pairs do not


def _samples(passed: list[list[bool]], scores: list[dict[str, float]] | None = None) -> list[dict]:
    return [
        {
            "source": f"data.jsonl:{index}",
            "prompt": f"prompt {index}",
            "checks": [{"kind": "regex", "passed": verdict} for verdict in verdicts],
            "passed_all_checks": all(verdicts) if verdicts else None,
            "scores": (scores or [{}] * len(passed))[index],
        }
        for index, verdicts in enumerate(passed)
    ]


def test_metric_intervals_cover_the_reported_values():
    outputs = ["the cat sat on the mat", "a dog ran", "Paris", "blue sky today", "one two three four"] * 4
    references = [["the cat sat on a mat"], ["the dog ran away"], ["Paris"], ["a red sky"], ["one two three"]] * 4
    scores = score_texts(outputs, references, {"rouge", "bleu", "exact_match"})
    assert (
        corpus_bleu_from_statistics(scores.bleu_statistics)
        == sacrebleu.corpus_bleu(outputs, [[group[0] for group in references]]).score
    )
    samples = _samples([[True, False]] * 10 + [[True, True]] * 10, scores.per_sample)
    intervals = metric_intervals(samples, scores.bleu_statistics)
    assert set(intervals) == {
        "rouge1",
        "rouge2",
        "rougeL",
        "rougeLsum",
        "exact_match",
        "normalized_exact_match",
        "bleu",
        "checks_pass_rate",
        "checks_all_passed_rate",
        "checks_pass_rate_loose",  # old samples without passed_loose: the strict verdict stands for it
        "checks_all_passed_rate_loose",
    }
    assert intervals["checks_pass_rate_loose"] == intervals["checks_pass_rate"]
    for metric in ("rouge1", "rougeL", "bleu", "exact_match"):
        low, high = intervals[metric]
        assert low <= scores.metrics[metric] <= high and low < high
    assert intervals["checks_pass_rate"][0] < 0.75 < intervals["checks_pass_rate"][1]
    assert intervals["checks_all_passed_rate"][0] < 0.5 < intervals["checks_all_passed_rate"][1]


def test_paired_test_matches_prompts_and_uses_the_share_of_checks():
    winner = _samples([[True, True]] * 30)
    loser = _samples([[False, False]] * 30)
    close = _samples([[True, True]] * 29 + [[True, False]])
    result = paired_test(winner, list(reversed(loser)), "checks_pass_rate")  # order does not matter
    assert result.difference == 1.0 and result.significant and result.prompts == 30
    assert not paired_test(winner, close, "checks_pass_rate").significant
    assert paired_test(winner, _samples([]), "checks_pass_rate") is None

    evaluations = {"base (tiny)": {"samples": loser}, "lora": {"samples": winner}, "qlora": {"samples": close}}
    tests = paired_tests(evaluations, "lora")
    assert set(tests) == {"base (tiny)", "qlora"} and tests["qlora"]["metric"] == "checks_pass_rate"
    sentence = significance_sentence("lora", tests)
    assert sentence.startswith("No significant difference between lora and qlora on instruction checks passed")
    assert "30 prompts" in sentence and "base (tiny)" not in sentence
    decisive = significance_sentence("lora", {"base (tiny)": tests["base (tiny)"]})
    assert decisive.startswith("lora is significantly better than every other model")
