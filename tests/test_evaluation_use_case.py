"""The evaluate use case on tiny-model run directories: evaluation.json, report.md and report.html."""

from __future__ import annotations

import json

import pytest
from evaluation_runs import build_prepared, build_run

from core.application.evaluate import evaluate, settings_for_run
from core.domain.errors import ModelNotAvailableError
from core.domain.manifest import EVALUATION_FILE, RunManifest
from core.domain.report_format import format_value

ROUGE_TYPES = {"rouge1", "rouge2", "rougeL", "rougeLsum"}

METRIC_KEYS = {
    "eval_loss",
    "perplexity",
    "loss_tokens",
    "rouge1",
    "rouge2",
    "rougeL",
    "rougeLsum",
    "bleu",
    "exact_match",
    "normalized_exact_match",
    "checks_pass_rate",
    "checks_all_passed_rate",
    "checks",
    "response_length",
    "generation_seconds",
}


@pytest.fixture
def lora_setup(make_settings, tiny_llama_dir, tmp_path):
    prepared = build_prepared(tiny_llama_dir, tmp_path / "data")
    settings = make_settings(
        **{
            "model.name": str(tiny_llama_dir),
            "data.dataset": str(prepared.directory),
            "evaluation.max_new_tokens": 6,
            "evaluation.max_samples": 4,
            "evaluation.batch_size": 3,
            "evaluation.checks": [{"kind": "max_words", "value": 50}],
        }
    )
    run_dir = build_run(settings, tiny_llama_dir, prepared, "tiny-lora", "lora")
    return settings, run_dir, prepared


def test_evaluate_run_writes_evaluation_and_reports(lora_setup):
    settings, run_dir, prepared = lora_setup
    result = evaluate(settings, run="tiny-lora", show_progress=False)

    stored = json.loads((run_dir / EVALUATION_FILE).read_text(encoding="utf-8"))
    assert set(stored["metrics"]) >= METRIC_KEYS
    assert stored["name"] == "tiny-lora" and stored["technique"] == "lora" and not stored["is_base"]
    assert stored["data"] == {
        "directory": str(prepared.directory),
        "fingerprint": prepared.fingerprint,
        "split": "test",
        "loss_sequences": 4,  # evaluation.max_samples caps the loss records too
        "generated_samples": 4,
    }
    assert result["output_dir"] == str(run_dir)
    samples = stored["samples"]
    assert len(samples) == 4
    assert set(samples[0]) >= {"prompt", "output", "reference", "checks", "passed_all_checks", "messages"}
    assert samples[0]["prompt"].startswith("Sort these numbers")
    assert samples[0]["reference"] == "0, 3, 7"
    # the global check plus the record's two checks, in that order
    words = "length_constraints:number_words"  # max_words, read as the IFEval instruction it stands for
    assert [check["kind"] for check in samples[0]["checks"]] == [words, "regex", words]
    assert stored["metrics"]["checks"]["checks"] == 12
    assert stored["metrics"]["loss_tokens"] > 0 and stored["metrics"]["perplexity"] > 1
    assert {"checks_pass_rate", "checks_all_passed_rate", "rougeL", "bleu", "exact_match"} <= set(stored["metrics_ci"])
    low, high = stored["metrics_ci"]["checks_pass_rate"]
    assert low <= stored["metrics"]["checks_pass_rate"] <= high

    markdown = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "# Evaluation of tiny-lora" in markdown and "ROUGE-L" in markdown and "Perplexity" in markdown
    checks_row = next(
        line for line in markdown.splitlines() if line.startswith("| Instruction-level accuracy (strict)")
    )
    low, high = stored["metrics_ci"]["checks_pass_rate"]
    assert checks_row.endswith(f"| [{format_value(low)}, {format_value(high)}] |")
    assert {"checks_pass_rate_loose", "checks_all_passed_rate_loose"} <= set(stored["metrics_ci"])
    for label in (
        "Instruction-level accuracy (loose)",
        "Prompt-level accuracy (strict)",
        "Prompt-level accuracy (loose)",
    ):
        assert f"| {label} |" in markdown
    # IFEval accuracy over the IFEval instructions, and pass rates by kind, strict and loose
    assert "## IFEval accuracy" in markdown and "| Prompt level (4 prompts) |" in markdown
    assert "| Instruction level (8 instructions) |" in markdown
    assert "| length_constraints:number_words | IFEval | 8 |" in markdown and "| regex | project | 4 |" in markdown
    # the per-sample table: worst ROUGE-L first, with the columns the issue names
    assert "| # | Prompt | Answer | Reference | Sentence BLEU | ROUGE-L | Checks passed |" in markdown
    assert "worst first" in markdown
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "lowest score first" in page and "<th>Sentence BLEU</th><th>ROUGE-L</th><th>Checks passed</th>" in page
    assert page.count('class="plotly-graph-div"') == 3  # metrics, checks by kind, loss curve
    assert "Loss during training" in page
    assert '<script src="http' not in page  # plotly.js is inlined: the report opens offline
    assert "Plotly.newPlot" in page


