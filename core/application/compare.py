"""Use case ``compare``: one side-by-side report across runs (optionally training all four techniques first).

1. With ``train_all``: train full, LoRA, QLoRA and Prefix Tuning on the same data with an equal
   budget (same steps, batch size and sequence length; each technique's learning rate from its
   preset ``examples/configs/smollm2-<technique>.yaml``). Each run trains in its own process so
   its peak memory is its own.
2. Evaluate every run and the base model on the same held-out samples (an up-to-date
   ``evaluation.json`` is reused).
3. Write ``comparison.json``, ``report.md`` and ``report.html`` with the recommendation into
   ``runs_dir/comparisons/<timestamp>/`` (or ``output``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loguru import logger

from core.application.evaluate import base_output_dir, evaluate, find_run_dir, settings_for_run
from core.domain.config import Settings, load_settings, read_yaml, settings_from_dict
from core.domain.errors import ConfigError
from core.domain.manifest import EVALUATION_FILE, RunManifest, read_metrics
from core.domain.techniques import technique_names, technique_spec

TECHNIQUES = technique_names()
"""Techniques trained by ``--train-all``, in report order (every registered technique)."""

PRESETS_DIR = Path(__file__).resolve().parents[2] / "examples" / "configs"


def compare(
    settings: Settings,
    runs: Sequence[str | Path],
    train_all: bool = False,
    output: str | Path | None = None,
    techniques: Sequence[str] = TECHNIQUES,
    isolate_training: bool = True,
) -> Path:
    """Compares runs (and the base model) in one report.

    Args:
        settings: Settings; with ``train_all`` they define the shared data and budget.
        runs: Run names or directories to compare (added after the trained ones).
        train_all: Train every technique in ``techniques`` first.
        output: Report directory (default: ``runs_dir/comparisons/<timestamp>``).
        techniques: Techniques trained by ``train_all``.
        isolate_training: Train each technique in a child process (honest peak memory per run);
            False trains in this process (tests with tiny models).

    Returns:
        The report directory.

    Raises:
        ConfigError: If there is nothing to compare.
    """
    from core.infrastructure.evaluation.comparison import side_by_side_samples
    from core.infrastructure.evaluation.comparison_report import write_comparison_report

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    output_dir = Path(output) if output else Path(settings.paths.runs_dir) / "comparisons" / stamp
    run_dirs: list[Path] = []
    failures: list[str] = []
    budget: dict[str, Any] = {}
    if train_all:
        budget = _budget(settings)
        trained, failures = _train_all(settings, techniques, stamp, isolate_training)
        run_dirs.extend(trained)
    run_dirs.extend(find_run_dir(settings, run) for run in runs)
    if not run_dirs:
        raise ConfigError("compare: name runs with --runs A B ... or pass --train-all" + _failure_note(failures))

    manifests = {run_dir: RunManifest.load(run_dir) for run_dir in run_dirs}
    rows, evaluations, curves = _evaluate_all(settings, manifests, failures)
    recommendation = _recommendation(rows, evaluations)
    samples = side_by_side_samples(evaluations)
    rows[0]["name"] = next(iter(evaluations))  # the base row is named as in the sample table
    comparison = {
        "created_at": datetime.now(UTC).isoformat(),
        "train_all": train_all,
        "budget": budget,
        "models": rows,
        "recommendation": recommendation,
        "samples": samples,
        "failures": failures,
        "runs": {manifest.run_name: str(run_dir) for run_dir, manifest in manifests.items()},
    }
    write_comparison_report(comparison, output_dir, curves)
    logger.info("Recommendation: {}", recommendation["text"])
    logger.info("Comparison report: {}", output_dir / "report.html")
    return output_dir


def _recommendation(rows: list[dict[str, Any]], evaluations: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The recommendation, with paired tests of the quality winner against every other model on the same prompts."""
    from core.infrastructure.evaluation.comparison import paired_tests, recommend, significance_sentence

    recommendation = recommend(rows)
    if recommendation.get("quality"):
        tests = paired_tests(evaluations, recommendation["quality"])
        recommendation["paired_tests"] = tests
        sentence = significance_sentence(recommendation["quality"], tests)
        recommendation["text"] = " ".join(filter(None, [recommendation["text"], sentence]))
    return recommendation


