"""Sealing transformers' own checkpoints through the public callback API.

Transformers' Trainer writes ``checkpoint-<step>/`` (model or adapter, optimizer, scheduler,
scaler, RNG states, ``trainer_state.json``) and then calls ``on_save``. There this callback adds
what exact resume needs beyond that -- the run configuration and the data position -- drops the
pickled ``training_args.bin``, and seals the directory with ``checkpoint_manifest.json`` (sha256
and size per file, written last). Old checkpoints are rotated only after the new one is sealed, so
a crash at any moment leaves at least one complete checkpoint behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from loguru import logger
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from core.domain.manifest import write_json_atomic
from core.infrastructure.training.checkpoints import DATA_POSITION_FILE, TRAINING_CONFIG_FILE, seal_checkpoint

PICKLED_ARGUMENTS_FILE = "training_args.bin"


def remove_pickled_arguments(directory: Path) -> None:
    """Deletes ``training_args.bin`` (a pickle Trainer writes beside models; nothing here reads it).

    Args:
        directory: A checkpoint or final model directory.
    """
    (Path(directory) / PICKLED_ARGUMENTS_FILE).unlink(missing_ok=True)


def _wait_for_every_process() -> None:
    """Barrier across processes (DDP): every rank has written its RNG state before sealing."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


class CheckpointSealCallback(TrainerCallback):
    """Completes and seals each checkpoint after Trainer has saved it, then rotates old ones.

    Attributes:
        trainer: The :class:`~core.infrastructure.training.trainer.StudioTrainer` (run configuration,
            skipped updates, progress file).
        save_total_limit: Checkpoints to keep (``training.save_total_limit``); Trainer's own rotation is
            off so that nothing is deleted before the newest checkpoint is sealed.
    """

    def __init__(self, trainer: Any, save_total_limit: int | None) -> None:
        """Creates the callback.

        Args:
            trainer: The trainer whose checkpoints are sealed.
            save_total_limit: Checkpoints to keep (None: all).
        """
        self.trainer = trainer
        self.save_total_limit = save_total_limit

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        """Adds the run configuration and data position, seals the checkpoint and rotates older ones."""
        checkpoints_dir = Path(args.output_dir)
        directory = checkpoints_dir / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        _wait_for_every_process()
        if args.should_save:
            write_json_atomic(directory / TRAINING_CONFIG_FILE, self.trainer.run_config)
            write_json_atomic(directory / DATA_POSITION_FILE, self._data_position(args, state))
            remove_pickled_arguments(directory)
            seal_checkpoint(directory, {"step": state.global_step, "epoch": state.epoch})
            logger.info("Checkpoint saved: {}", directory)
            rotate_checkpoints(
                output_dir=str(checkpoints_dir),
                save_total_limit=self.save_total_limit,
                best_model_checkpoint=state.best_model_checkpoint,
                use_mtime=False,
            )
        _wait_for_every_process()
        if self.trainer.run_progress is not None:
            self.trainer.run_progress.checkpoint_saved()

    def _data_position(self, args: TrainingArguments, state: TrainerState) -> dict[str, Any]:
        """Where the data stream stands at this checkpoint (checked by the resume tests)."""
        micro_batches = state.global_step * args.gradient_accumulation_steps
        return {
            "global_step": state.global_step,
            "epoch": state.epoch,
            "micro_batches_seen": micro_batches,
            "sequences_seen": micro_batches * args.train_batch_size,
            "world_size": args.world_size,
            "skipped_updates": self.trainer.skipped_updates,
        }
