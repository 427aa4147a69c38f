"""Use case ``train``: settings and a prepared dataset in, a run directory out.

Reads top to bottom, as litgpt's recipes: :func:`train` opens the run (finished, resumed or
restarted), then :func:`_train` runs the phases -- ``_setup_data`` (model and prepared data),
the checkpoint to resume, ``_setup_model`` (precision, tokenizer, the technique's model, packing),
``_setup_trainer`` (Trainer and callbacks), ``_fit`` and ``_finish`` (``final/`` with tokenizer and
chat template, the manifest's summary).
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from core.application.run_records import (
    make_final_shareable,
    open_manifest,
    relative_to_run,
    rounded,
    set_status,
)
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
    STOP_REQUEST_FILE,
    RunManifest,
    read_metrics,
)
from core.domain.techniques import traits_for
from core.logging_setup import add_file_sink, remove_file_sink


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
    from core.infrastructure.training.setup import process_state

    process = process_state()
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
    manifest = open_manifest(run_dir, run_name, settings, process.is_main_process)
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
    """Setup (data, resume point, model, trainer) -> fit -> finish (final/, manifest, summary)."""
    run = _setup_data(settings, run_dir, manifest, process)
    run.resume_from = checkpoint_to_resume(settings, run_dir, run.is_main)
    process.wait_for_everyone()
    _setup_model(run)
    fit = _setup_trainer(run, stop_event, extra_callbacks)
    _fit(run, fit)
    _finish(run, fit)
    return run_dir


@dataclass
class _Run:
    """What one training run assembles, phase by phase."""

    settings: Settings
    run_dir: Path
    manifest: RunManifest
    process: Any
    resolved: Any
    prepared: Any
    train_data: Any
    eval_data: Any
    resume_from: Path | None = None
    device: Any = None
    precision: Any = None
    tokenizer: Any = None
    model: Any = None
    packing: bool = False
    parameters: tuple[int, int] = (0, 0)

    @property
    def is_main(self) -> bool:
        """True on the process that writes files (the only one without DDP)."""
        return self.process.is_main_process


@dataclass
class _Fit:
    """The trainer and the callbacks the later phases read."""

    trainer: Any
    arguments: Any
    metrics: Any
    metrics_log: Any
    stop: Any


def _setup_data(settings: Settings, run_dir: Path, manifest: RunManifest, process: Any) -> _Run:
    """Resolves the base model and the prepared data (the main process first: it may convert/prepare)."""
    from core.infrastructure.models.resolve import resolve_model

    set_status(manifest, run_dir, "preparing", process.is_main_process)
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
        traits_for(settings.technique.name).title,
        prepared.fingerprint,
        len(train_data),
        len(eval_data),
    )
    return _Run(settings, run_dir, manifest, process, resolved, prepared, train_data, eval_data)


def _setup_model(run: _Run) -> None:
    """Loads the tokenizer and the model prepared for the technique; decides precision and packing."""
    from transformers import set_seed

    from core.infrastructure.models.loading import count_parameters, load_tokenizer, select_device
    from core.infrastructure.training.precision import choose_precision
    from core.infrastructure.training.setup import load_model_for_training, set_up_packing

    settings = run.settings
    run.device = select_device()
    run.precision = choose_precision(settings.training.precision, run.device)
    logger.info("Precision {} ({}); device {}", run.precision.name, run.precision.reason, run.device)
    set_seed(settings.training.seed)
    run.tokenizer = load_tokenizer(run.resolved.path, chat_template=run.prepared.chat_template)
    run.model = load_model_for_training(settings, run.resolved, run.precision, run.device)
    trainable, total = run.parameters = count_parameters(run.model)
    logger.info("Trainable parameters: {:,} of {:,} ({:.4%})", trainable, total, trainable / max(total, 1))
    traits = traits_for(settings.technique.name)
    run.packing = set_up_packing(run.model, settings.training.packing, run.resolved.architecture, traits)


def _setup_trainer(run: _Run, stop_event: threading.Event | None, extra_callbacks: Sequence[Any]) -> _Fit:
    """Transformers' Trainer with our callbacks: metrics, stop requests, progress, samples, monitoring."""
    from core.infrastructure.training.callbacks import MetricsCallback, MetricsLog, StopCallback
    from core.infrastructure.training.collators import PackingCollator, PaddingCollator
    from core.infrastructure.training.progress import RunProgress
    from core.infrastructure.training.setup import build_training_arguments
    from core.infrastructure.training.trainer import StudioTrainer

    settings, eval_data = run.settings, run.eval_data
    arguments = build_training_arguments(
        settings, run.run_dir, run.precision, has_eval=len(eval_data) > 0, packing=run.packing,
        resuming=run.resume_from is not None,
    )  # fmt: skip
    metrics_log = MetricsLog(run.run_dir, keep_until_step=checkpoint_step_of(run.resume_from)) if run.is_main else None
    earlier_rows = read_metrics(run.run_dir) if run.resume_from and run.is_main else ()
    metrics = MetricsCallback(metrics_log, earlier_rows=earlier_rows)
    stop = StopCallback(run.run_dir / STOP_REQUEST_FILE, stop_event)
    progress = RunProgress(run.run_dir, _schedule(run, arguments), enabled=run.is_main)
    callbacks = [metrics, stop, progress, *_optional_callbacks(run, arguments, metrics_log, progress)]
    collator = PackingCollator() if run.packing else PaddingCollator(run.tokenizer.pad_token_id)
    trainer = StudioTrainer(
        model=run.model,
        args=arguments,
        train_dataset=run.train_data,
        eval_dataset=eval_data if len(eval_data) else None,
        data_collator=collator,
        processing_class=run.tokenizer,
        callbacks=[*callbacks, *extra_callbacks],
        run_config=settings.to_plain_dict(),
        save_total_limit=settings.training.save_total_limit,
        nan_policy=settings.training.nan_policy,
        chunked_loss=settings.training.chunked_loss,
    )
    metrics.trainer, trainer.run_progress = trainer, progress
    _cap_start_evaluation(run, trainer, arguments)
    return _Fit(trainer, arguments, metrics, metrics_log, stop)


