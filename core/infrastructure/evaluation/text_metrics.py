"""Reference-based text metrics (ROUGE, BLEU, exact match) through ``evaluate``'s module API.

The metric modules live in ``metric_modules/<name>/<name>.py`` in this repository and are loaded
with ``evaluate.load(<local directory>)``, which needs no network (``evaluate.load("rouge")``
would fetch the module from the Hub).
"""

from __future__ import annotations

import statistics
from functools import cache
from pathlib import Path
from typing import Any

METRIC_MODULES_DIR = Path(__file__).resolve().parent / "metric_modules"
METRIC_NAMES = ("rouge", "bleu", "exact_match")


@cache
def load_metric(name: str) -> Any:
    """Loads one of this repository's metric modules with ``evaluate.load``.

    Args:
        name: ``rouge``, ``bleu`` or ``exact_match``.

    Returns:
        The ``evaluate.EvaluationModule`` (kept in memory, no cache files written).

    Raises:
        ValueError: If the metric is unknown.
    """
    import evaluate

    if name not in METRIC_NAMES:
        raise ValueError(f"unknown metric {name!r}; choose one of {list(METRIC_NAMES)}")
    return evaluate.load(str(METRIC_MODULES_DIR / name), keep_in_memory=True)


References = list[str] | list[list[str]]
"""One reference per prediction, or a list of references per prediction."""

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def reference_groups(references: References) -> list[list[str]]:
    """Every prediction's references as a list (a single reference becomes a one-element list).

    Args:
        references: One reference, or a list of references, per prediction.

    Returns:
        A list of references per prediction.
    """
    return [[reference] if isinstance(reference, str) else list(reference) for reference in references]


def _uniform(references: References) -> References:
    """Strings when every prediction has exactly one reference, else lists (one shape for ``evaluate``)."""
    groups = reference_groups(references)
    if all(len(group) == 1 for group in groups):
        return [group[0] for group in groups]
    return groups


def compute_rouge(
    predictions: list[str],
    references: References,
    tokenizer: str = "unicode",
    sentence_split: bool = True,
    aggregate: bool = True,
) -> dict[str, Any]:
    """ROUGE-1/2/L/Lsum F-measures (equal to ``rouge-score`` with the same tokenizer, averaged over the pairs).

    With several references per prediction each score is rouge-score's ``score_multi`` (the best
    reference per ROUGE type). rougeLsum is computed on one sentence per line
    (:func:`~core.infrastructure.evaluation.text_tokenizers.split_sentences`), as rouge-score expects.

    Args:
        predictions: Generated texts.
        references: One reference, or a list of references, per prediction.
        tokenizer: ``unicode``, ``default`` (rouge-score's) or ``auto`` (``evaluation.rouge_tokenizer``).
        sentence_split: Split sentences onto lines before rougeLsum.
        aggregate: Mean over the pairs (True) or one score per pair (False).

    Returns:
        ``{"rouge1", "rouge2", "rougeL", "rougeLsum"}`` in [0, 1] (lists of per-pair scores when not aggregated).

    Raises:
        ConfigError: If the tokenizer name is unknown.
    """
    from core.infrastructure.evaluation.text_tokenizers import resolve_rouge_tokenizer, rouge_tokenizer, split_sentences

    texts = [*predictions, *(text for group in reference_groups(references) for text in group)]
    options = {"tokenizer": rouge_tokenizer(resolve_rouge_tokenizer(tokenizer, texts)), "use_aggregator": aggregate}
    if not predictions:
        return {kind: (0.0 if aggregate else []) for kind in ROUGE_TYPES}
    references = _uniform(references)
    module = load_metric("rouge")
    result = module.compute(
        predictions=predictions, references=references, rouge_types=list(ROUGE_TYPES[:3]), **options
    )
    if sentence_split:
        predictions = [split_sentences(text) for text in predictions]
        references = [
            split_sentences(reference) if isinstance(reference, str) else [split_sentences(text) for text in reference]
            for reference in references
        ]
    result.update(module.compute(predictions=predictions, references=references, rouge_types=["rougeLsum"], **options))
    return result


