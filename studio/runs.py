"""Reading run directories for the studio: run lists, live progress, metrics and logs.

Everything shown about a run comes from its directory (``manifest.json``, ``metrics.jsonl``,
``train.log``), so every browser tab and a restarted studio see the same thing. ``metrics.jsonl``
is read incrementally (only the bytes appended since the last poll), which keeps the progress
poll cheap while a run trains.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from core.domain.manifest import EVALUATION_FILE, LOG_FILE, MANIFEST_FILE, METRICS_FILE, RunManifest
from studio.job_records import STUDIO_DIR, tail_text
from studio.jobs import JobSupervisor

_TAIL_BYTES = 64


@dataclass
class _MetricsCacheEntry:
    offset: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    inode: int | None = None
    tail: bytes = b""


class MetricsReader:
    """Incremental, thread-safe reader of ``metrics.jsonl`` files."""

    def __init__(self) -> None:
        self._entries: dict[Path, _MetricsCacheEntry] = {}
        self._lock = threading.Lock()

    def rows(self, run_dir: Path) -> list[dict[str, Any]]:
        """All complete rows of a run's metrics file (new bytes only are parsed).

        Args:
            run_dir: The run directory.

        Returns:
            The rows, in file order (a copy of the list).
        """
        path = Path(run_dir) / METRICS_FILE
        with self._lock:
            entry = self._entries.setdefault(path, _MetricsCacheEntry())
            try:
                stat = path.stat()
            except FileNotFoundError:
                self._entries[path] = _MetricsCacheEntry()
                return []
            with path.open("rb") as handle:
                if stat.st_ino != entry.inode or stat.st_size < entry.offset or not self._same_tail(handle, entry):
                    # replaced or rewritten (a resumed run drops rows after its checkpoint): read it again
                    entry.offset, entry.rows, entry.inode, entry.tail = 0, [], stat.st_ino, b""
                if stat.st_size == entry.offset:
                    return list(entry.rows)
                handle.seek(entry.offset)
                data = handle.read()
                complete = data[: data.rfind(b"\n") + 1]
                for line in complete.splitlines():
                    if line.strip():
                        try:
                            entry.rows.append(json.loads(line))
                        except json.JSONDecodeError:
                            continue
                entry.offset += len(complete)
                entry.tail = (entry.tail + complete)[-_TAIL_BYTES:]
            return list(entry.rows)

    @staticmethod
    def _same_tail(handle: Any, entry: _MetricsCacheEntry) -> bool:
        if not entry.tail:
            return True
        handle.seek(entry.offset - len(entry.tail))
        return handle.read(len(entry.tail)) == entry.tail


METRICS = MetricsReader()
"""Process-wide metrics reader shared by all sessions."""


def deduplicate_by_step(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Rows having ``key``, one per step (the last written wins: a resumed run rewrites steps).

    Args:
        rows: Metrics rows.
        key: Metric that must be present (``loss``, ``eval_loss``, ...).

    Returns:
        Rows sorted by step.
    """
    by_step: dict[int, dict[str, Any]] = {}
    for row in rows:
        if row.get(key) is not None and "step" in row:
            by_step[int(row["step"])] = row
    return [by_step[step] for step in sorted(by_step)]


def load_manifest(run_dir: Path) -> RunManifest | None:
    """The run's manifest, or None while it does not exist or is unreadable.

    Args:
        run_dir: The run directory.

    Returns:
        The manifest or None.
    """
    try:
        return RunManifest.load(run_dir)
    except (OSError, ValueError):
        return None


