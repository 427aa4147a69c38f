"""Reference-based metrics equal the reference implementations exactly, loaded offline via evaluate."""

from __future__ import annotations

import os

import pytest

from core.infrastructure.evaluation import text_metrics

PREDICTIONS = [
    "The cat sat on the mat.",
    "Paris is the capital of France",
    '{"name": "Maria Lopez", "age": 34}',
    "3, 7, 19, 42",
    "rain, cloud, sun",
    "A completely unrelated answer about quantum physics and the weather.",
    "The quick brown fox\njumps over the lazy dog",
    "",
]
REFERENCES = [
    "A cat sat on the mat.",
    "The capital of France is Paris.",
    '{"name": "Maria Lopez", "age": 34}',
    "3, 7, 19, 42",
    "sun, cloud, rain",
    "Four thousand metres.",
    "The quick brown fox jumps\nover the lazy dog.",
    "Something",
]


def test_metric_modules_load_offline_through_evaluate():
    import evaluate

    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    module = text_metrics.load_metric("rouge")
    assert isinstance(module, evaluate.EvaluationModule)
    assert module.name == "rouge"
    with pytest.raises(ValueError, match="unknown metric"):
        text_metrics.load_metric("meteor")


def test_rouge_equals_rouge_score_exactly():
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"])
    per_pair = [
        scorer.score(reference, prediction) for prediction, reference in zip(PREDICTIONS, REFERENCES, strict=True)
    ]
    expected = {
        kind: sum(scores[kind].fmeasure for scores in per_pair) / len(per_pair)
        for kind in ("rouge1", "rouge2", "rougeL", "rougeLsum")
    }
    result = text_metrics.compute_rouge(PREDICTIONS, REFERENCES)
    assert result == expected
    assert 0 < result["rouge2"] < result["rouge1"] < 1
    assert result["rougeLsum"] != result["rougeL"]  # Lsum splits on the newlines, L does not


def test_rouge_per_pair_scores():
    module = text_metrics.load_metric("rouge")
    per_pair = module.compute(predictions=PREDICTIONS, references=REFERENCES, use_aggregator=False)
    assert per_pair["rouge1"][2] == 1.0  # identical JSON
    assert per_pair["rouge1"][7] == 0.0  # empty prediction


def test_bleu_equals_sacrebleu_exactly():
    import sacrebleu

    expected = sacrebleu.corpus_bleu(PREDICTIONS, [REFERENCES])
    result = text_metrics.compute_bleu(PREDICTIONS, REFERENCES)
    assert result["score"] == expected.score
    assert result["precisions"] == list(expected.precisions)
    assert result["bp"] == expected.bp
    assert 0 < result["score"] < 100
    assert text_metrics.compute_bleu(REFERENCES, REFERENCES)["score"] == pytest.approx(100.0)


def test_exact_and_normalized_exact_match():
    result = text_metrics.compute_exact_match(
        ["Paris", " Paris\n", "paris!!", "Lyon", "3, 7, 19"],
        ["Paris", "Paris", "Paris", "Paris", "3 7 19"],
    )
    assert result["exact_match"] == pytest.approx(2 / 5)  # verbatim after stripping surrounding whitespace
    assert result["normalized_exact_match"] == pytest.approx(4 / 5)


def test_length_statistics():
    stats = text_metrics.length_statistics(["one two three", "", "a b"], token_counts=[3, 1, 2])
    assert stats == {
        "mean_words": pytest.approx(5 / 3),
        "median_words": 2.0,
        "min_words": 0,
        "max_words": 3,
        "empty_fraction": pytest.approx(1 / 3),
        "mean_tokens": pytest.approx(2.0),
    }
