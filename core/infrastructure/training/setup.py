"""Building blocks of a training run: model loading per technique, training arguments, the trainer."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from loguru import logger
from transformers import EarlyStoppingCallback, PreTrainedModel, TrainingArguments

from core.domain.catalog import ArchitectureDefaults
from core.domain.config import Settings
from core.domain.manifest import CHECKPOINTS_DIR
from core.domain.techniques import TechniqueTraits
from core.infrastructure.models.loading import load_causal_lm
from core.infrastructure.models.packed_attention import use_packed_attention
from core.infrastructure.models.resolve import ResolvedModel
from core.infrastructure.techniques import technique_for
from core.infrastructure.training.collators import packing_decision
from core.infrastructure.training.gap_dropout import use_gap_dropout
from core.infrastructure.training.precision import Precision

MODEL_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def process_state() -> Any:
    """The accelerate state of this process (gloo DDP on CPU under ``accelerate launch``).

    accelerate applies an FSDP config only across accelerators: on a CPU machine
    ``examples/accelerate/fsdp.yaml`` runs as DDP (or as one process with ``--cpu``), every process
    holding the whole model. That is said once, as a warning, instead of passing silently.

    Returns:
        The ``accelerate.PartialState``.
    """
    from accelerate import PartialState

    on_cpu = not torch.cuda.is_available()
    process = PartialState(cpu=on_cpu)
    if on_cpu and os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true" and process.is_main_process:
        layout = f"{process.num_processes} DDP processes" if process.num_processes > 1 else "one process"
        logger.warning(
            "The accelerate config asks for FSDP, but accelerate shards models only across GPUs: on this CPU "
            "machine the run trains as {}, each holding the whole model and its optimizer states",
            layout,
        )
    return process


def load_model_for_training(
    settings: Settings, resolved: ResolvedModel, precision: Precision, device: torch.device
) -> torch.nn.Module:
    """Loads the base model the way the technique needs and prepares it (freeze / PEFT wrap).

    On a CPU its dropout layers become :class:`~core.infrastructure.training.gap_dropout.GapDropout`
    (the same masks' law from ~p random numbers per element).

    Args:
        settings: Run settings.
        resolved: The resolved base model.
        precision: Training precision.
        device: The training device.

    Returns:
        The model to train, with ``use_cache`` off (required for padding-free packing).
    """
    technique = technique_for(settings.technique.name)
    options = technique.load_options(settings.technique, precision.compute_dtype)
    dtype = options.dtype if settings.model.dtype == "auto" else MODEL_DTYPES[settings.model.dtype]
    device_map: Any = None
    if options.quantization_config is not None:
        device_map = {"": device.index or 0} if device.type == "cuda" else {"": "cpu"}
    elif settings.model.cpu_offload and device.type == "cuda":
        device_map = "auto"
    base: PreTrainedModel = load_causal_lm(
        resolved.path,
        dtype=dtype,
        attn_implementation=settings.model.attn_implementation,
        quantization_config=options.quantization_config,
        device_map=device_map,
        trust_remote_code=settings.model.trust_remote_code,
    )
    base.config.use_cache = False
    model = technique.prepare(base, settings.technique, resolved.architecture, settings.training.gradient_checkpointing)
    model.config.use_cache = False
    if device.type == "cpu" and (swapped := use_gap_dropout(model)):
        logger.info("Dropout: {} layers draw only their dropped positions (geometric gaps, same masks' law)", swapped)
    return model


def set_up_packing(
    model: torch.nn.Module, mode: str, architecture: ArchitectureDefaults, traits: TechniqueTraits
) -> bool:
    """Decides padding-free packing and, when on, runs ``sdpa`` one sequence at a time.

    Args:
        model: The model to train.
        mode: ``training.packing``.
        architecture: Family defaults (``supports_padding_free``).
        traits: Technique traits (``supports_packing``).

    Returns:
        True when training padding-free.
    """
    packing, reason = packing_decision(mode, architecture, traits)
    logger.info("Packing: {} ({})", "on" if packing else "off", reason)
    if packing:
        logger.info("Attention: {}", use_packed_attention(model))
    return packing


def build_training_arguments(
    settings: Settings,
    run_dir: Path,
    precision: Precision,
    has_eval: bool,
    packing: bool,
    resuming: bool,
) -> TrainingArguments:
    """Maps the ``training`` settings onto transformers' ``TrainingArguments``.

    Evaluation, saving and best-checkpoint tracking are set by :func:`_schedules`; the step-0
    evaluation's records by StudioTrainer (``training.eval_start_max_samples``).

    Args:
        settings: Run settings.
        run_dir: The run directory (checkpoints go to ``checkpoints/``).
        precision: Training precision.
        has_eval: True when a validation split exists.
        packing: True when training padding-free.
        resuming: True when continuing from a checkpoint (no second step-0 evaluation).

    Returns:
        The training arguments.
    """
    training = settings.training
    schedule = _schedules(training, has_eval, resuming)
    sampling = "group_by_length" if (training.group_by_length and not packing) else "random"
    return TrainingArguments(
        output_dir=str(Path(run_dir) / CHECKPOINTS_DIR),
        per_device_train_batch_size=training.per_device_batch_size,
        per_device_eval_batch_size=training.eval_batch_size,
        gradient_accumulation_steps=training.gradient_accumulation_steps,
        num_train_epochs=training.num_epochs,
        max_steps=training.max_steps,
        learning_rate=training.learning_rate,
        lr_scheduler_type=training.lr_scheduler,
        warmup_steps=training.warmup_ratio,
        weight_decay=training.weight_decay,
        max_grad_norm=training.max_grad_norm,
        optim=training.optimizer,
        seed=training.seed,
        data_seed=training.seed,
        bf16=precision.name == "bf16",
        fp16=precision.name == "fp16",
        logging_strategy="steps",
        logging_steps=training.logging_steps,
        **schedule,
        train_sampling_strategy=sampling,
        length_column_name="length",
        remove_unused_columns=False,
        report_to="none",
        dataloader_num_workers=training.dataloader_num_workers,
        dataloader_pin_memory=torch.cuda.is_available(),
        include_num_input_tokens_seen="no",
        disable_tqdm=True,
        ddp_find_unused_parameters=False,
        use_cpu=not torch.cuda.is_available(),
        log_level="warning",
    )


def _schedules(training: Any, has_eval: bool, resuming: bool) -> dict[str, Any]:
    """The ``TrainingArguments`` of evaluation, saving and best-checkpoint tracking.

    Args:
        training: The ``training`` settings.
        has_eval: True when a validation split exists.
        resuming: True when continuing from a checkpoint (no second step-0 evaluation).

    Returns:
        Keyword arguments: strategies, intervals, step-0 evaluation, best-model loading.
    """
    eval_strategy = "no"
    if has_eval:
        eval_strategy = "steps" if training.eval_steps else "epoch"
    save_strategy = "steps" if training.save_steps else (eval_strategy if eval_strategy != "no" else "epoch")
    save_steps = training.save_steps or training.eval_steps or 500
    load_best = (
        has_eval
        and save_strategy == eval_strategy
        and (save_strategy != "steps" or save_steps % (training.eval_steps or 1) == 0)
    )
    if has_eval and not load_best:
        logger.info(
            "Best-checkpoint loading is off: training.save_steps={} is not a multiple of training.eval_steps={}",
            training.save_steps,
            training.eval_steps,
        )
    return {
        "eval_strategy": eval_strategy,
        "eval_steps": training.eval_steps if eval_strategy == "steps" else None,
        "eval_on_start": has_eval and not resuming and training.eval_on_start,
        "save_strategy": save_strategy,
        "save_steps": save_steps,
        "save_total_limit": None,  # rotated after sealing, by CheckpointSealCallback
        "load_best_model_at_end": load_best,
        "metric_for_best_model": "eval_loss" if has_eval else None,
        "greater_is_better": False,
    }


def early_stopping_callbacks(settings: Settings, arguments: TrainingArguments) -> list[EarlyStoppingCallback]:
    """Early stopping on validation loss with ``training.early_stopping_patience`` (when configured).

    Args:
        settings: Run settings.
        arguments: The training arguments (must evaluate and track the best checkpoint).

    Returns:
        Zero or one callback.
    """
    patience = settings.training.early_stopping_patience
    if patience is None:
        return []
    if arguments.eval_strategy == "no" or not arguments.load_best_model_at_end:
        logger.warning(
            "training.early_stopping_patience is ignored: it needs a validation split and "
            "training.save_steps a multiple of training.eval_steps"
        )
        return []
    return [
        EarlyStoppingCallback(
            early_stopping_patience=patience, early_stopping_threshold=settings.training.early_stopping_threshold
        )
    ]