def _evaluate_all(
    settings: Settings, manifests: dict[Path, RunManifest], failures: list[str]
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], dict[str, list[dict]]]:
    """Evaluates the base model, then each run; a run whose evaluation fails is noted in ``failures``.

    Args:
        settings: Settings.
        manifests: Run directory -> its manifest (the first run names the base model).
        failures: Lines appended for runs that could not be evaluated.

    Returns:
        The comparison rows (base model first), evaluations by name and each run's metrics rows.
    """
    from core.infrastructure.evaluation.comparison import model_row

    base_evaluation = _base_evaluation(settings, next(iter(manifests.values())))
    rows = [model_row(base_evaluation, None, None)]
    evaluations = {f"base ({base_evaluation['name']})": base_evaluation}
    curves: dict[str, list[dict]] = {}
    for run_dir, manifest in manifests.items():
        try:
            evaluation = _run_evaluation(settings, run_dir, manifest)
        except Exception as error:  # one broken run must not lose the others' report
            logger.exception("Evaluating {} failed", run_dir.name)
            failures.append(f"{run_dir.name}: evaluation failed: {type(error).__name__}: {error}")
            continue
        rows.append(model_row(evaluation, manifest, run_dir))
        evaluations[manifest.run_name] = evaluation
        curves[manifest.run_name] = read_metrics(run_dir)
    return rows, evaluations, curves


def _failure_note(failures: list[str]) -> str:
    return f" (training failed: {'; '.join(failures)})" if failures else ""


def _budget(settings: Settings) -> dict[str, Any]:
    training = settings.training
    return {
        "max_steps": training.max_steps,
        "num_epochs": training.num_epochs if training.max_steps < 0 else None,
        "per_device_batch_size": training.per_device_batch_size,
        "gradient_accumulation_steps": training.gradient_accumulation_steps,
        "max_seq_length": settings.data.max_seq_length,
        "seed": training.seed,
        "model": settings.model.name,
        "dataset": settings.data.dataset_label(),
    }


def technique_settings(settings: Settings, technique: str, run_name: str) -> Settings:
    """Settings for one technique of ``--train-all``: the shared budget plus the technique's preset.

    The technique section and learning rate come from ``examples/configs/smollm2-<technique>.yaml``;
    everything else (model, data, steps, batch size, sequence length, seed) from ``settings``.

    Args:
        settings: The shared settings.
        technique: ``full``, ``lora``, ``qlora`` or ``prefix``.
        run_name: Name of the run to create.

    Returns:
        The validated settings.
    """
    preset_file = PRESETS_DIR / f"smollm2-{technique}.yaml"
    preset = read_yaml(preset_file) if preset_file.is_file() else {}
    technique_section = preset.get("technique") or {"name": technique}
    if isinstance(technique_section, str):
        technique_section = {"name": technique_section}
    spec = technique_spec(technique)
    learning_rate = (preset.get("training") or {}).get("learning_rate", spec.learning_rate)
    data = settings.model_dump()
    data["technique"] = {**technique_section, "name": technique}
    data["training"] = {**data["training"], "learning_rate": float(learning_rate), "resume": "never"}
    if not spec.traits.supports_gradient_checkpointing:
        data["training"]["gradient_checkpointing"] = False
    if not spec.traits.supports_packing and data["training"]["packing"] == "on":
        data["training"]["packing"] = "auto"
    data["run_name"] = run_name
    return settings_from_dict(data)


