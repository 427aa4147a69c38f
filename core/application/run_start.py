"""Where a training run starts from: already finished, resumed from a checkpoint, or started again.

The rules (``training.resume``): ``auto`` resumes the newest complete checkpoint written with the
same configuration, ``never`` starts from scratch, a path resumes that checkpoint. A completed run
(it has ``final/``) is never restarted from scratch implicitly: that needs ``--force``, which moves
its outputs aside to ``previous-<time>/``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from loguru import logger

from core.domain.config import Settings
from core.domain.errors import CheckpointError, OutputExistsError
from core.domain.manifest import (
    CHECKPOINTS_DIR,
    FINAL_DIR,
    LOG_FILE,
    MANIFEST_FILE,
    METRICS_FILE,
    STOP_REQUEST_FILE,
    RunManifest,
)


def completed_before(settings: Settings, run_dir: Path) -> bool:
    """True when this run completed its budget with the same configuration (training it again is a no-op)."""
    from core.infrastructure.training.checkpoints import check_resumable, newest_complete_checkpoint, reached_the_end

    if settings.training.resume != "auto" or not (run_dir / MANIFEST_FILE).is_file():
        return False
    if RunManifest.load(run_dir).status != "completed" or not (run_dir / FINAL_DIR).is_dir():
        return False
    checkpoint = newest_complete_checkpoint(run_dir / CHECKPOINTS_DIR)
    if checkpoint is None or not reached_the_end(checkpoint, settings.training.max_steps, settings.training.num_epochs):
        return False
    try:
        check_resumable(checkpoint, settings.to_plain_dict())
    except CheckpointError:
        return False  # training reports the changed keys
    return True


def keep_completed_outputs(settings: Settings, run_dir: Path, force: bool, is_main: bool) -> None:
    """A completed run (it has ``final/``) that would start from scratch: refuse, or with ``force`` move it aside.

    Nothing of the run is touched before this decision (not even its manifest).
    """
    from core.domain.output_dirs import move_aside
    from core.infrastructure.training.checkpoints import check_resumable, newest_complete_checkpoint

    final = run_dir / FINAL_DIR
    mode = settings.training.resume
    if not final.is_dir() or mode not in ("auto", "never"):
        return
    checkpoint = newest_complete_checkpoint(run_dir / CHECKPOINTS_DIR) if mode == "auto" else None
    if checkpoint is not None:
        check_resumable(checkpoint, settings.to_plain_dict())  # a changed configuration stops here, untouched
        return
    if not force:
        why = "training.resume=never" if mode == "never" else "no intact checkpoint to resume from"
        raise OutputExistsError(
            f"{run_dir}: this run already completed (its model is in {final}); training it again from scratch "
            f"({why}) would replace it, so nothing was changed. Choose another --run-name, or pass --force to "
            f"move its earlier outputs to {run_dir}/previous-<time>/ and train again."
        )
    if is_main:
        move_aside(run_dir, keep=(LOG_FILE,))


def checkpoint_to_resume(settings: Settings, run_dir: Path, is_main: bool) -> Path | None:
    """Picks the checkpoint to resume from (``training.resume``) or clears the run for a fresh start."""
    from core.infrastructure.training.checkpoints import (
        check_resumable,
        newest_complete_checkpoint,
        remove_unsealed_checkpoints,
    )

    checkpoints_dir = run_dir / CHECKPOINTS_DIR
    stop_file = run_dir / STOP_REQUEST_FILE
    if is_main and stop_file.exists():
        logger.info("Removing an old stop request {}", stop_file)
        stop_file.unlink()
    if is_main:
        remove_unsealed_checkpoints(checkpoints_dir)
    mode = settings.training.resume
    checkpoint: Path | None = None
    if mode not in ("auto", "never"):
        checkpoint = Path(mode).expanduser()
        if not checkpoint.is_dir():
            raise CheckpointError(f"{checkpoint}: checkpoint not found (training.resume)")
    elif mode == "auto":
        checkpoint = newest_complete_checkpoint(checkpoints_dir)
    if checkpoint is not None:
        check_resumable(checkpoint, settings.to_plain_dict())
        return checkpoint
    if is_main and (checkpoints_dir.exists() or (run_dir / METRICS_FILE).exists()):
        logger.info(
            "Starting {} from scratch (training.resume={}); clearing old checkpoints and metrics", run_dir.name, mode
        )
        shutil.rmtree(checkpoints_dir, ignore_errors=True)  # an unfinished run's own; final/ is guarded above
        (run_dir / METRICS_FILE).unlink(missing_ok=True)
    return None


def checkpoint_step_of(checkpoint: Path | None) -> int | None:
    """The optimizer step a checkpoint was written at (None for no checkpoint)."""
    if checkpoint is None:
        return None
    from core.infrastructure.training.checkpoints import checkpoint_step

    return checkpoint_step(checkpoint)
