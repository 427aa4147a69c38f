"""Corpus BLEU (sacreBLEU) as an ``evaluate`` metric module that lives in this repository.

Loaded with ``evaluate.load(<path of this directory>)`` so it works offline. The score is
``sacrebleu.corpus_bleu`` with sacreBLEU's default settings (13a tokenizer unless ``tokenize`` names
another, exponential smoothing), on sacreBLEU's 0-100 scale. A prediction may have several
references: they become sacreBLEU reference streams (padded with None where a prediction has fewer).
"""

import datasets
import evaluate
import sacrebleu

_DESCRIPTION = "Corpus-level BLEU computed with sacreBLEU (0-100), one or more references per prediction."

_KWARGS_DESCRIPTION = """
Args:
    predictions: Generated texts.
    references: Reference texts: one per prediction, or a list of references per prediction.
    tokenize: sacreBLEU tokenizer name (default: sacreBLEU's default, 13a).
    lowercase: Lowercase before scoring (default: False).
Returns:
    score (0-100), counts, totals, precisions, bp, sys_len, ref_len.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Bleu(evaluate.Metric):
    """Corpus BLEU with the sacreBLEU reference implementation."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Post, A Call for Clarity in Reporting BLEU Scores, WMT 2018.",
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Value("string"),
                        "references": datasets.Sequence(datasets.Value("string")),
                    }
                ),
                datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            ],
            codebase_urls=["https://github.com/mjpost/sacrebleu"],
        )

    def _compute(
        self,
        predictions: list[str],
        references: list[str],
        tokenize: str | None = None,
        lowercase: bool = False,
    ) -> dict[str, float | int | list[float] | list[int]]:
        options = {"lowercase": lowercase}
        if tokenize is not None:
            options["tokenize"] = tokenize
        result = sacrebleu.corpus_bleu(list(predictions), reference_streams(references), **options)
        return {
            "score": result.score,
            "counts": list(result.counts),
            "totals": list(result.totals),
            "precisions": list(result.precisions),
            "bp": result.bp,
            "sys_len": result.sys_len,
            "ref_len": result.ref_len,
        }


def reference_streams(references: list) -> list[list[str | None]]:
    """Reference streams for sacreBLEU: stream k holds each prediction's k-th reference (None when absent)."""
    per_prediction = [[reference] if isinstance(reference, str) else list(reference) for reference in references]
    count = max((len(group) for group in per_prediction), default=1)
    return [[group[k] if k < len(group) else None for group in per_prediction] for k in range(count)]