def _train_all(
    settings: Settings, techniques: Sequence[str], stamp: str, isolate: bool
) -> tuple[list[Path], list[str]]:
    run_dirs, failures = [], []
    for technique in techniques:
        run_name = f"compare-{stamp}-{technique}"
        try:
            run_settings = technique_settings(settings, technique, run_name)
        except ConfigError as error:
            failures.append(f"{technique}: {error}")
            logger.warning("Skipping {}: {}", technique, error)
            continue
        logger.info(
            "Training {} ({} steps, batch {}, learning rate {})",
            run_name,
            run_settings.training.max_steps,
            run_settings.training.per_device_batch_size,
            run_settings.training.learning_rate,
        )
        error = _train_isolated(run_settings) if isolate else _train_here(run_settings)
        run_dir = Path(settings.paths.runs_dir) / run_name
        if error is None and (run_dir / "manifest.json").is_file():
            run_dirs.append(run_dir)
        else:
            failures.append(f"{technique}: training failed: {error or 'no manifest written'}")
            logger.error("Training {} failed: {}", technique, error)
    return run_dirs, failures


def _train_here(settings: Settings) -> str | None:
    from core.application.train import train

    try:
        train(settings)
    except Exception as error:
        logger.exception("Training {} failed", settings.run_name)
        return f"{type(error).__name__}: {error}"
    return None


def _settings_json(settings: Settings) -> str:
    data = settings.model_dump(mode="json")
    for section, field in (("monitoring", "wandb_api_key"), ("serve", "api_key")):
        secret = getattr(getattr(settings, section), field)
        data[section][field] = secret.get_secret_value() if secret is not None else None
    return json.dumps(data)


def train_in_child(settings_json: str, log_level: str) -> None:
    """Entry point of the child process that trains one technique.

    Args:
        settings_json: The run's settings as JSON.
        log_level: Log level of the child's stderr sink.
    """
    from core.application.train import train
    from core.logging_setup import configure_logging

    configure_logging(log_level)
    train(settings_from_dict(json.loads(settings_json)))


def _train_isolated(settings: Settings) -> str | None:
    context = multiprocessing.get_context("spawn")
    process = context.Process(
        target=train_in_child, args=(_settings_json(settings), settings.log_level), name=f"train-{settings.run_name}"
    )
    process.start()
    process.join()
    if process.exitcode != 0:
        manifest_file = Path(settings.paths.runs_dir) / str(settings.run_name) / "manifest.json"
        reason = RunManifest.load(manifest_file.parent).error if manifest_file.is_file() else None
        return reason or f"training process exited with code {process.exitcode}"
    return None


def _is_current(evaluation: dict[str, Any], settings: Settings, fingerprint: str | None, updated: str | None) -> bool:
    return (
        evaluation.get("evaluation_settings") == settings.evaluation.model_dump(mode="json")
        and fingerprint is not None
        and evaluation.get("data", {}).get("fingerprint") == fingerprint
        and evaluation.get("run_updated_at") == updated
    )


def _read_evaluation(directory: Path) -> dict[str, Any] | None:
    path = directory / EVALUATION_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


def _run_evaluation(settings: Settings, run_dir: Path, manifest: RunManifest) -> dict[str, Any]:
    existing = _read_evaluation(run_dir)
    effective = settings_for_run(settings, manifest)  # the evaluation settings evaluate() would use
    if existing and _is_current(existing, effective, manifest.data_fingerprint, manifest.updated_at):
        logger.info("Reusing the up-to-date evaluation of {}", manifest.run_name)
        return existing
    return evaluate(settings, run=run_dir)


def _base_evaluation(settings: Settings, manifest: RunManifest) -> dict[str, Any]:
    base_settings = settings_for_run(settings, manifest)
    existing = _read_evaluation(base_output_dir(settings, base_settings.model.name))
    if existing and _is_current(existing, base_settings, manifest.data_fingerprint, None):
        logger.info("Reusing the up-to-date evaluation of the base model {}", base_settings.model.name)
        return existing
    return evaluate(base_settings, base=True)


def run(arguments: argparse.Namespace) -> int:
    """CLI entry point: ``finetune-studio compare --runs A B ... | --train-all [--output DIR]``.

    Args:
        arguments: Parsed arguments.

    Returns:
        0 on success.
    """
    settings = load_settings(arguments.config, arguments.overrides)
    output_dir = compare(
        settings,
        runs=list(getattr(arguments, "runs", []) or []),
        train_all=bool(getattr(arguments, "train_all", False)),
        output=getattr(arguments, "output", None),
    )
    logger.info("Wrote {}", output_dir)
    return 0
