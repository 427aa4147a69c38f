"""The compare use case: one report across runs with the base model and a recommendation."""

from __future__ import annotations

import json

import pytest
from evaluation_runs import build_prepared, build_run

from core.application.compare import TECHNIQUES, compare, technique_settings
from core.domain.config import read_yaml
from core.domain.errors import ConfigError
from core.infrastructure.evaluation.comparison import recommend


@pytest.fixture
def two_runs(make_settings, tiny_llama_dir, tmp_path):
    prepared = build_prepared(tiny_llama_dir, tmp_path / "data", test_records=3)
    settings = make_settings(
        **{
            "model.name": str(tiny_llama_dir),
            "data.dataset": str(prepared.directory),
            "evaluation.max_new_tokens": 4,
            "evaluation.max_samples": 3,
        }
    )
    lora = build_run(settings, tiny_llama_dir, prepared, "tiny-lora", "lora")
    prefix = build_run(
        settings,
        tiny_llama_dir,
        prepared,
        "tiny-prefix",
        "prefix",
        metrics={
            "final_eval_loss": 9.9,
            "best_eval_loss": 9.8,
            "peak_memory_mb": 700.0,
            "tokens_per_second": 300.0,
            "train_runtime_s": 5.0,
        },
    )
    return settings, lora, prefix


def test_compare_two_runs_writes_one_report(two_runs, make_settings, tmp_path):
    settings, lora, prefix = two_runs
    output = compare(settings, ["tiny-lora", str(prefix)], output=tmp_path / "report")
    assert output == tmp_path / "report"
    comparison = json.loads((output / "comparison.json").read_text(encoding="utf-8"))
    names = [row["name"] for row in comparison["models"]]
    assert names[1:] == ["tiny-lora", "tiny-prefix"] and names[0].startswith("base (")
    base, lora_row, prefix_row = comparison["models"]
    assert base["is_base"] and base["trainable_parameters"] == 0
    assert lora_row["technique"] == "lora" and prefix_row["technique"] == "prefix"
    assert lora_row["final_eval_loss"] == 9.5 and prefix_row["peak_memory_mb"] == 700.0
    assert 0 < prefix_row["adapter_size_mb"] < lora_row["adapter_size_mb"]
    assert all(row["eval_loss"] is not None and row["checks_pass_rate"] is not None for row in comparison["models"])
    recommendation = comparison["recommendation"]
    assert recommendation["memory"] == "tiny-prefix" and recommendation["speed"] == "tiny-prefix"
    assert recommendation["quality"] in {"tiny-lora", "tiny-prefix"}
    tests = recommendation["paired_tests"]  # the winner against each other model, on the same 3 prompts
    assert set(tests) == set(names) - {recommendation["quality"]}
    assert all(test["metric"] == "checks_pass_rate" and test["prompts"] == 3 for test in tests.values())
    ties = [name for name, test in tests.items() if not test["significant"]]
    assert (f"No significant difference between {recommendation['quality']}" in recommendation["text"]) == bool(ties)
    assert all(set(row["metrics_ci"]) >= {"rougeL", "bleu", "checks_pass_rate"} for row in comparison["models"])
    assert len(comparison["samples"]) == 3
    assert set(comparison["samples"][0]["outputs"]) == set(names)

    markdown = (output / "report.md").read_text(encoding="utf-8")
    assert "## Recommendation" in markdown and recommendation["text"] in markdown
    assert "tiny-lora" in markdown and "tiny-prefix" in markdown and "Peak memory" in markdown
    # strict and loose accuracy at prompt and instruction level, and pass rates by kind per model
    for label in ("Instr. acc. strict", "Instr. acc. loose", "Prompt acc. strict", "Prompt acc. loose"):
        assert label in markdown
    assert all(row["checks_pass_rate_loose"] is not None for row in comparison["models"])
    assert all(row["checks_by_kind"]["by_kind"] for row in comparison["models"])
    assert "## Instruction checks by kind" in markdown and "| Check (strict / loose) |" in markdown
    page = (output / "report.html").read_text(encoding="utf-8")
    assert page.count('class="plotly-graph-div"') == 3  # quality bars, overlaid loss curves, costs
    assert "tiny-lora train" in page and "tiny-prefix eval" in page  # both curves overlaid

    # a second comparison reuses the up-to-date evaluations instead of generating again
    stamp = (lora / "evaluation.json").stat().st_mtime_ns
    compare(settings, ["tiny-lora"], output=tmp_path / "again")
    assert (lora / "evaluation.json").stat().st_mtime_ns == stamp
    # without evaluation settings of its own (compare --runs, no --config) each run is scored with its
    # own config's evaluation settings, so the existing evaluation is still current
    plain = make_settings(**{"model.name": settings.model.name, "data.dataset": settings.data.dataset})
    assert plain.evaluation.max_samples != settings.evaluation.max_samples
    compare(plain, ["tiny-lora"], output=tmp_path / "plain")
    assert (lora / "evaluation.json").stat().st_mtime_ns == stamp


