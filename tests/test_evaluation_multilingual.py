"""Multilingual and multi-reference BLEU/ROUGE equal sacreBLEU and rouge-score with the same tokenizers."""

from __future__ import annotations

import random
import string

import pytest
import sacrebleu
from rouge_score import rouge_scorer, tokenizers

from core.domain.errors import ConfigError
from core.domain.text_scripts import auto_bleu_tokenizer, dominant_script
from core.infrastructure.evaluation import text_metrics
from core.infrastructure.evaluation.text_scores import score_texts
from core.infrastructure.evaluation.text_tokenizers import (
    UnicodeRougeTokenizer,
    resolve_bleu_tokenizer,
    resolve_rouge_tokenizer,
    split_sentences,
)

ROUGE_TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"]

CASES = {
    "chinese": (["我喜欢吃苹果和香蕉。", "今天天气很好"], ["我喜欢吃香蕉和苹果。", "今天天气不错"], "zh"),
    "cyrillic": (
        ["Кошка сидит на ковре.", "Москва столица России"],
        ["Кошка сидела на ковре.", "Столица России Москва"],
    ),
    "arabic": (["القطة تجلس على السجادة", "مرحبا بالعالم"], ["جلست القطة على السجادة", "مرحبا بالعالم"]),
    "accented": (["Un café au lait, s'il vous plaît", "Ça va très bien"], ["Un cafe au lait", "Ça va bien"]),
    "thai": (["ฉันชอบกินข้าว", "สวัสดีครับ"], ["ฉันชอบกินข้าวมาก", "สวัสดีค่ะ"]),
}
ASCII_HARD_CASES = [
    "The cat sat on the mat.",
    "snake_case_names and CamelCase",
    "It's 3:45pm -- isn't it?",
    "e-mail: a.b@example.com, URL https://x.org/a?b=1",
    '{"name": "Maria Lopez", "age": 34}',
    "  leading\tand\ntrailing  ",
    "",
    "!!!",
    "x^2 + y_1 = 3.14159",
    "C++ & C# vs. F#",
]


def expected_rouge(predictions, references, tokenizer, lsum_split=True):
    scorer = rouge_scorer.RougeScorer(ROUGE_TYPES, tokenizer=tokenizer)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for prediction, reference in zip(predictions, references, strict=True):
        group = [reference] if isinstance(reference, str) else reference
        plain = scorer.score_multi(group, prediction)
        split = scorer.score_multi([split_sentences(text) for text in group], split_sentences(prediction))
        for kind in ROUGE_TYPES:
            score = split[kind] if kind == "rougeLsum" and lsum_split else plain[kind]
            totals[kind] += score.fmeasure
    return {kind: total / len(predictions) for kind, total in totals.items()}


def test_unicode_tokenizer_equals_rouge_score_default_on_ascii():
    default, unicode = tokenizers.DefaultTokenizer(), UnicodeRougeTokenizer()
    rng = random.Random(18)
    texts = ASCII_HARD_CASES + ["".join(rng.choices(string.printable, k=rng.randint(0, 80))) for _ in range(3000)]
    assert [unicode.tokenize(text) for text in texts] == [default.tokenize(text) for text in texts]


