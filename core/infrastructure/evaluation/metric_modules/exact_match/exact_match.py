"""Exact match and normalized exact match as an ``evaluate`` metric module that lives in this repository.

Normalization lowercases, removes punctuation and collapses whitespace, so ``"Paris."`` and
``" paris"`` match. Both rates are fractions of the pairs in [0, 1]. With several references per
prediction, a prediction matches when it equals any of them.
"""

import re
import string

import datasets
import evaluate

_DESCRIPTION = "Fraction of predictions equal to their reference: verbatim (after stripping) and normalized."

_KWARGS_DESCRIPTION = """
Args:
    predictions: Generated texts.
    references: Reference texts: one per prediction, or a list of references per prediction.
Returns:
    exact_match and normalized_exact_match, fractions in [0, 1].
"""

_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")


def normalize_answer(text: str) -> str:
    """Lowercases, removes ASCII punctuation and collapses whitespace.

    Args:
        text: Any text.

    Returns:
        The normalized text.
    """
    return " ".join(_PUNCTUATION.sub(" ", text.lower()).split())


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ExactMatch(evaluate.Metric):
    """Exact match rate, verbatim and normalized."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
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
        )

    def _compute(self, predictions: list[str], references: list) -> dict[str, float]:
        groups = [[reference] if isinstance(reference, str) else list(reference) for reference in references]
        pairs = list(zip(predictions, groups, strict=True))
        if not pairs:
            return {"exact_match": 0.0, "normalized_exact_match": 0.0}
        exact = sum(any(prediction.strip() == ref.strip() for ref in group) for prediction, group in pairs)
        normalized = sum(
            any(normalize_answer(prediction) == normalize_answer(ref) for ref in group) for prediction, group in pairs
        )
        return {"exact_match": exact / len(pairs), "normalized_exact_match": normalized / len(pairs)}