def test_compare_needs_runs(make_settings):
    with pytest.raises(ConfigError, match="--runs"):
        compare(make_settings(), [])


def test_train_all_settings_share_the_budget_and_take_preset_learning_rates(make_settings, tiny_llama_dir):
    from core.application.compare import PRESETS_DIR

    settings = make_settings(
        **{
            "model.name": str(tiny_llama_dir),
            "training.max_steps": 7,
            "training.per_device_batch_size": 3,
            "data.max_seq_length": 99,
            "training.gradient_checkpointing": True,
        }
    )
    variants = {technique: technique_settings(settings, technique, f"run-{technique}") for technique in TECHNIQUES}
    for technique, variant in variants.items():
        preset = read_yaml(PRESETS_DIR / f"smollm2-{technique}.yaml")
        assert variant.technique.name == technique
        assert variant.training.learning_rate == pytest.approx(preset["training"]["learning_rate"])
        assert (variant.training.max_steps, variant.training.per_device_batch_size) == (7, 3)
        assert variant.data.max_seq_length == 99
        assert variant.run_name == f"run-{technique}"
    assert variants["full"].training.learning_rate < variants["lora"].training.learning_rate
    assert variants["lora"].technique.rank == 16
    assert not variants["prefix"].training.gradient_checkpointing  # prefix tuning cannot use it
    assert variants["lora"].training.gradient_checkpointing


def test_recommendation_in_plain_words():
    rows = [
        {
            "name": "base",
            "technique": "base",
            "is_base": True,
            "checks_pass_rate": 0.1,
            "normalized_exact_match": 0.0,
            "eval_loss": 3.0,
        },
        {
            "name": "a",
            "technique": "lora",
            "is_base": False,
            "checks_pass_rate": 0.9,
            "normalized_exact_match": 0.5,
            "eval_loss": 1.2,
            "peak_memory_mb": 900.0,
            "tokens_per_second": 100.0,
            "train_runtime_s": 60.0,
            "adapter_size_mb": 3.0,
        },
        {
            "name": "b",
            "technique": "full",
            "is_base": False,
            "checks_pass_rate": 0.8,
            "normalized_exact_match": 0.6,
            "eval_loss": 1.0,
            "peak_memory_mb": 1500.0,
            "tokens_per_second": 80.0,
            "train_runtime_s": 80.0,
            "adapter_size_mb": 500.0,
        },
        {
            "name": "c",
            "technique": "prefix",
            "is_base": False,
            "checks_pass_rate": 0.05,
            "normalized_exact_match": 0.0,
            "eval_loss": 2.9,
            "peak_memory_mb": 800.0,
            "tokens_per_second": 150.0,
            "train_runtime_s": 40.0,
            "adapter_size_mb": 0.5,
        },
    ]
    result = recommend(rows)
    assert (result["quality"], result["lowest_loss"], result["memory"], result["speed"], result["smallest"]) == (
        "a",
        "b",
        "c",
        "c",
        "c",
    )
    assert result["beats_base"] == {"a": True, "b": True, "c": False}
    assert "Quality: a (lora) wins, passing 90% of the instruction checks" in result["text"]
    assert "against 10% and 0% for the base model" in result["text"]
    assert "Not better than the base model on the checks: c." in result["text"]
