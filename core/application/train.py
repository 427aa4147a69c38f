"""Use case ``train``: settings and a prepared dataset in, a run directory out.

Reads top to bottom: open the run -> resolve the model -> prepare data -> pick the checkpoint to
resume -> load and prepare the model for the technique -> fit (step-0 evaluation, metrics,
checkpoints, stop requests) -> save ``final/`` with tokenizer and chat template -> manifest.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import os
import platform
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loguru import logger

from core.application.run_start import (
    checkpoint_step_of,
    checkpoint_to_resume,
    completed_before,
    keep_completed_outputs,
)
from core.domain.config import Settings, load_settings
from core.domain.errors import CheckpointError
from core.domain.manifest import (
    CHAT_TEMPLATE_FILE,
    FINAL_DIR,
    LOG_FILE,
    MANIFEST_FILE,
    STOP_REQUEST_FILE,
    RunManifest,
    read_metrics,
)
from core.domain.techniques import traits_for
from core.logging_setup import add_file_sink, remove_file_sink

VERSIONED_PACKAGES = ("torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes", "datasets")


def train(
    settings: Settings,
    stop_event: threading.Event | None = None,
    extra_callbacks: Sequence[Any] = (),
    force: bool = False,
) -> Path:
    """Trains a model as configured and returns its run directory.

    Args:
        settings: Validated settings.
        stop_event: Optional flag; setting it stops training after the current step (with a checkpoint).
        extra_callbacks: Additional ``transformers.TrainerCallback`` objects (e.g. the studio's progress).
        force: Train a completed run again from scratch; its earlier outputs move to
            ``previous-<time>/`` inside the run directory (without it, that refuses).

    Returns:
        The run directory ``paths.runs_dir / run_name``.

    Raises:
        CheckpointError: When resuming a checkpoint written with a different configuration.
        OutputExistsError: When a completed run would start from scratch and ``force`` is false.
        FinetuneStudioError: On invalid data, unavailable models or a diverged run (nan_policy=stop).
    """
    import torch
    from accelerate import PartialState

    process = PartialState(cpu=not torch.cuda.is_available())  # cpu=True: gloo DDP under accelerate launch
    run_name = settings.resolved_run_name()
    run_dir = Path(settings.paths.runs_dir) / run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    log_file = run_dir / LOG_FILE
    if process.is_main_process:
        add_file_sink(log_file)
    if completed_before(settings, run_dir):
        logger.success(
            "Run {} already completed with this configuration; nothing to train (raise training.max_steps to "
            "continue it, or set training.resume=never or another run_name to train again)",
            run_name,
        )
        return run_dir
    keep_completed_outputs(settings, run_dir, force, process.is_main_process)
    process.wait_for_everyone()
    manifest = _open_manifest(run_dir, run_name, settings, process.is_main_process)
    try:
        return _train(settings, run_dir, manifest, process, stop_event, extra_callbacks)
    except BaseException as error:
        if process.is_main_process:
            interrupted = isinstance(error, KeyboardInterrupt)
            manifest.status = "stopped" if interrupted else "failed"
            manifest.error = None if interrupted else f"{type(error).__name__}: {error}"
            manifest.save(run_dir)
            logger.error("Training {}: {}", manifest.status, manifest.error or "interrupted")
        raise
    finally:
        if process.is_main_process:
            remove_file_sink(log_file)


def _train(
    settings: Settings,
    run_dir: Path,
    manifest: RunManifest,
    process: Any,
    stop_event: threading.Event | None,
    extra_callbacks: Sequence[Any],
) -> Path:
    import torch
    from transformers import set_seed

    from core.infrastructure.models.loading import count_parameters, load_tokenizer, select_device
    from core.infrastructure.models.resolve import resolve_model
    from core.infrastructure.training.callbacks import MetricsCallback, MetricsLog, SampleCallback, StopCallback
    from core.infrastructure.training.collators import PackingCollator, PaddingCollator, packing_decision
    from core.infrastructure.training.monitoring import finish_monitoring, monitoring_callbacks
    from core.infrastructure.training.precision import choose_precision
    from core.infrastructure.training.progress import RunProgress, schedule_for
    from core.infrastructure.training.resources import hardware_description
    from core.infrastructure.training.setup import (
        build_training_arguments,
        early_stopping_callbacks,
        load_model_for_training,
    )
    from core.infrastructure.training.trainer import StudioTrainer, remove_pickled_arguments

    is_main = process.is_main_process
    traits = traits_for(settings.technique.name)

    # 1. Resolve the base model and the prepared data (main process first: it may convert/prepare).
    _set_status(manifest, run_dir, "preparing", is_main)
    with process.main_process_first():
        resolved = resolve_model(settings.model.name, settings.paths.model_cache, settings.model.revision)
        prepared = _prepared_data(settings)
    train_data, eval_data = prepared.tokenized("train"), prepared.tokenized("validation")
    eval_limit = settings.training.eval_max_samples
    if eval_limit is not None and len(eval_data) > eval_limit:
        eval_data = eval_data.select(range(eval_limit))
    if len(train_data) == 0:
        raise CheckpointError(f"{prepared.directory}: the prepared train split is empty; nothing to train on")
    for line in settings.explained():
        logger.info("Setting {}", line)
    logger.info(
        "Run {}: model {} ({}), technique {}, data {} (train {}, validation {})",
        run_dir.name,
        resolved.display_name,
        resolved.architecture.family,
        traits.title,
        prepared.fingerprint,
        len(train_data),
        len(eval_data),
    )

    # 2. Decide whether to resume (newest complete checkpoint, same configuration) or start over.
    resume_from = checkpoint_to_resume(settings, run_dir, is_main)
    process.wait_for_everyone()

    # 3. Load and prepare the model for the technique.
    device = select_device()
    precision = choose_precision(settings.training.precision, device)
    logger.info("Precision {} ({}); device {}", precision.name, precision.reason, device)
    set_seed(settings.training.seed)
    tokenizer = load_tokenizer(resolved.path, chat_template=prepared.chat_template)
    model = load_model_for_training(settings, resolved, precision, device)
    trainable, total = count_parameters(model)
    logger.info("Trainable parameters: {:,} of {:,} ({:.4%})", trainable, total, trainable / max(total, 1))
    packing, packing_reason = packing_decision(settings.training.packing, resolved.architecture, traits)
    logger.info("Packing: {} ({})", "on" if packing else "off", packing_reason)
    collator = PackingCollator() if packing else PaddingCollator(tokenizer.pad_token_id)

    # 4. Fit with transformers' Trainer and our callbacks.
    arguments = build_training_arguments(
        settings, run_dir, precision, has_eval=len(eval_data) > 0, packing=packing, resuming=resume_from is not None
    )
    resumed_step = checkpoint_step_of(resume_from)
    metrics_log = MetricsLog(run_dir, keep_until_step=resumed_step) if is_main else None
    metrics = MetricsCallback(metrics_log, earlier_rows=read_metrics(run_dir) if resume_from and is_main else ())
    stop = StopCallback(run_dir / STOP_REQUEST_FILE, stop_event)
    world = max(arguments.world_size, 1)
    steps_per_epoch = max(
        1, len(train_data) // (arguments.per_device_train_batch_size * world * arguments.gradient_accumulation_steps)
    )
    schedule = schedule_for(arguments, len(eval_data), settings.training.sample_every_steps, steps_per_epoch)
    progress = RunProgress(run_dir, schedule, enabled=is_main)
    callbacks: list[Any] = [metrics, stop, progress, *early_stopping_callbacks(settings, arguments)]
    if settings.training.sample_every_steps and settings.training.sample_prompts and metrics_log is not None:
        callbacks.append(
            SampleCallback(
                metrics_log,
                tokenizer,
                list(settings.training.sample_prompts),
                settings.training.sample_every_steps,
                max_new_tokens=min(64, settings.evaluation.max_new_tokens),
            )
        )
    callbacks += [progress.after_sampling(), *monitoring_callbacks(settings, run_dir, is_main)]
    callbacks += list(extra_callbacks)
    trainer = StudioTrainer(
        model=model,
        args=arguments,
        train_dataset=train_data,
        eval_dataset=eval_data if len(eval_data) else None,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=callbacks,
        run_config=settings.to_plain_dict(),
        nan_policy=settings.training.nan_policy,
    )
    metrics.trainer, trainer.run_progress = trainer, progress
    start_limit = settings.training.eval_start_max_samples
    if arguments.eval_on_start and start_limit is not None and len(eval_data) > start_limit:
        trainer.start_eval_dataset = eval_data.select(range(start_limit))
    if arguments.eval_on_start:  # initial_eval_loss is the mean loss on these first validation records
        manifest.metrics["initial_eval_records"] = min(len(eval_data), start_limit or len(eval_data))
    manifest.metrics["eval_records"] = len(eval_data)
    manifest.base_model_path = str(Path(resolved.path).resolve())
    manifest.data_fingerprint = prepared.fingerprint
    manifest.chat_template = tokenizer.chat_template
    manifest.trainable_parameters, manifest.total_parameters = trainable, total
    manifest.hardware = {**hardware_description(device), "precision": precision.name, "packing": packing}
    _set_status(manifest, run_dir, "training", is_main)
    if resume_from is not None:
        logger.info("Resuming from {} (step {})", resume_from, resumed_step)
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    evaluated_steps = {entry["step"] for entry in trainer.state.log_history if "eval_loss" in entry}
    if len(eval_data) and trainer.state.global_step not in evaluated_steps and not stop.stopped:  # every process
        trainer.evaluate()
    if stop.stopped and not (Path(arguments.output_dir) / f"checkpoint-{trainer.state.global_step}").is_dir():
        trainer._save_checkpoint(trainer.model, trial=None)  # stopped during the final evaluation

    # 5. Save the final adapter/model with the tokenizer and chat template; complete the manifest.
    status = "stopped" if stop.stopped else "completed"
    if trainer.state.best_model_checkpoint and arguments.load_best_model_at_end:
        logger.info("Final model = best checkpoint {}", Path(trainer.state.best_model_checkpoint).name)
    final_dir = run_dir / FINAL_DIR
    trainer.save_model(str(final_dir))
    remove_pickled_arguments(final_dir)
    if is_main:
        tokenizer.save_pretrained(str(final_dir))
        (run_dir / CHAT_TEMPLATE_FILE).write_text(tokenizer.chat_template or "", encoding="utf-8")
        summary = metrics.finish()
        summary.update(
            global_step=trainer.state.global_step,
            epoch=trainer.state.epoch,
            best_checkpoint=_relative(trainer.state.best_model_checkpoint, run_dir),
            final_model_is_best_checkpoint=bool(
                arguments.load_best_model_at_end and trainer.state.best_model_checkpoint
            ),
            early_stopped=status == "completed" and _early_stopped(trainer, settings),
        )
        manifest.metrics = {**manifest.metrics, **summary}
        _make_final_shareable(final_dir, manifest, run_dir)
        manifest.final_path = FINAL_DIR
        manifest.error = None
        _set_status(manifest, run_dir, status, is_main)
        metrics_log.write({"step": trainer.state.global_step, "event": "end", "status": status})
        finish_monitoring(summary, settings)
        logger.success(
            "Training {}: step {}, eval loss {} -> {}, {:.1f} s, {} tokens/s, peak {} MB; final model in {}",
            status,
            trainer.state.global_step,
            _rounded(summary.get("initial_eval_loss")),
            _rounded(summary.get("final_eval_loss")),
            summary["train_runtime_s"],
            summary["tokens_per_second"],
            summary["peak_memory_mb"],
            final_dir,
        )
    process.wait_for_everyone()
    del trainer, model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return run_dir


def _make_final_shareable(final_dir: Path, manifest: RunManifest, run_dir: Path) -> None:
    """Names the base model by its Hub id in ``final/`` and replaces peft's placeholder card."""
    from core.domain.portable import base_model_reference, make_adapter_portable, portable_lineage
    from core.infrastructure.registry.artifacts import run_lineage
    from core.infrastructure.registry.model_card import render_model_card

    model_name = str((manifest.config.get("model") or {}).get("name"))
    reference = base_model_reference(model_name, manifest.base_model_path)
    make_adapter_portable(final_dir, reference)
    if "/" not in reference:
        logger.warning(
            "final/ names its base model {!r} (a local model, no Hub id); another machine needs that model "
            "under the same name to load the adapter",
            reference,
        )
    kind = "adapter" if (final_dir / "adapter_config.json").is_file() else "model"
    lineage = {**portable_lineage(run_lineage(manifest, run_dir)), "kind": kind, "name": manifest.run_name}
    (final_dir / "README.md").write_text(render_model_card(lineage), encoding="utf-8")


def _open_manifest(run_dir: Path, run_name: str, settings: Settings, is_main: bool) -> RunManifest:
    """Creates the run's manifest, keeping creation time and metrics of an earlier session."""
    previous = RunManifest.load(run_dir) if (run_dir / MANIFEST_FILE).is_file() else None
    manifest = RunManifest(
        run_name=run_name,
        config=settings.to_plain_dict(),
        versions=_versions(),
        technique=dataclasses.asdict(traits_for(settings.technique.name)),
    )
    if previous is not None:
        manifest.created_at = previous.created_at
        manifest.metrics = previous.metrics
    if is_main:
        manifest.save(run_dir)
    return manifest


def _set_status(manifest: RunManifest, run_dir: Path, status: str, is_main: bool) -> None:
    manifest.status = status  # type: ignore[assignment]
    if status in {"preparing", "training"}:
        manifest.process = _this_process()
    if is_main:
        manifest.save(run_dir)


def _this_process() -> dict[str, Any]:
    """Identifies the training process, for readers that must tell a live run from a killed one."""
    import socket

    import psutil

    return {"pid": os.getpid(), "host": socket.gethostname(), "started": psutil.Process().create_time()}


def _prepared_data(settings: Settings) -> Any:
    """Opens the prepared dataset: ``data.dataset`` naming a prepared directory, or ``ensure_prepared``."""
    from core.infrastructure.data.prepared import PREPARED_FILE, load_prepared

    named = Path(settings.data.dataset).expanduser()
    if not settings.data.datasets and (named / PREPARED_FILE).is_file():
        return load_prepared(named)
    from core.application.prepare_data import ensure_prepared

    return ensure_prepared(settings)


def _early_stopped(trainer: Any, settings: Settings) -> bool:
    max_steps = trainer.state.max_steps
    return settings.training.early_stopping_patience is not None and trainer.state.global_step < max_steps


def _relative(path: str | None, run_dir: Path) -> str | None:
    if not path:
        return None
    try:
        return Path(path).resolve().relative_to(run_dir.resolve()).as_posix()
    except ValueError:
        return str(path)


def _rounded(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def run(arguments: argparse.Namespace) -> int:
    """CLI entry point of ``finetune-studio train``.

    Args:
        arguments: Parsed CLI arguments (``--config``, overrides, ``--run-name``, ``--resume``).

    Returns:
        0 when training completed or was stopped on request.
    """
    overrides = list(arguments.overrides)
    if getattr(arguments, "run_name", None):
        overrides.append(f"run_name={arguments.run_name}")
    if getattr(arguments, "resume", None):
        overrides.append(f"training.resume={arguments.resume}")
    settings = load_settings(arguments.config, overrides)
    run_dir = train(settings, force=getattr(arguments, "force", False))
    logger.info("Run directory: {}", run_dir)
    return 0
