"""Managing finished runs: rename a run directory (its manifest follows) or delete it.

Both refuse anything that is not a run (a directory holding ``manifest.json`` directly under
``paths.runs_dir``), and renaming refuses a name that is taken or not a valid ``run_name``. Whether
a run is busy (training, queued, evaluated right now) is the caller's to check: the studio asks its
job supervisor first.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from loguru import logger

from core.domain.config import Settings
from core.domain.errors import ConfigError
from core.domain.manifest import MANIFEST_FILE, RunManifest

RUN_NAME_PATTERN = re.compile(Settings.model_fields["run_name"].metadata[0].pattern)
"""The ``run_name`` setting's own pattern (letters, digits, ``.``, ``_``, ``-``; up to 100 characters)."""


def run_directory(runs_dir: Path, name: str) -> Path:
    """The directory of an existing run.

    Args:
        runs_dir: ``paths.runs_dir``.
        name: Run name.

    Returns:
        ``runs_dir / name``.

    Raises:
        ConfigError: When ``name`` is not a run there.
    """
    if not name or not RUN_NAME_PATTERN.match(name):
        raise ConfigError(f"run {name!r}: not a run name")
    directory = Path(runs_dir) / name
    if not (directory / MANIFEST_FILE).is_file():
        raise ConfigError(f"run {name!r}: no such run in {runs_dir}")
    return directory


def rename_run(runs_dir: Path, name: str, new_name: str) -> Path:
    """Renames a run: its directory moves and its manifest records the new name.

    Args:
        runs_dir: ``paths.runs_dir``.
        name: The run's current name.
        new_name: The new name (a valid ``run_name`` not used by another run).

    Returns:
        The run's new directory.

    Raises:
        ConfigError: When the run does not exist, or the new name is invalid or taken.
    """
    source = run_directory(runs_dir, name)
    new_name = (new_name or "").strip()
    if not RUN_NAME_PATTERN.match(new_name):
        raise ConfigError(
            f"run name {new_name!r}: use letters, digits, '.', '_' or '-' (up to 100 characters, "
            "starting with a letter or digit)"
        )
    destination = Path(runs_dir) / new_name
    if destination.exists():
        raise ConfigError(f"run name {new_name!r} is taken; choose another")
    source.rename(destination)
    manifest = RunManifest.load(destination)
    manifest.run_name = new_name
    manifest.config = {**manifest.config, "run_name": new_name}
    manifest.save(destination)
    logger.info("Renamed run {} to {}", name, new_name)
    return destination


def delete_run(runs_dir: Path, name: str) -> None:
    """Deletes a run directory with everything in it (checkpoints, final model, reports).

    Args:
        runs_dir: ``paths.runs_dir``.
        name: The run.

    Raises:
        ConfigError: When ``name`` is not a run.
    """
    directory = run_directory(runs_dir, name)
    shutil.rmtree(directory)
    logger.info("Deleted run {} ({})", name, directory)