def _schedule(run: _Run, arguments: Any) -> Any:
    """The run's plan of steps, evaluations and samples, for the progress file's ETA."""
    from core.infrastructure.training.progress import schedule_for

    per_step = arguments.per_device_train_batch_size * max(arguments.world_size, 1)
    steps_per_epoch = max(1, len(run.train_data) // (per_step * arguments.gradient_accumulation_steps))
    return schedule_for(arguments, len(run.eval_data), run.settings.training.sample_every_steps, steps_per_epoch)


def _optional_callbacks(run: _Run, arguments: Any, metrics_log: Any, progress: Any) -> list[Any]:
    """Early stopping, sample generations (and their timing) and TensorBoard/WandB, as configured."""
    from core.infrastructure.training.callbacks import SampleCallback
    from core.infrastructure.training.monitoring import monitoring_callbacks
    from core.infrastructure.training.setup import early_stopping_callbacks

    training = run.settings.training
    callbacks: list[Any] = [*early_stopping_callbacks(run.settings, arguments)]
    if training.sample_every_steps and training.sample_prompts and metrics_log is not None:
        max_new_tokens = min(64, run.settings.evaluation.max_new_tokens)
        prompts = list(training.sample_prompts)
        callbacks.append(
            SampleCallback(metrics_log, run.tokenizer, prompts, training.sample_every_steps, max_new_tokens)
        )
    return [*callbacks, progress.after_sampling(), *monitoring_callbacks(run.settings, run.run_dir, run.is_main)]


def _cap_start_evaluation(run: _Run, trainer: Any, arguments: Any) -> None:
    """Applies ``training.eval_start_max_samples`` and records which records each evaluation uses."""
    eval_data, start_limit = run.eval_data, run.settings.training.eval_start_max_samples
    if arguments.eval_on_start and start_limit is not None and len(eval_data) > start_limit:
        trainer.start_eval_dataset = eval_data.select(range(start_limit))
    if arguments.eval_on_start:  # initial_eval_loss is the mean loss on these first validation records
        run.manifest.metrics["initial_eval_records"] = min(len(eval_data), start_limit or len(eval_data))
    run.manifest.metrics["eval_records"] = len(eval_data)


def _fit(run: _Run, fit: _Fit) -> None:
    """Records what the run trains, then trains (resuming when a checkpoint was chosen)."""
    from core.infrastructure.training.resources import hardware_description

    manifest, trainer = run.manifest, fit.trainer
    manifest.base_model_path = str(Path(run.resolved.path).resolve())
    manifest.data_fingerprint = run.prepared.fingerprint
    manifest.chat_template = run.tokenizer.chat_template
    manifest.trainable_parameters, manifest.total_parameters = run.parameters
    hardware = hardware_description(run.device)
    manifest.hardware = {**hardware, "precision": run.precision.name, "packing": run.packing}
    set_status(manifest, run.run_dir, "training", run.is_main)
    if run.resume_from is not None:
        logger.info("Resuming from {} (step {})", run.resume_from, checkpoint_step_of(run.resume_from))
    trainer.train(resume_from_checkpoint=str(run.resume_from) if run.resume_from else None)
    evaluated_steps = {entry["step"] for entry in trainer.state.log_history if "eval_loss" in entry}
    if len(run.eval_data) and trainer.state.global_step not in evaluated_steps and not fit.stop.stopped:
        trainer.evaluate()  # on every process


def _finish(run: _Run, fit: _Fit) -> None:
    """Saves ``final/`` with the tokenizer and chat template and completes the manifest."""
    import torch

    from core.infrastructure.training.checkpoint_sealing import remove_pickled_arguments

    trainer, arguments = fit.trainer, fit.arguments
    status = "stopped" if fit.stop.stopped else "completed"
    if trainer.state.best_model_checkpoint and arguments.load_best_model_at_end:
        logger.info("Final model = best checkpoint {}", Path(trainer.state.best_model_checkpoint).name)
    final_dir = run.run_dir / FINAL_DIR
    trainer.save_model(str(final_dir))
    remove_pickled_arguments(final_dir)
    if run.is_main:
        run.tokenizer.save_pretrained(str(final_dir))
        (run.run_dir / CHAT_TEMPLATE_FILE).write_text(run.tokenizer.chat_template or "", encoding="utf-8")
        _complete_manifest(run, fit, status, final_dir)
    run.process.wait_for_everyone()
    del trainer
    run.model = fit.trainer = None
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _complete_manifest(run: _Run, fit: _Fit, status: str, final_dir: Path) -> None:
    """The run's summary figures, the shareable final/, the end row and the closing log line."""
    from core.infrastructure.training.monitoring import finish_monitoring

    trainer, manifest = fit.trainer, run.manifest
    summary = fit.metrics.finish()
    best_checkpoint = trainer.state.best_model_checkpoint
    summary.update(
        global_step=trainer.state.global_step,
        epoch=trainer.state.epoch,
        best_checkpoint=relative_to_run(best_checkpoint, run.run_dir),
        final_model_is_best_checkpoint=bool(fit.arguments.load_best_model_at_end and best_checkpoint),
        early_stopped=status == "completed" and _early_stopped(trainer, run.settings),
    )
    manifest.metrics = {**manifest.metrics, **summary}
    make_final_shareable(final_dir, manifest, run.run_dir)
    manifest.final_path, manifest.error = FINAL_DIR, None
    set_status(manifest, run.run_dir, status, run.is_main)
    fit.metrics_log.write({"step": trainer.state.global_step, "event": "end", "status": status})
    finish_monitoring(summary, run.settings)
    logger.success(
        "Training {}: step {}, eval loss {} -> {}, {:.1f} s, {} tokens/s, peak {} MB; final model in {}",
        status,
        trainer.state.global_step,
        rounded(summary.get("initial_eval_loss")),
        rounded(summary.get("final_eval_loss")),
        summary["train_runtime_s"],
        summary["tokens_per_second"],
        summary["peak_memory_mb"],
        final_dir,
    )


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
