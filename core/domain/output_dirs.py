"""Output directories the project may replace: only its own, or with the user's explicit flag.

A command that writes a whole directory (``merge``, ``python -m studio.space``) puts a marker file
in it listing what it wrote. Running it again may replace that directory only when the marker is
there, was written by the same kind of command, and nothing else has been added since; otherwise it
stops with :class:`~core.domain.errors.OutputExistsError`, naming the path and the flag
(``--overwrite``) that allows the replacement.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

from loguru import logger

from core.domain.errors import OutputExistsError
from core.domain.manifest import write_json_atomic

MARKER_FILE = ".finetune-studio-output.json"
PREVIOUS_PREFIX = "previous-"  # earlier outputs of a run trained again with --force


def check_replaceable(path: Path, kind: str, overwrite: bool, flag: str = "--overwrite") -> None:
    """Stops unless ``path`` may be replaced by a command of ``kind``.

    Replaceable are: a path that does not exist, an empty directory, and a directory whose marker
    names ``kind`` and which holds nothing beyond what the marker lists. ``overwrite`` allows any
    directory (never a file).

    Args:
        path: The output directory.
        kind: What writes it (``merge``, ``space assembly``).
        overwrite: The user passed ``flag``.
        flag: The option that allows the replacement, named in the error.

    Raises:
        OutputExistsError: When ``path`` holds anything this command did not create.
    """
    path = Path(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise OutputExistsError(f"{path}: exists and is a file, not an output directory; choose another output")
    if overwrite or not any(path.iterdir()):
        return
    foreign = foreign_entries(path, kind)
    if foreign:
        listed = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise OutputExistsError(
            f"{path}: already exists and holds files not written by a previous {kind} ({listed}); nothing was changed. "
            f"Choose another output directory, or pass {flag} to replace it (its contents will be deleted)."
        )


def foreign_entries(path: Path, kind: str) -> list[str]:
    """Names of the entries in ``path`` that a ``kind`` command did not write (all of them without a marker).

    Args:
        path: An existing directory.
        kind: The command kind the marker must name.

    Returns:
        Sorted entry names; empty when the directory is entirely the command's own.
    """
    entries = sorted(entry.name for entry in path.iterdir() if entry.name != MARKER_FILE)
    marker = _read_marker(path)
    if marker is None or marker.get("kind") != kind:
        return entries
    own = set(marker.get("entries") or [])
    return [name for name in entries if name not in own]


def mark_output(path: Path, kind: str) -> None:
    """Writes the marker listing every entry ``path`` holds now (call it when the output is complete).

    Args:
        path: The directory just written.
        kind: The command kind.
    """
    entries = sorted(entry.name for entry in Path(path).iterdir() if entry.name != MARKER_FILE)
    write_json_atomic(
        Path(path) / MARKER_FILE,
        {
            "kind": kind,
            "written_by": "finetune-studio",
            "written_at": datetime.now(UTC).isoformat(),
            "entries": entries,
        },
    )


def replace_output(staging: Path, destination: Path) -> None:
    """Moves a finished ``staging`` directory to ``destination``, removing the earlier output first.

    Call :func:`check_replaceable` on ``destination`` before any expensive work; this only removes
    what that check allowed.

    Args:
        staging: The complete new output (a sibling of ``destination``).
        destination: Where it goes.
    """
    if destination.exists():
        logger.info("Replacing the earlier output in {}", destination)
        shutil.rmtree(destination)
    staging.rename(destination)


def _read_marker(path: Path) -> dict | None:
    try:
        marker = json.loads((path / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def move_aside(directory: Path, keep: tuple[str, ...] = ()) -> Path:
    """Moves every entry of ``directory`` (except ``keep`` and earlier ``previous-*``) into ``previous-<UTC time>/``.

    Args:
        directory: A run directory whose outputs are about to be written again.
        keep: Entry names that stay where they are (e.g. the open log file).

    Returns:
        The ``previous-<time>`` directory now holding the earlier outputs.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = Path(directory) / f"{PREVIOUS_PREFIX}{stamp}"
    suffix = 1
    while aside.exists():
        suffix += 1
        aside = Path(directory) / f"{PREVIOUS_PREFIX}{stamp}-{suffix}"
    aside.mkdir()
    for entry in sorted(Path(directory).iterdir()):
        if entry == aside or entry.name in keep or entry.name.startswith(PREVIOUS_PREFIX):
            continue
        entry.rename(aside / entry.name)
    logger.warning("Moved the earlier outputs of {} to {}", Path(directory).name, aside)
    return aside
