"""Crash-safe checkpoints: transformers writes them, a manifest written last seals them.

A checkpoint directory is complete only when ``checkpoint_manifest.json`` exists and every file
it lists has the recorded size and sha256 (see ``checkpoint_sealing.py`` for when it is written).
Resume picks the newest complete checkpoint; a truncated or corrupted one is skipped with a log
line naming the problem, and an unsealed one (a write cut short) is removed before training resumes.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any

from loguru import logger

from core.domain.errors import CheckpointError
from core.domain.manifest import write_json_atomic
from core.infrastructure.checksums import sha256_file

CHECKPOINT_MANIFEST = "checkpoint_manifest.json"
TRAINING_CONFIG_FILE = "training_config.json"
DATA_POSITION_FILE = "data_position.json"
LEGACY_STAGING_PREFIX = ".staging-"  # where checkpoints were written before sealing in place
_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")

RESUME_IGNORED_KEYS = (
    "run_name",
    "log_level",
    "training.max_steps",
    "training.num_epochs",
    "training.resume",
    "training.eval_steps",
    "training.save_steps",
    "training.save_total_limit",
    "training.logging_steps",
    "training.early_stopping_patience",
    "training.early_stopping_threshold",
    "training.sample_every_steps",
    "training.sample_prompts",
    "training.dataloader_num_workers",
    "training.eval_batch_size",
    "evaluation.",
    "monitoring.",
    "paths.",
    "serve.",
    "studio.",
)
"""Config keys (or prefixes ending in ``.``) that may change between a run and its resumption."""


def checkpoint_step(path: Path) -> int | None:
    """Returns the step of a ``checkpoint-<step>`` directory, or None for other names."""
    match = _CHECKPOINT_NAME.match(Path(path).name)
    return int(match.group(1)) if match else None


def reached_the_end(checkpoint: Path, max_steps: int, num_epochs: float | None) -> bool:
    """Tells whether a checkpoint was written at the last step the configured budget allows.

    Args:
        checkpoint: A complete checkpoint directory (holds transformers' ``trainer_state.json``).
        max_steps: ``training.max_steps`` now (<= 0: the budget is in epochs).
        num_epochs: ``training.num_epochs`` now (used when ``max_steps`` <= 0).

    Returns:
        True when the checkpoint's step reached ``max_steps``, or, for an epoch budget, the step count
        the trainer planned for the same number of epochs. A raised budget is not reached.
    """
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))
    global_step = int(state.get("global_step") or 0)
    if max_steps > 0:
        return global_step >= max_steps
    planned_epochs = state.get("num_train_epochs")
    if num_epochs is None or planned_epochs is None or int(planned_epochs) != math.ceil(num_epochs):
        return False
    return global_step >= int(state.get("max_steps") or 0) > 0


def _fsync_path(path: Path) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def seal_checkpoint(directory: Path, extra: dict[str, Any] | None = None) -> Path:
    """Fsyncs every file of a written checkpoint, then writes its manifest last (atomically).

    Until the manifest exists the checkpoint does not count (see :func:`verify_checkpoint`), so a
    crash at any point of the write leaves the earlier checkpoints as the resume points.

    Args:
        directory: The ``checkpoint-<step>`` directory transformers has just written.
        extra: Additional manifest fields (step, epoch).

    Returns:
        The directory.
    """
    files = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.name != CHECKPOINT_MANIFEST:
            _fsync_path(path)
            relative = path.relative_to(directory).as_posix()
            files[relative] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    write_json_atomic(directory / CHECKPOINT_MANIFEST, {**(extra or {}), "files": files})
    _fsync_path(directory)
    _fsync_path(directory.parent)
    return directory


def verify_checkpoint(directory: Path) -> str | None:
    """Checks that a checkpoint is complete and intact.

    Args:
        directory: A ``checkpoint-<step>`` directory.

    Returns:
        None when intact, otherwise a description of the problem.
    """
    manifest_path = Path(directory) / CHECKPOINT_MANIFEST
    if not manifest_path.is_file():
        return f"no {CHECKPOINT_MANIFEST} (incomplete write)"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = manifest["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        return f"unreadable {CHECKPOINT_MANIFEST}: {error}"
    for relative, expected in files.items():
        path = Path(directory) / relative
        if not path.is_file():
            return f"missing file {relative}"
        size = path.stat().st_size
        if size != expected["bytes"]:
            return f"{relative} is {size} bytes, expected {expected['bytes']} (truncated)"
        if sha256_file(path) != expected["sha256"]:
            return f"{relative} has a wrong sha256 (corrupted)"
    return None


def list_checkpoints(checkpoints_dir: Path) -> list[Path]:
    """Lists ``checkpoint-<step>`` directories, newest (highest step) first.

    Args:
        checkpoints_dir: The run's ``checkpoints/`` directory.

    Returns:
        Checkpoint directories sorted by step, descending.
    """
    if not Path(checkpoints_dir).is_dir():
        return []
    found = [path for path in Path(checkpoints_dir).iterdir() if path.is_dir() and checkpoint_step(path) is not None]
    return sorted(found, key=lambda path: checkpoint_step(path) or 0, reverse=True)


def newest_complete_checkpoint(checkpoints_dir: Path) -> Path | None:
    """Finds the newest checkpoint that passes :func:`verify_checkpoint`.

    Corrupted or incomplete checkpoints are skipped with a warning naming the problem.

    Args:
        checkpoints_dir: The run's ``checkpoints/`` directory.

    Returns:
        The checkpoint directory, or None when there is none.
    """
    for checkpoint in list_checkpoints(checkpoints_dir):
        problem = verify_checkpoint(checkpoint)
        if problem is None:
            return checkpoint
        logger.warning("Skipping checkpoint {}: {}", checkpoint.name, problem)
    return None


def remove_unsealed_checkpoints(checkpoints_dir: Path) -> None:
    """Deletes checkpoint writes a crash cut short (no manifest), before training resumes.

    They never count as resume points, but left in place they would count against
    ``training.save_total_limit`` and could outlive sealed checkpoints.

    Args:
        checkpoints_dir: The run's ``checkpoints/`` directory.
    """
    if not Path(checkpoints_dir).is_dir():
        return
    unsealed = [path for path in list_checkpoints(checkpoints_dir) if not (path / CHECKPOINT_MANIFEST).is_file()]
    for path in [*unsealed, *Path(checkpoints_dir).glob(f"{LEGACY_STAGING_PREFIX}*")]:
        logger.info("Removing unfinished checkpoint write {}", path.name)
        shutil.rmtree(path, ignore_errors=True)


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): data}


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Lists the config keys whose values differ, ignoring keys that may change on resume.

    Args:
        saved: The configuration stored in the checkpoint.
        current: The configuration of the resuming run.

    Returns:
        Lines ``key: saved -> current``, sorted by key.
    """
    old, new = _flatten(saved), _flatten(current)
    changed = []
    for key in sorted(set(old) | set(new)):
        if any(
            key == ignored or (ignored.endswith(".") and key.startswith(ignored)) for ignored in RESUME_IGNORED_KEYS
        ):
            continue
        if old.get(key) != new.get(key):
            changed.append(f"{key}: {old.get(key)!r} -> {new.get(key)!r}")
    return changed


def check_resumable(checkpoint: Path, current_config: dict[str, Any]) -> None:
    """Rejects resuming a checkpoint written with a different configuration.

    Args:
        checkpoint: The checkpoint directory.
        current_config: ``settings.to_plain_dict()`` of the resuming run.

    Raises:
        CheckpointError: When the checkpoint is damaged or the configuration changed; the message
            lists every changed key.
    """
    problem = verify_checkpoint(checkpoint)
    if problem is not None:
        raise CheckpointError(f"{checkpoint}: cannot resume: {problem}")
    config_path = checkpoint / TRAINING_CONFIG_FILE
    saved = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    changed = config_differences(saved, current_config)
    if changed:
        raise CheckpointError(
            f"{checkpoint}: the configuration changed since this checkpoint was written; cannot resume "
            "exactly. Changed keys:\n  "
            + "\n  ".join(changed)
            + "\nRestore these values, or start over with training.resume=never (or a new run_name)."
        )
