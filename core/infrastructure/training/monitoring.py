"""Experiment tracking: TensorBoard event files and Weights & Biases (both optional via config)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from loguru import logger
from transformers import TrainerCallback

from core.domain.config import Settings

TENSORBOARD_DIR = "tensorboard"
WANDB_DIR = "wandb"


def monitoring_callbacks(settings: Settings, run_dir: Path, is_main_process: bool) -> list[TrainerCallback]:
    """Creates the tracking callbacks the config asks for (main process only).

    TensorBoard writes to ``runs/<name>/tensorboard``; WandB to ``runs/<name>/wandb`` in
    ``monitoring.wandb_mode`` (``offline`` by default: no network needed).

    Args:
        settings: Run settings (``monitoring`` section).
        run_dir: The run directory.
        is_main_process: Only the main process writes tracking files.

    Returns:
        Callbacks to add to the trainer.
    """
    if not is_main_process:
        return []
    callbacks: list[TrainerCallback] = []
    monitoring = settings.monitoring
    if monitoring.tensorboard:
        from torch.utils.tensorboard import SummaryWriter
        from transformers.integrations import TensorBoardCallback

        log_dir = Path(run_dir) / TENSORBOARD_DIR
        callback = TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(log_dir)))
        callback.logging_dir = str(log_dir)
        callbacks.append(callback)
        logger.info("TensorBoard: tensorboard --logdir {}", log_dir)
    if monitoring.wandb and monitoring.wandb_mode != "disabled":
        import wandb
        from transformers.integrations import WandbCallback

        if monitoring.wandb_api_key is not None:
            os.environ["WANDB_API_KEY"] = monitoring.wandb_api_key.get_secret_value()
        os.environ.setdefault("WANDB_SILENT", "true")
        (Path(run_dir) / WANDB_DIR).mkdir(parents=True, exist_ok=True)
        wandb.init(
            project=monitoring.wandb_project,
            entity=monitoring.wandb_entity,
            name=settings.resolved_run_name(),
            dir=str(run_dir),
            mode=monitoring.wandb_mode,
            config=settings.to_plain_dict(),
            reinit="finish_previous",
        )
        callbacks.append(WandbCallback())
        logger.info("Weights & Biases: mode={} project={}", monitoring.wandb_mode, monitoring.wandb_project)
    return callbacks


def finish_monitoring(summary: dict[str, Any], settings: Settings) -> None:
    """Records the summary in WandB (when active) and closes its run.

    Args:
        summary: Summary metrics of the run.
        settings: Run settings.
    """
    if not (settings.monitoring.wandb and settings.monitoring.wandb_mode != "disabled"):
        return
    import wandb

    if wandb.run is not None:
        wandb.run.summary.update({f"final/{key}": value for key, value in summary.items() if value is not None})
        wandb.finish()
    wandb.teardown()  # flushes the offline transaction log (wandb-core writes it asynchronously)
