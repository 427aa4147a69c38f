"""Use case ``evaluate``: score a run (or the base model) on the held-out split and write a report.

1. Load the run's adapter or model (or the base model) exactly as inference does.
2. Loss and perplexity over the response tokens of up to ``evaluation.max_samples`` held-out sequences
   (token-weighted; the same cap as the generations).
3. Generate answers for up to ``evaluation.max_samples`` held-out records (batched, greedy).
4. ROUGE, BLEU, exact match (corpus and per sample, against every reference of a record, with the
   tokenizers ``evaluation.bleu_tokenizer`` / ``rouge_tokenizer`` choose), response lengths and the
   instruction checks of each record; 95 % bootstrap intervals over the prompts (seeded) for each
   rate and score.
5. Write ``evaluation.json``, ``report.md`` and ``report.html`` into the run directory
   (``runs/base-<model>/`` for the base model).
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loguru import logger

from core.domain.config import Settings, load_settings, settings_from_dict
from core.domain.errors import ModelNotAvailableError
from core.domain.manifest import EVALUATION_FILE, MANIFEST_FILE, RunManifest, read_metrics, write_json_atomic
from core.domain.records import Conversation
from core.domain.settings_sections import CheckSpec

HELD_OUT_SPLITS = ("test", "validation")
"""Splits evaluated, in order of preference (validation when the data has no test split)."""


def evaluate(
    settings: Settings,
    run: str | Path | None = None,
    base: bool = False,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Evaluates a run or the base model and writes ``evaluation.json`` and the reports.

    Args:
        settings: Settings; ``evaluation`` and ``paths`` are taken from here, the data and model
            settings from the run's own stored configuration.
        run: Run name or run directory; None (or ``base=True``) evaluates the base model
            named by ``settings.model.name``.
        base: Evaluate the base model.
        show_progress: Show progress bars.

    Returns:
        The evaluation (the contents of ``evaluation.json``), with ``output_dir`` added.

    Raises:
        ModelNotAvailableError: If the run does not exist or has no final model.
    """
    from core.infrastructure.evaluation.evaluation_report import write_evaluation_report
    from core.infrastructure.inference.loading import load_for_inference

    manifest: RunManifest | None = None
    if run is not None and not base:
        run_dir = find_run_dir(settings, run)
        manifest = RunManifest.load(run_dir)
        data_settings = settings_for_run(settings, manifest)
        loaded = load_for_inference(run_dir, settings)
        output_dir = run_dir
    else:
        data_settings = settings
        loaded = load_for_inference(settings.model.name, settings)
        output_dir = base_output_dir(settings, loaded.name)
    logger.info("Evaluating {} ({})", loaded.name, loaded.technique or "base model")

    prepared = _prepared_data(data_settings, manifest)
    split = next((name for name in HELD_OUT_SPLITS if prepared.conversations(name)), HELD_OUT_SPLITS[0])
    evaluation = evaluate_loaded(loaded, prepared, split, data_settings, show_progress=show_progress)
    evaluation.update(
        name=loaded.name,
        run_dir=str(output_dir) if manifest else None,
        is_base=manifest is None,
        technique=loaded.technique,
        base_model=(manifest.config.get("model", {}).get("name") if manifest else loaded.name),
        run_updated_at=manifest.updated_at if manifest else None,
        trainable_parameters=manifest.trainable_parameters if manifest else 0,
        total_parameters=manifest.total_parameters if manifest else None,
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(output_dir / EVALUATION_FILE, evaluation)
    write_evaluation_report(evaluation, output_dir, read_metrics(output_dir) if manifest else [])
    _log_summary(evaluation)
    logger.info("Wrote {} and the reports into {}", EVALUATION_FILE, output_dir)
    return {**evaluation, "output_dir": str(output_dir)}


def evaluate_loaded(
    loaded: Any,
    prepared: Any,
    split: str,
    settings: Settings,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Computes every requested metric for a loaded model on one split of a prepared dataset.

    Args:
        loaded: A :class:`~core.infrastructure.inference.loading.LoadedModel`.
        prepared: The :class:`~core.infrastructure.data.prepared.PreparedData`.
        split: The split to evaluate.
        settings: Settings (``evaluation`` section; ``training.eval_batch_size`` for the loss).
        show_progress: Show progress bars.

    Returns:
        The evaluation: ``metrics``, ``samples`` (with per-sample ``scores``), ``data``,
        ``evaluation_settings``, ``text_tokenizers`` (the BLEU and ROUGE tokenizers used), ``metrics_ci``
        (95 % bootstrap intervals over the prompts, seeded, per rate and score), ``created_at``.

    Raises:
        ConfigError: If ``evaluation.bleu_tokenizer`` names a tokenizer that is not installed.
    """
    from core.infrastructure.data.tool_rendering import template_messages
    from core.infrastructure.evaluation.generation import generate_answers
    from core.infrastructure.evaluation.intervals import metric_intervals
    from core.infrastructure.evaluation.text_tokenizers import resolve_bleu_tokenizer

    requested = set(settings.evaluation.metrics)
    if "bleu" in requested:  # a tokenizer that is not installed fails before any generation, not after
        resolve_bleu_tokenizer(settings.evaluation.bleu_tokenizer, [])
    rows = prepared.tokenized(split).to_list()[: settings.evaluation.max_samples]  # the cap applies to loss too
    metrics = _loss_metrics(loaded, rows, settings, show_progress) if requested & {"loss", "perplexity"} else {}
    conversations = prepared.conversations(split)[: settings.evaluation.max_samples]
    template = loaded.tokenizer.chat_template
    prompts = [
        template_messages(conversation.prompt_messages, template, conversation.tools) for conversation in conversations
    ]
    generation = generate_answers(loaded, prompts, settings.evaluation, show_progress=show_progress)
    text_scores = _text_metrics(requested, generation, conversations, settings)
    metrics.update(text_scores.metrics)
    check_results = _check_results(settings, conversations, generation.outputs) if "checks" in requested else []
    metrics.update(_check_metrics(check_results))
    samples = _samples(conversations, prompts, generation, check_results, text_scores.per_sample)
    return {
        "created_at": datetime.now(UTC).isoformat(),
        "metrics": metrics,
        "data": {
            "directory": str(prepared.directory),
            "fingerprint": prepared.fingerprint,
            "split": split,
            "loss_sequences": len(rows),
            "generated_samples": len(samples),
        },
        "evaluation_settings": settings.evaluation.model_dump(mode="json"),
        "text_tokenizers": text_scores.tokenizers,
        "metrics_ci": metric_intervals(samples, text_scores.bleu_statistics),
        "samples": samples,
    }


def _loss_metrics(loaded: Any, rows: list[dict[str, Any]], settings: Settings, show_progress: bool) -> dict[str, Any]:
    """Masked response loss and perplexity on the tokenized rows (padding-free batches)."""
    from core.infrastructure.evaluation.loss import response_loss

    pad_id = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    with loaded.activated() as module:
        loss = response_loss(module, rows, settings.training.eval_batch_size, pad_id, show_progress)
    return {"eval_loss": loss.loss, "perplexity": loss.perplexity, "loss_tokens": loss.tokens}


def _text_metrics(requested: set[str], generation: Any, conversations: list[Conversation], settings: Settings) -> Any:
    """Generation speed, lengths, and the requested ROUGE / BLEU / exact-match scores (corpus and per sample)."""
    from core.infrastructure.evaluation import text_metrics
    from core.infrastructure.evaluation.text_scores import score_texts

    outputs = generation.outputs
    scores = score_texts(
        outputs,
        [conversation.reference_answers for conversation in conversations],
        requested,
        bleu_tokenizer=settings.evaluation.bleu_tokenizer,
        rouge_tokenizer=settings.evaluation.rouge_tokenizer,
    )
    scores.metrics = {
        "generation_seconds": generation.seconds,
        "generation_tokens_per_second": generation.tokens_per_second,
        "response_length": text_metrics.length_statistics(outputs, generation.output_tokens),
        "reference_length": text_metrics.length_statistics([conversation.reference for conversation in conversations]),
        **scores.metrics,
    }
    return scores


def _check_results(settings: Settings, conversations: list[Conversation], outputs: list[str]) -> list[Any]:
    """Each answer's instruction checks: the evaluation's global checks plus the record's own."""
    from core.infrastructure.evaluation.checks import run_checks

    global_checks = list(settings.evaluation.checks)
    return [
        run_checks(
            [*global_checks, *_record_checks(conversation)], output, conversation.reference, _prompt(conversation)
        )
        for conversation, output in zip(conversations, outputs, strict=True)
    ]


def _prompt(conversation: Conversation) -> str:
    """The last prompt message of a conversation (what the answer responds to)."""
    return conversation.prompt_messages[-1].content if conversation.prompt_messages else ""


def _check_metrics(check_results: list[Any]) -> dict[str, Any]:
    """The checks summary and its pass rates (nothing when no check ran)."""
    if not check_results:
        return {}
    from core.infrastructure.evaluation.checks import summarize_checks

    summary = summarize_checks(check_results)
    return {
        "checks": summary,
        "checks_pass_rate": summary["pass_rate"],
        "checks_all_passed_rate": summary["all_passed_rate"],
        "checks_pass_rate_loose": summary["pass_rate_loose"],
        "checks_all_passed_rate_loose": summary["all_passed_rate_loose"],
    }


def _samples(
    conversations: list[Conversation],
    prompts: list[Any],
    generation: Any,
    check_results: list[Any],
    scores: list[dict[str, float]],
) -> list[dict[str, Any]]:
    """One row per generated answer: prompt, output, reference(s), tokens, per-sample scores and check results."""
    samples = []
    for index, (conversation, output) in enumerate(zip(conversations, generation.outputs, strict=True)):
        results = [result.to_dict() for result in check_results[index]] if check_results else []
        samples.append(
            {
                "index": index,
                "source": conversation.source,
                "prompt": _prompt(conversation),
                "messages": prompts[index],
                "output": output,
                "reference": conversation.reference,
                **({"references": conversation.reference_answers} if conversation.references else {}),
                "output_tokens": generation.output_tokens[index],
                "scores": scores[index],
                "checks": results,
                "passed_all_checks": all(result["passed"] for result in results) if results else None,
                "passed_all_checks_loose": all(result["passed_loose"] for result in results) if results else None,
            }
        )
    return samples


def _record_checks(conversation: Conversation) -> list[CheckSpec]:
    checks = []
    for raw in conversation.checks:
        try:
            checks.append(CheckSpec.model_validate(raw))
        except ValueError as error:
            logger.warning("{}: ignoring invalid check {}: {}", conversation.source, raw, error)
    return checks


def find_run_dir(settings: Settings, run: str | Path) -> Path:
    """Finds a run directory from a run name or a path.

    Args:
        settings: Settings (``paths.runs_dir``).
        run: Run name or directory.

    Returns:
        The run directory.

    Raises:
        ModelNotAvailableError: If no run directory with a manifest matches.
    """
    candidates = [Path(run), Path(settings.paths.runs_dir) / str(run)]
    for candidate in candidates:
        if (candidate / MANIFEST_FILE).is_file():
            return candidate
    raise ModelNotAvailableError(
        f"run {str(run)!r} not found: no {MANIFEST_FILE} in {candidates[0]} or {candidates[1]}; "
        "train it first or name an existing run"
    )


def settings_for_run(settings: Settings, manifest: RunManifest) -> Settings:
    """The settings a run was trained with, with this session's paths and evaluation settings.

    Evaluation settings are the run's own (its preset's ``evaluation.max_samples``...), overridden
    only by the evaluation fields this session sets (``--config``, environment, ``key=value``), so
    ``evaluate --run R`` alone scores R as its preset would.

    Args:
        settings: Current settings.
        manifest: The run's manifest.

    Returns:
        Settings whose model and data sections match the run's training.
    """
    if not manifest.config:
        return settings
    stored = dict(manifest.config)
    current = settings.model_dump()
    for section in ("paths", "monitoring", "serve", "studio", "hub"):
        stored[section] = current[section]
    chosen = settings.evaluation.model_dump(include=settings.evaluation.model_fields_set)
    stored["evaluation"] = {**(stored.get("evaluation") or {}), **chosen}
    return settings_from_dict(stored)


def base_output_dir(settings: Settings, model_name: str) -> Path:
    """Directory of a base model's evaluation: ``runs_dir/base-<model-name>``.

    Args:
        settings: Settings (``paths.runs_dir``).
        model_name: Display name of the base model (catalog name, Hub id or path).

    Returns:
        The directory.
    """
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(str(model_name)).name).strip("-").lower() or "model"
    return Path(settings.paths.runs_dir) / f"base-{slug}"


def _prepared_data(settings: Settings, manifest: RunManifest | None) -> Any:
    from core.infrastructure.data.prepared import PREPARED_FILE, load_prepared

    named = Path(settings.data.dataset).expanduser()
    if not settings.data.datasets and (named / PREPARED_FILE).is_file():  # a prepared directory (as training accepts)
        return load_prepared(named)
    if manifest is not None and manifest.data_fingerprint:
        directory = Path(settings.paths.data_dir) / "prepared" / manifest.data_fingerprint
        if (directory / PREPARED_FILE).is_file():
            return load_prepared(directory)
    from core.application.prepare_data import ensure_prepared

    return ensure_prepared(settings)


def _log_summary(evaluation: dict[str, Any]) -> None:
    from core.domain.evaluation_metrics import metric_rows
    from core.domain.report_format import format_value

    for label, value in metric_rows(evaluation["metrics"]):
        logger.info("{:<28} {}", label, format_value(value))


def run(arguments: argparse.Namespace) -> int:
    """CLI entry point: ``finetune-studio evaluate [--run R] [--base]``.

    Args:
        arguments: Parsed arguments (``--config``, overrides, ``--run``, ``--base``).

    Returns:
        0 on success.
    """
    settings = load_settings(arguments.config, arguments.overrides)
    evaluation = evaluate(settings, run=getattr(arguments, "run", None), base=bool(getattr(arguments, "base", False)))
    logger.info("Report: {}", Path(evaluation["output_dir"]) / "report.html")
    return 0
