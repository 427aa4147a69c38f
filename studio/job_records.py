"""What a studio job is and the files around it: the job record, its states, its configuration and log.

:mod:`studio.jobs` runs the jobs; this module holds what the supervisor, the runs view and the
tabs share about them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import psutil

from core.domain.config import Settings
from core.domain.manifest import MANIFEST_FILE, RunManifest

JobKind = Literal["train", "evaluate", "compare"]
JobState = Literal["queued", "running", "finished", "failed", "cancelled", "interrupted"]

STUDIO_DIR = ".studio"
"""Folder under ``paths.runs_dir`` holding the studio's job files."""

ACTIVE_STATES = ("queued", "running")


@dataclass
class Job:
    """One unit of background work.

    Attributes:
        job_id: Unique id, also the stem of the job's files.
        kind: ``train``, ``evaluate`` or ``compare``.
        run_name: The run trained (train), evaluated (evaluate) or a label (compare).
        arguments: Extra CLI arguments after ``--config``.
        state: Lifecycle state.
        queued_at: ISO time of submission.
        started_at: ISO time the child started.
        finished_at: ISO time the child ended.
        pid: Child process id while running.
        returncode: Exit code of the child.
        stop_requested_at: Epoch seconds of the stop request, if any.
        message: Human-readable outcome.
        output: A path the job writes (e.g. the comparison report folder).
    """

    job_id: str
    kind: JobKind
    run_name: str
    arguments: list[str] = field(default_factory=list)
    state: JobState = "queued"
    queued_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    started_at: str | None = None
    finished_at: str | None = None
    pid: int | None = None
    returncode: int | None = None
    stop_requested_at: float | None = None
    message: str = ""
    output: str | None = None


def now_iso() -> str:
    """The current UTC time as ISO text (the jobs' timestamps)."""
    return datetime.now(UTC).isoformat()


def live_child(pid: int | None, job_id: str) -> psutil.Process | None:
    """The running child of a job: the process ``pid`` when it is alive and its command line names the job."""
    if not pid:
        return None
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        if any(job_id in part for part in process.cmdline()):
            return process
    except psutil.Error:
        return None
    return None


def plain_config(settings: Settings) -> dict[str, Any]:
    """The settings as a mapping a child can load with ``--config`` (secrets and Nones dropped).

    Args:
        settings: Validated settings.

    Returns:
        A YAML-safe mapping.
    """

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: clean(item) for key, item in value.items() if item is not None and item != "**********"}
        if isinstance(value, list):
            return [clean(item) for item in value]
        return value

    return clean(settings.to_plain_dict())


def tail_text(path: Path, max_lines: int = 40, max_bytes: int = 32_768) -> str:
    """The last lines of a text file, read from its end (cheap on large logs).

    Args:
        path: The file.
        max_lines: Lines to keep.
        max_bytes: Bytes read from the end at most.

    Returns:
        The text, or an empty string when the file does not exist.
    """
    path = Path(path)
    if not path.exists():
        return ""
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - max_bytes))
        data = handle.read().decode("utf-8", errors="replace")
    return "\n".join(data.splitlines()[-max_lines:])


def failure_message(log_path: Path, returncode: int | None) -> str:
    """Why a job failed, in one line: its exit code (or the signal that killed it) and its last error line.

    Args:
        log_path: The job's log (the child's stdout and stderr).
        returncode: The child's exit code (negative: killed by that signal).

    Returns:
        The message shown in the queue and the run's manifest.
    """
    tail = tail_text(log_path, max_lines=60)
    error_lines = [line for line in tail.splitlines() if " ERROR " in line or "Error" in line]
    reason = error_lines[-1].strip() if error_lines else ""
    if returncode is not None and returncode < 0:
        reason = f"the process was killed by signal {-returncode} (out of memory?) {reason}".strip()
    return f"exit code {returncode}: {reason}" if reason else f"exit code {returncode}"


def run_status(run_dir: Path) -> str | None:
    """The status in a run's manifest, or None when there is no readable manifest."""
    if not (run_dir / MANIFEST_FILE).exists():
        return None
    try:
        return RunManifest.load(run_dir).status
    except (OSError, ValueError):
        return None


def settle_run(run_dir: Path, status: str, message: str, unless: set[str]) -> None:
    """Writes a terminal status into a run's manifest for a job that ended without doing so itself.

    A crashed or killed child cannot write its own ending; whoever survives (the supervisor) does.

    Args:
        run_dir: The run.
        status: ``failed`` or ``stopped``.
        message: The reason, stored as the manifest's error.
        unless: Statuses left as they are (the run already ended by itself).
    """
    if (run_dir / MANIFEST_FILE).exists():
        try:
            manifest = RunManifest.load(run_dir)
        except (OSError, ValueError):
            return
    else:
        manifest = RunManifest(run_name=run_dir.name)
    if manifest.status in unless:
        return
    manifest.status, manifest.error = status, message  # type: ignore[assignment]
    manifest.save(run_dir)


def start_detached(command: list[str], working_dir: Path, log_handle: Any, environment: dict[str, str]) -> Any:
    """Starts a child in its own session, stdout and stderr into ``log_handle``, no stdin.

    Args:
        command: The command line.
        working_dir: Its working directory.
        log_handle: Open binary file for its output.
        environment: Its environment.

    Returns:
        The ``subprocess.Popen``.
    """
    import subprocess

    return subprocess.Popen(
        command,
        cwd=working_dir,
        stdout=log_handle,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=environment,
        start_new_session=True,
    )
