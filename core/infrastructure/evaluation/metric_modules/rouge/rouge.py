"""ROUGE as an ``evaluate`` metric module that lives in this repository (loadable offline).

``evaluate.load("rouge")`` fetches the module from the Hugging Face Hub; this file is loaded with
``evaluate.load(<path of this directory>)`` instead. Scores are computed by the reference
implementation (Google's ``rouge-score``) and averaged over the pairs (F-measure), so they equal
``rouge_scorer.RougeScorer`` exactly; no bootstrap resampling is involved. A prediction may have
several references (``score_multi``: the best-matching reference per ROUGE type), and a custom
tokenizer (any object with ``tokenize(text)``) replaces rouge-score's ``[a-z0-9]`` one.
"""

import datasets
import evaluate
from rouge_score import rouge_scorer

_DESCRIPTION = "ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum F-measures (rouge-score), averaged over the pairs."

_KWARGS_DESCRIPTION = """
Args:
    predictions: Generated texts.
    references: Reference texts: one per prediction, or a list of references per prediction.
    rouge_types: ROUGE variants (default: rouge1, rouge2, rougeL, rougeLsum).
    use_stemmer: Porter-stem tokens before matching (default: False).
    use_aggregator: Average over the pairs (default: True); False returns one score per pair.
    tokenizer: Object with ``tokenize(text) -> list[str]`` (default: rouge-score's tokenizer).
Returns:
    A mapping from ROUGE type to the mean F-measure (or the list of per-pair F-measures).
"""

DEFAULT_ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Rouge(evaluate.Metric):
    """ROUGE F-measures computed with the ``rouge-score`` reference implementation."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Lin, ROUGE: A Package for Automatic Evaluation of Summaries, 2004.",
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
            codebase_urls=["https://github.com/google-research/google-research/tree/master/rouge"],
        )

    def _compute(
        self,
        predictions: list[str],
        references: list[str],
        rouge_types: list[str] | None = None,
        use_stemmer: bool = False,
        use_aggregator: bool = True,
        tokenizer: object | None = None,
    ) -> dict[str, float | list[float]]:
        types = list(rouge_types or DEFAULT_ROUGE_TYPES)
        scorer = rouge_scorer.RougeScorer(types, use_stemmer=use_stemmer, tokenizer=tokenizer)
        per_pair = {rouge_type: [] for rouge_type in types}
        for prediction, reference in zip(predictions, references, strict=True):
            if isinstance(reference, str):
                scores = scorer.score(reference, prediction)
            else:
                scores = scorer.score_multi(list(reference), prediction)
            for rouge_type in types:
                per_pair[rouge_type].append(scores[rouge_type].fmeasure)
        if not use_aggregator:
            return per_pair
        return {rouge_type: (sum(values) / len(values) if values else 0.0) for rouge_type, values in per_pair.items()}