def test_unicode_tokenizer_keeps_every_script():
    tokens = UnicodeRougeTokenizer().tokenize("我喜欢猫。 Привет, МИР! Café مرحبا हिन्दी 한국어")
    assert tokens == ["我", "喜", "欢", "猫", "привет", "мир", "café", "مرحبا", "हिन्दी", "한국어"]
    assert tokenizers.DefaultTokenizer().tokenize("Привет café") == ["caf"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_rouge_equals_rouge_score_with_the_unicode_tokenizer(name):
    predictions, references = CASES[name][:2]
    result = text_metrics.compute_rouge(predictions, references, tokenizer="unicode")
    assert result == expected_rouge(predictions, references, UnicodeRougeTokenizer())
    assert result["rouge1"] > 0.3
    default = text_metrics.compute_rouge(predictions, references, tokenizer="default")
    assert default == expected_rouge(predictions, references, None)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("tokenize", ["13a", "intl", "zh", "char"])
def test_bleu_equals_sacrebleu_with_the_same_tokenizer(name, tokenize):
    predictions, references = CASES[name][:2]
    result = text_metrics.compute_bleu(predictions, references, tokenize=tokenize)
    expected = sacrebleu.corpus_bleu(predictions, [references], tokenize=tokenize)
    assert result["score"] == expected.score and result["precisions"] == list(expected.precisions)
    assert result["tokenize"] == tokenize
    sentences = text_metrics.sentence_bleu_scores(predictions, references, tokenize)
    assert sentences == [
        sacrebleu.sentence_bleu(prediction, [reference], tokenize=tokenize).score
        for prediction, reference in zip(predictions, references, strict=True)
    ]


def test_identical_chinese_pair_scores_full_marks_with_the_right_tokenizers():
    pair = (["我喜欢吃苹果"], ["我喜欢吃苹果"])
    assert text_metrics.compute_bleu(*pair, tokenize="zh")["score"] == pytest.approx(100.0)
    assert text_metrics.compute_bleu(*pair, tokenize="13a")["score"] == 0.0  # one unsplit "word"
    assert text_metrics.compute_rouge(*pair, tokenizer="unicode")["rougeL"] == 1.0
    assert text_metrics.compute_rouge(*pair, tokenizer="default")["rougeL"] == 0.0
    assert text_metrics.compute_rouge(["café"], ["cafe"], tokenizer="unicode")["rouge1"] == 0.0


def test_two_references_per_prompt_equal_the_libraries():
    predictions = ["The cat is on the mat.", "Paris is the capital", "我喜欢猫"]
    references = [
        ["There is a cat on the mat.", "The cat is on the mat."],
        ["The capital is Paris."],
        ["我爱猫", "我喜欢狗"],
    ]
    bleu = text_metrics.compute_bleu(predictions, references, tokenize="13a")
    streams = [[group[0] for group in references], [group[1] if len(group) > 1 else None for group in references]]
    assert bleu["score"] == sacrebleu.corpus_bleu(predictions, streams, tokenize="13a").score
    assert bleu["score"] > text_metrics.compute_bleu(predictions, [group[0] for group in references])["score"]
    rouge = text_metrics.compute_rouge(predictions, references, tokenizer="unicode")
    assert rouge == expected_rouge(predictions, references, UnicodeRougeTokenizer())
    per_pair = text_metrics.compute_rouge(predictions, references, aggregate=False)
    assert per_pair["rouge1"][0] == 1.0  # the second reference matches exactly
    assert text_metrics.compute_exact_match(predictions, references)["exact_match"] == pytest.approx(1 / 3)
    assert text_metrics.sentence_bleu_scores(predictions, references, "13a")[0] == pytest.approx(100.0)


def test_rouge_lsum_splits_sentences():
    predictions, references = ["The cat sat. The dog ran far away!"], ["The dog ran far away. The cat sat."]
    result = text_metrics.compute_rouge(predictions, references)
    assert split_sentences(predictions[0]) == "The cat sat.\nThe dog ran far away!"
    assert result == expected_rouge(predictions, references, UnicodeRougeTokenizer())
    assert result["rougeLsum"] == 1.0 > result["rougeL"]
    unsplit = text_metrics.compute_rouge(predictions, references, sentence_split=False)
    assert unsplit["rougeLsum"] == unsplit["rougeL"]


def test_sentence_bleu_per_sample_where_corpus_bleu_is_zero():
    scores = score_texts(["Paris"], [["Paris"]], {"bleu", "rouge", "exact_match"})
    assert scores.metrics["bleu"] == 0.0  # corpus BLEU of one one-word pair (no 2-grams)
    assert scores.per_sample == [
        {
            "rouge1": 1.0,
            "rouge2": 0.0,
            "rougeL": 1.0,
            "rougeLsum": 1.0,
            "bleu": pytest.approx(100.0),
            "exact_match": 1.0,
            "normalized_exact_match": 1.0,
        }
    ]
    assert scores.tokenizers == {"rouge": "unicode", "bleu": "13a"}


@pytest.mark.parametrize(
    ("texts", "script", "tokenizer"),
    [
        (["我喜欢猫", "今天天气很好"], "han", "zh"),
        (["日本語のテキストです"], "japanese", "char"),
        (["ฉันชอบกินข้าว"], "thai", "char"),
        (["Кошка сидит", "مرحبا"], "other", "intl"),
        (["한국어 문장"], "hangul", "intl"),
        (["The periodic table was first published in 1869 by the Russian chemist Менделеев."], "latin", "13a"),
        (["café au lait"], "latin", "13a"),
        (["我用Python写代码"], "han", "zh"),
    ],
)
def test_auto_bleu_tokenizer_follows_the_script(texts, script, tokenizer):
    assert dominant_script(texts) == script
    assert auto_bleu_tokenizer(texts, mecab_available=False) == tokenizer


def test_auto_choices_and_clear_errors(monkeypatch):
    from core.infrastructure.evaluation import text_tokenizers

    assert auto_bleu_tokenizer(["日本語のテキスト"], mecab_available=True) == "ja-mecab"
    assert resolve_bleu_tokenizer("auto", ["我喜欢猫"]) == "zh"
    assert resolve_rouge_tokenizer("auto", ["plain ascii"]) == "default"
    assert resolve_rouge_tokenizer("auto", ["café"]) == "unicode"
    monkeypatch.setattr(text_tokenizers, "mecab_available", lambda: False)
    with pytest.raises(ConfigError, match=r"evaluation\.bleu_tokenizer=ja-mecab needs MeCab"):
        text_metrics.compute_bleu(["日本"], ["日本"], tokenize="ja-mecab")
    with pytest.raises(ConfigError, match=r"evaluation\.rouge_tokenizer='nltk'"):
        text_metrics.compute_rouge(["a"], ["a"], tokenizer="nltk")


def test_settings_choose_the_tokenizers():
    from core.domain.config import settings_from_dict

    settings = settings_from_dict({"evaluation": {"bleu_tokenizer": "auto", "rouge_tokenizer": "default"}})
    assert settings.evaluation.bleu_tokenizer == "auto" and settings.evaluation.rouge_tokenizer == "default"
    assert settings_from_dict({}).evaluation.bleu_tokenizer == "13a"
    with pytest.raises(ConfigError, match="bleu_tokenizer"):
        settings_from_dict({"evaluation": {"bleu_tokenizer": "moses"}})


def test_records_carry_several_references(tmp_path):
    import json

    from core.infrastructure.data.convert import convert_records
    from core.infrastructure.data.readers import read_records

    path = tmp_path / "data.jsonl"
    rows = [
        {"instruction": "Capital of France?", "output": "Paris", "references": ["Paris.", "It is Paris", "Paris"]},
        {"instruction": "Capital of Spain?", "output": "Madrid"},
        {"instruction": "Capital of Italy?", "output": "Rome", "references": "Rome"},
    ]
    path.write_text("\n".join(json.dumps(row) for row in rows), encoding="utf-8")
    outcomes = convert_records(read_records(path), "alpaca")
    first, second = outcomes[0].conversation, outcomes[1].conversation
    assert first.reference_answers == ["Paris", "Paris.", "It is Paris"]
    assert "references" not in first.metadata
    assert second.reference_answers == ["Madrid"] and second.references == []
    assert outcomes[2].conversation is None
    assert "references" in str(outcomes[2].problems[0])
