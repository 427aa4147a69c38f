"""Corpus and per-sample ROUGE / BLEU / exact match for an evaluation, with the tokenizers chosen by the settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.infrastructure.evaluation import text_metrics
from core.infrastructure.evaluation.text_tokenizers import resolve_bleu_tokenizer, resolve_rouge_tokenizer


@dataclass
class TextScores:
    """What :func:`score_texts` computed.

    Attributes:
        metrics: Corpus scores (``rouge1``..``rougeLsum``, ``bleu``, ``bleu_details``, exact match rates).
        per_sample: One ``{"rouge1", "rouge2", "rougeL", "rougeLsum", "bleu"}`` mapping per answer
            (only the requested metrics; sentence BLEU on 0-100).
        tokenizers: The tokenizers used: ``{"bleu": "13a", "rouge": "unicode"}`` (requested metrics only).
        bleu_statistics: Per answer, sacreBLEU's 4 n-gram counts, 4 totals, system and reference
            length (:func:`~core.infrastructure.evaluation.text_metrics.corpus_bleu_from_statistics`).
    """

    metrics: dict[str, Any] = field(default_factory=dict)
    per_sample: list[dict[str, float]] = field(default_factory=list)
    tokenizers: dict[str, str] = field(default_factory=dict)
    bleu_statistics: list[list[int]] = field(default_factory=list)


def score_texts(
    outputs: list[str],
    references: list[list[str]],
    requested: set[str],
    bleu_tokenizer: str = "13a",
    rouge_tokenizer: str = "unicode",
) -> TextScores:
    """Scores the answers against their references (one or more per answer).

    Args:
        outputs: Generated answers.
        references: The acceptable answers of each prompt.
        requested: ``evaluation.metrics`` (``rouge``, ``bleu``, ``exact_match`` are used here).
        bleu_tokenizer: ``evaluation.bleu_tokenizer`` (``auto`` is resolved from the references).
        rouge_tokenizer: ``evaluation.rouge_tokenizer`` (``auto`` is resolved from all the texts).

    Returns:
        Corpus metrics, per-sample scores and the tokenizers used.

    Raises:
        ConfigError: If a tokenizer is unknown or not installed.
    """
    scores = TextScores(per_sample=[{} for _ in outputs])
    all_references = [text for group in references for text in group]
    if "rouge" in requested:
        tokenizer = resolve_rouge_tokenizer(rouge_tokenizer, [*outputs, *all_references])
        per_pair = text_metrics.compute_rouge(outputs, references, tokenizer=tokenizer, aggregate=False)
        for kind, values in per_pair.items():
            scores.metrics[kind] = sum(values) / len(values) if values else 0.0
            for sample, value in zip(scores.per_sample, values, strict=True):
                sample[kind] = value
        scores.tokenizers["rouge"] = tokenizer
    if "bleu" in requested:
        tokenize = resolve_bleu_tokenizer(bleu_tokenizer, all_references)
        bleu = text_metrics.compute_bleu(outputs, references, tokenize=tokenize)
        scores.metrics.update(bleu=bleu["score"], bleu_details=bleu)
        results = text_metrics.sentence_bleu_results(outputs, references, tokenize)
        for sample, result in zip(scores.per_sample, results, strict=True):
            sample["bleu"] = result.score
            scores.bleu_statistics.append([*result.counts, *result.totals, result.sys_len, result.ref_len])
        scores.tokenizers["bleu"] = tokenize
    if "exact_match" in requested:
        scores.metrics.update(text_metrics.compute_exact_match(outputs, references))
        for sample, output, group in zip(scores.per_sample, outputs, references, strict=True):
            sample.update(text_metrics.compute_exact_match([output], [group]))
    return scores