def test_base_model_evaluation_goes_to_base_directory(lora_setup, tiny_llama_dir):
    settings, run_dir, _prepared = lora_setup
    base = evaluate(settings, base=True, show_progress=False)
    run = evaluate(settings, run=run_dir, show_progress=False)
    base_dir = settings.paths.runs_dir / f"base-{tiny_llama_dir.name}"
    assert base["output_dir"] == str(base_dir)
    assert (base_dir / EVALUATION_FILE).is_file() and (base_dir / "report.html").is_file()
    assert base["is_base"] and base["trainable_parameters"] == 0
    # same held-out tokens, different weights: the adapter was really applied
    assert base["metrics"]["loss_tokens"] == run["metrics"]["loss_tokens"]
    assert base["metrics"]["eval_loss"] != pytest.approx(run["metrics"]["eval_loss"], rel=1e-4)
    assert [sample["prompt"] for sample in base["samples"]] == [sample["prompt"] for sample in run["samples"]]


def test_requested_metrics_only(make_settings, tiny_llama_dir, tmp_path):
    prepared = build_prepared(tiny_llama_dir, tmp_path / "data", test_records=2)
    settings = make_settings(
        **{
            "model.name": str(tiny_llama_dir),
            "data.dataset": str(prepared.directory),
            "evaluation.max_new_tokens": 2,
            "evaluation.metrics": ["rouge", "checks"],
        }
    )
    result = evaluate(settings, show_progress=False)
    assert "rouge1" in result["metrics"] and "checks_pass_rate" in result["metrics"]
    assert not {"eval_loss", "bleu", "exact_match"} & set(result["metrics"])


def test_several_references_and_per_sample_scores_end_to_end(make_settings, tiny_llama_dir, tmp_path):
    import sacrebleu

    options = {"evaluation.max_new_tokens": 4, "evaluation.metrics": ["rouge", "bleu", "exact_match"]}
    single = build_prepared(tiny_llama_dir, tmp_path / "single", test_records=2)
    settings = make_settings(**{"model.name": str(tiny_llama_dir), "data.dataset": str(single.directory), **options})
    first = evaluate(settings, show_progress=False)
    outputs = [sample["output"] for sample in first["samples"]]
    assert first["text_tokenizers"] == {"rouge": "unicode", "bleu": "13a"}
    for sample in first["samples"]:
        assert "references" not in sample
        bleu = sacrebleu.sentence_bleu(sample["output"], [sample["reference"]]).score
        assert sample["scores"]["bleu"] == bleu and set(sample["scores"]) == {
            "bleu",
            "exact_match",
            "normalized_exact_match",
            *ROUGE_TYPES,
        }
    assert first["metrics"]["rougeL"] == sum(sample["scores"]["rougeL"] for sample in first["samples"]) / 2
    assert set(first["metrics_ci"]) == {"bleu", "exact_match", "normalized_exact_match", *ROUGE_TYPES}
    for metric, (low, high) in first["metrics_ci"].items():
        assert low <= first["metrics"][metric] <= high

    # the model's own answers as second references: exact match becomes 1, scores use both references
    multi = build_prepared(tiny_llama_dir, tmp_path / "multi", test_records=2, test_references=[[o] for o in outputs])
    settings = make_settings(**{"model.name": str(tiny_llama_dir), "data.dataset": str(multi.directory), **options})
    second = evaluate(settings, show_progress=False)
    assert [sample["output"] for sample in second["samples"]] == outputs
    reference_sets = [[sample["reference"], output] for sample, output in zip(first["samples"], outputs, strict=True)]
    assert [sample["references"] for sample in second["samples"]] == reference_sets
    assert second["metrics"]["exact_match"] == 1.0 and first["metrics"]["exact_match"] == 0.0
    streams = [[group[0] for group in reference_sets], [group[1] for group in reference_sets]]
    assert second["metrics"]["bleu"] == sacrebleu.corpus_bleu(outputs, streams).score
    for sample, group in zip(second["samples"], reference_sets, strict=True):
        assert sample["scores"]["bleu"] == sacrebleu.sentence_bleu(sample["output"], group).score