def compute_bleu(predictions: list[str], references: References, tokenize: str = "13a") -> dict[str, Any]:
    """Corpus BLEU on sacreBLEU's 0-100 scale (equal to ``sacrebleu.corpus_bleu`` with the same tokenizer).

    Args:
        predictions: Generated texts.
        references: One reference, or a list of references, per prediction.
        tokenize: sacreBLEU tokenizer, or ``auto`` (``evaluation.bleu_tokenizer``).

    Returns:
        sacreBLEU's score and its components, with ``tokenize`` (the tokenizer used).

    Raises:
        ConfigError: If the tokenizer is unknown or not installed.
    """
    from core.infrastructure.evaluation.text_tokenizers import resolve_bleu_tokenizer

    groups = reference_groups(references)
    tokenize = resolve_bleu_tokenizer(tokenize, [text for group in groups for text in group])
    if not predictions:
        return {"score": 0.0, "tokenize": tokenize}
    result = load_metric("bleu").compute(predictions=predictions, references=_uniform(references), tokenize=tokenize)
    return {**result, "tokenize": tokenize}


def sentence_bleu_results(predictions: list[str], references: References, tokenize: str) -> list[Any]:
    """``sacrebleu.sentence_bleu`` of each prediction (score and n-gram statistics).

    Args:
        predictions: Generated texts.
        references: One reference, or a list of references, per prediction.
        tokenize: A resolved sacreBLEU tokenizer name (see :func:`compute_bleu`'s ``tokenize``).

    Returns:
        One ``sacrebleu`` BLEUScore per prediction.
    """
    import sacrebleu

    return [
        sacrebleu.sentence_bleu(prediction, group, tokenize=tokenize)
        for prediction, group in zip(predictions, reference_groups(references), strict=True)
    ]


def sentence_bleu_scores(predictions: list[str], references: References, tokenize: str) -> list[float]:
    """Sentence BLEU (0-100) of each prediction: the scores of :func:`sentence_bleu_results`."""
    return [result.score for result in sentence_bleu_results(predictions, references, tokenize)]


def corpus_bleu_from_statistics(statistics_rows: list[list[int]]) -> float:
    """Corpus BLEU (sacreBLEU's defaults) from per-sample ``counts + totals + [sys_len, ref_len]`` rows.

    Corpus BLEU sums these statistics over the samples, so any subset (a bootstrap resample) can be
    scored without tokenizing again.

    Args:
        statistics_rows: Per sample: 4 matching n-gram counts, 4 n-gram totals, system and reference length.

    Returns:
        BLEU on 0-100.
    """
    from sacrebleu.metrics import BLEU

    sums = [sum(column) for column in zip(*statistics_rows, strict=True)]
    return BLEU.compute_bleu(sums[0:4], sums[4:8], sums[8], sums[9], smooth_method="exp").score


def compute_exact_match(predictions: list[str], references: References) -> dict[str, float]:
    """Exact and normalized exact match rates (a prediction matches when it equals any of its references).

    Args:
        predictions: Generated texts.
        references: One reference, or a list of references, per prediction.

    Returns:
        ``{"exact_match", "normalized_exact_match"}`` in [0, 1].
    """
    if not predictions:
        return {"exact_match": 0.0, "normalized_exact_match": 0.0}
    return load_metric("exact_match").compute(predictions=predictions, references=_uniform(references))


def length_statistics(texts: list[str], token_counts: list[int] | None = None) -> dict[str, float]:
    """Length statistics of responses in words (whitespace-separated) and optionally tokens.

    Args:
        texts: The responses.
        token_counts: Token count of each response, when known.

    Returns:
        Mean, median, min and max words (and mean tokens), plus the share of empty responses.
    """
    words = [len(text.split()) for text in texts]
    if not words:
        return {"mean_words": 0.0, "median_words": 0.0, "min_words": 0, "max_words": 0, "empty_fraction": 0.0}
    result: dict[str, float] = {
        "mean_words": statistics.fmean(words),
        "median_words": float(statistics.median(words)),
        "min_words": min(words),
        "max_words": max(words),
        "empty_fraction": sum(1 for text in texts if not text.strip()) / len(texts),
    }
    if token_counts:
        result["mean_tokens"] = statistics.fmean(token_counts)
    return result