def run_names(runs_dir: Path) -> list[str]:
    """Names of the run directories (with a manifest), newest first.

    Args:
        runs_dir: ``paths.runs_dir``.

    Returns:
        Run names.
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.exists():
        return []
    found = [
        path
        for path in runs_dir.iterdir()
        if path.is_dir() and not path.name.startswith(".") and (path / MANIFEST_FILE).exists()
    ]
    return [path.name for path in sorted(found, key=lambda path: (path / MANIFEST_FILE).stat().st_mtime, reverse=True)]


def run_status(runs_dir: Path, run_name: str, supervisor: JobSupervisor | None) -> str:
    """Status shown for a run: the job state while queued, else the manifest status.

    Args:
        runs_dir: ``paths.runs_dir``.
        run_name: The run.
        supervisor: Job supervisor (for queued/running jobs).

    Returns:
        A status word.
    """
    if supervisor is not None:
        job = supervisor.latest_job_for(run_name)
        if job is not None and job.state == "queued":
            return "queued"
        if job is not None and job.state == "running":
            manifest = load_manifest(Path(runs_dir) / run_name)
            status = manifest.status if manifest else "starting"
            if (Path(runs_dir) / run_name / "STOP").exists():
                return "stopping"
            return status if status in {"preparing", "training"} else "starting"
    manifest = load_manifest(Path(runs_dir) / run_name)
    if manifest is not None and manifest.status in {"preparing", "training"} and training_process_gone(manifest):
        return "interrupted"
    return manifest.status if manifest else "unknown"


INTERRUPTED_MESSAGE = (
    "The training process ended without finishing (killed, out of memory, or stopped with the studio); "
    "press Resume to continue from the last checkpoint."
)


def training_process_gone(manifest: RunManifest) -> bool:
    """True when a run says it is training but its process on this machine no longer exists.

    A run trained on another machine, or one whose manifest predates the process record, is taken
    at its word (False).

    Args:
        manifest: The run's manifest.

    Returns:
        Whether the recorded training process is gone (or its pid now belongs to another process).
    """
    owner = manifest.process or {}
    if not owner.get("pid") or owner.get("host") != socket.gethostname():
        return False
    try:
        process = psutil.Process(int(owner["pid"]))
        reused = abs(process.create_time() - float(owner.get("started", process.create_time()))) > 1.0
        return reused or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


@dataclass
class Progress:
    """Live progress of a run, computed from its metrics.

    Attributes:
        step: Last logged optimizer step.
        max_steps: Planned steps (0 when unknown).
        loss: Last training loss.
        eval_loss: Last evaluation loss.
        learning_rate: Last learning rate.
        tokens_per_second: Last throughput.
        elapsed_s: Seconds of training so far.
        eta_s: Estimated seconds left (None when unknown).
        samples: Latest sample generations (prompt/output pairs).
        sample_step: Step of those samples.
    """

    step: int = 0
    max_steps: int = 0
    loss: float | None = None
    eval_loss: float | None = None
    learning_rate: float | None = None
    tokens_per_second: float | None = None
    elapsed_s: float | None = None
    eta_s: float | None = None
    samples: list[dict[str, str]] = field(default_factory=list)
    sample_step: int | None = None

    @property
    def fraction(self) -> float:
        """Share of the planned steps done, between 0 and 1."""
        return min(1.0, self.step / self.max_steps) if self.max_steps > 0 else 0.0


def planned_steps(manifest: RunManifest | None) -> int:
    """Number of optimizer steps the run plans, from the manifest (0 when unknown).

    Args:
        manifest: The run manifest.

    Returns:
        Planned steps.
    """
    if manifest is None:
        return 0
    for key in ("total_steps", "max_steps", "planned_steps"):
        value = manifest.metrics.get(key)
        if isinstance(value, int | float) and value > 0:
            return int(value)
    configured = manifest.config.get("training", {}).get("max_steps", -1)
    return int(configured) if isinstance(configured, int) and configured > 0 else 0


def compute_progress(rows: list[dict[str, Any]], manifest: RunManifest | None) -> Progress:
    """Summarises metrics rows into the progress shown in the Train tab.

    Args:
        rows: Metrics rows.
        manifest: The run manifest (planned steps).

    Returns:
        The progress.
    """
    progress = Progress(max_steps=planned_steps(manifest))
    first_elapsed: tuple[int, float] | None = None
    for row in rows:
        step = row.get("step")
        if row.get("loss") is not None:
            progress.step = max(progress.step, int(step or 0))
            progress.loss = row["loss"]
            progress.learning_rate = row.get("learning_rate", progress.learning_rate)
            progress.tokens_per_second = row.get("tokens_per_second", progress.tokens_per_second)
            if row.get("elapsed_s") is not None:
                progress.elapsed_s = float(row["elapsed_s"])
                if first_elapsed is None:
                    first_elapsed = (int(step or 0), float(row["elapsed_s"]))
        if row.get("eval_loss") is not None:
            progress.eval_loss = row["eval_loss"]
        if row.get("samples"):
            progress.samples, progress.sample_step = list(row["samples"]), step
    if progress.max_steps and progress.elapsed_s is not None and first_elapsed is not None:
        done_steps = progress.step - first_elapsed[0]
        if done_steps > 0:
            per_step = (progress.elapsed_s - first_elapsed[1]) / done_steps
            progress.eta_s = max(0.0, per_step * (progress.max_steps - progress.step))
    return progress


def log_tail(runs_dir: Path, run_name: str, supervisor: JobSupervisor | None, max_lines: int = 30) -> str:
    """The end of the run's training log, or of the child's output when the log is not there yet.

    Args:
        runs_dir: ``paths.runs_dir``.
        run_name: The run.
        supervisor: The job supervisor (child output files).
        max_lines: Lines shown.

    Returns:
        Log text.
    """
    text = tail_text(Path(runs_dir) / run_name / LOG_FILE, max_lines=max_lines)
    job = supervisor.latest_job_for(run_name) if supervisor else None
    if job is not None and (not text or job.state == "failed"):
        child = tail_text(supervisor.log_path(job.job_id), max_lines=max_lines)
        text = f"{text}\n{child}".strip() if text else child
    return text


def read_evaluation(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``evaluation.json``, or None.

    Args:
        run_dir: The run (or base-model evaluation) directory.

    Returns:
        The evaluation mapping or None.
    """
    path = Path(run_dir) / EVALUATION_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def evaluated_dirs(runs_dir: Path) -> list[str]:
    """Directories under ``runs_dir`` holding an ``evaluation.json`` (runs and base models).

    Args:
        runs_dir: ``paths.runs_dir``.

    Returns:
        Directory names, sorted.
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.exists():
        return []
    return sorted(
        path.name
        for path in runs_dir.iterdir()
        if path.is_dir() and path.name != STUDIO_DIR and (path / EVALUATION_FILE).exists()
    )


def format_duration(seconds: float | None) -> str:
    """Formats seconds as ``1h 02m``, ``3m 05s`` or ``12s``.

    Args:
        seconds: Duration or None.

    Returns:
        Text (``-`` when unknown).
    """
    if seconds is None:
        return "-"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"