def test_missing_bleu_tokenizer_is_refused_before_generation(make_settings, tiny_llama_dir, tmp_path, monkeypatch):
    from core.domain.errors import ConfigError
    from core.infrastructure.evaluation import generation, text_tokenizers

    prepared = build_prepared(tiny_llama_dir, tmp_path / "data", test_records=2)
    options = {"model.name": str(tiny_llama_dir), "data.dataset": str(prepared.directory)}
    settings = make_settings(**options, **{"evaluation.bleu_tokenizer": "ja-mecab"})
    monkeypatch.setattr(text_tokenizers, "mecab_available", lambda: False)
    monkeypatch.setattr(generation, "generate_answers", lambda *args, **kwargs: pytest.fail("generated"))
    with pytest.raises(ConfigError, match=r"evaluation\.bleu_tokenizer=ja-mecab needs MeCab"):
        evaluate(settings, show_progress=False)


def test_unknown_run_is_a_clear_error(make_settings):
    with pytest.raises(ModelNotAvailableError, match="run 'nope' not found"):
        evaluate(make_settings(), run="nope")


def test_run_settings_keep_training_data_and_current_evaluation(lora_setup):
    settings, run_dir, _prepared = lora_setup
    manifest = RunManifest.load(run_dir)
    manifest.config["data"]["max_seq_length"] = 77
    run_settings = settings_for_run(settings, manifest)
    assert run_settings.data.max_seq_length == 77
    assert run_settings.technique.name == "lora"
    assert run_settings.evaluation == settings.evaluation
    assert run_settings.paths == settings.paths


def test_cli_evaluate(lora_setup, tmp_path):
    from core.cli import main

    settings, run_dir, _prepared = lora_setup
    (run_dir / EVALUATION_FILE).unlink(missing_ok=True)
    overrides = [
        f"paths.runs_dir={settings.paths.runs_dir}",
        f"paths.data_dir={settings.paths.data_dir}",
        f"paths.model_cache={settings.paths.model_cache}",
        f"model.name={settings.model.name}",
        "evaluation.max_new_tokens=2",
        "evaluation.max_samples=2",
    ]
    assert main(["evaluate", "--run", "tiny-lora", *overrides]) == 0
    stored = json.loads((run_dir / EVALUATION_FILE).read_text(encoding="utf-8"))
    assert stored["data"]["generated_samples"] == 2


def test_max_samples_caps_the_loss_records(lora_setup):
    settings, run_dir, _prepared = lora_setup
    capped = settings.model_copy(
        update={"evaluation": settings.evaluation.model_copy(update={"max_samples": 3, "metrics": ["loss"]})}
    )
    evaluate(capped, run="tiny-lora", show_progress=False)
    stored = json.loads((run_dir / EVALUATION_FILE).read_text(encoding="utf-8"))
    assert stored["data"]["loss_sequences"] == 3
    assert stored["data"]["generated_samples"] == 3
    three_records = stored["metrics"]["loss_tokens"]
    everything = settings.model_copy(
        update={"evaluation": settings.evaluation.model_copy(update={"max_samples": None, "metrics": ["loss"]})}
    )
    evaluate(everything, run="tiny-lora", show_progress=False)
    stored = json.loads((run_dir / EVALUATION_FILE).read_text(encoding="utf-8"))
    assert stored["data"]["loss_sequences"] == 6 and stored["metrics"]["loss_tokens"] > three_records
