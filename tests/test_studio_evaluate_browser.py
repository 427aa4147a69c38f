# ruff: noqa: F811  (``page`` is the fixture shared with test_studio_browser, imported by name)
"""The Evaluate tab in headless Chromium: pass rates by kind, the per-sample table worst first, sorting by score.

The evaluations are written by this project's own scoring and check code on fixed answers (no model
runs), so the test needs nothing but the studio and the browser.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from test_studio_browser import CHROMIUM, page, wait_until  # noqa: F401 (page: the shared fixture)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.timeout(240),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed (apt-get install chromium)"),
]

PROMPTS = ["Sort: 3, 1, 2", "Capital of France?", "Reverse: a, b", "Say hi"]
REFERENCES = ["1, 2, 3", "Paris", "b, a", "hi"]
CHECKS = [
    {"kind": "regex", "value": r"^[^.]*$"},
    {"kind": "punctuation:no_comma"},
    {"kind": "max_words", "value": 3},  # the old name of length_constraints:number_words
]


def write_evaluation(runs_dir: Path, name: str, outputs: list[str]) -> None:
    """An ``evaluation.json`` scored by the project's own text metrics, checks and intervals."""
    from core.infrastructure.evaluation.checks import run_checks, summarize_checks
    from core.infrastructure.evaluation.intervals import metric_intervals
    from core.infrastructure.evaluation.text_scores import score_texts

    scores = score_texts(outputs, [[reference] for reference in REFERENCES], {"rouge", "bleu", "exact_match"})
    results = [run_checks(CHECKS, output, reference) for output, reference in zip(outputs, REFERENCES, strict=True)]
    summary = summarize_checks(results)
    samples = [
        {
            "index": index,
            "source": f"test.jsonl:{index + 1}",
            "prompt": PROMPTS[index],
            "output": output,
            "reference": REFERENCES[index],
            "scores": scores.per_sample[index],
            "checks": [result.to_dict() for result in results[index]],
            "passed_all_checks": all(result.passed for result in results[index]),
        }
        for index, output in enumerate(outputs)
    ]
    metrics = {**scores.metrics, "checks": summary, "checks_pass_rate": summary["pass_rate"]}
    metrics |= {
        "checks_pass_rate_loose": summary["pass_rate_loose"],
        "checks_all_passed_rate": summary["all_passed_rate"],
    }
    evaluation = {
        "name": name,
        "metrics": metrics,
        "metrics_ci": metric_intervals(samples, scores.bleu_statistics),
        "data": {"split": "test", "generated_samples": len(outputs), "loss_sequences": 0},
        "samples": samples,
    }
    (runs_dir / name).mkdir(parents=True)
    (runs_dir / name / "evaluation.json").write_text(json.dumps(evaluation), encoding="utf-8")


@pytest.fixture
def evaluated_studio(tiny_llama_dir: Path, make_settings):
    from studio.app import close_studio, launch_studio

    settings = make_settings(**{"model.name": str(tiny_llama_dir)})
    runs_dir = Path(settings.paths.runs_dir)
    write_evaluation(runs_dir, "base-tiny", ["3, 1, 2.", "It is Paris, France.", "a, b", "hello there friend"])
    write_evaluation(runs_dir, "tiny-lora", ["1, 2, 3", "Paris", "b, a", "hi"])
    blocks, context = launch_studio(settings, host="127.0.0.1", port=0, block=False)
    try:
        yield blocks
    finally:
        close_studio(blocks, context)


def column(page, elem_id: str, index: int) -> list[str]:
    """The shown cells of one column of a Dataframe (its rows are ``[role=row]`` elements)."""
    script = f"""() => [...document.querySelectorAll('#{elem_id} [role=row]')]
        .map(row => row.querySelectorAll('[role=gridcell], td')[{index}]?.innerText).filter(text => text !== undefined)"""
    return page.evaluate(script)


def test_samples_worst_first_kinds_strict_and_loose_and_sorting(evaluated_studio, page) -> None:
    page.goto(evaluated_studio.local_url)
    page.get_by_role("tab", name="Evaluate").click()
    wait_until(lambda: len(column(page, "evaluation-samples", 5)) == 4, 60, message="per-sample rows")

    # the base model's samples (first in name order), lowest ROUGE-L first
    rouge = [float(value) for value in column(page, "evaluation-samples", 5)]
    assert rouge == sorted(rouge) and rouge[0] < rouge[-1]
    assert (
        column(page, "evaluation-samples", 6)[0].endswith("/3") or "loose" in column(page, "evaluation-samples", 6)[0]
    )

    # pass rates by kind: IFEval instructions (old names read as IFEval's) and the project's regex
    kinds = column(page, "evaluation-kinds", 0)
    assert kinds == ["length_constraints:number_words", "punctuation:no_comma", "regex"]
    assert all(" / " in cell for cell in column(page, "evaluation-kinds", 1))

    # metrics carry intervals
    metrics_text = page.locator("#evaluation-metrics").inner_text()
    assert "Instruction-level accuracy (loose)" in metrics_text and "[" in metrics_text

    # the ⋮ menu of the ROUGE-L header sorts the table, highest first
    header = page.locator("#evaluation-samples [role=columnheader][title='ROUGE-L']")
    header.hover()
    header.locator("button").click(force=True)
    page.get_by_text("Sort descending").first.click()
    time.sleep(0.5)
    rouge_sorted = [float(value) for value in column(page, "evaluation-samples", 5)]
    assert rouge_sorted == sorted(rouge, reverse=True)
