"""What the Train tab shows and does about runs: run choices, the queue table, the latest samples, resuming."""

from __future__ import annotations

import html
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from core.domain.config import Settings, settings_from_dict
from core.domain.manifest import LOG_FILE, STOP_REQUEST_FILE
from studio.context import StudioContext
from studio.job_records import plain_config
from studio.runs import compute_progress, load_manifest, run_names


def samples_markdown(rows: list[dict[str, Any]]) -> str:
    """The latest sample generations as Markdown.

    Args:
        rows: Metrics rows.

    Returns:
        Markdown text.
    """
    progress = compute_progress(rows, None)
    if not progress.samples:
        return "*No sample generations yet (they appear every `sample_every_steps`).*"
    parts = [f"**Samples at step {progress.sample_step}**"]
    for sample in progress.samples[:4]:
        prompt = html.escape(str(sample.get("prompt", "")))[:400]
        output = html.escape(str(sample.get("output", "")))[:800]
        parts.append(f"> **Prompt:** {prompt}\n>\n> **Output:** {output}")
    return "\n\n".join(parts)


def queue_frame(context: StudioContext) -> pd.DataFrame:
    """The running and queued jobs as a table.

    Args:
        context: Studio context.

    Returns:
        One row per job (running first).
    """
    rows = []
    current = context.supervisor.current()
    if current is not None:
        rows.append({"job": current.kind, "run": current.run_name, "state": "running", "since": current.started_at})
    for job in context.supervisor.queued():
        rows.append({"job": job.kind, "run": job.run_name, "state": "queued", "since": job.queued_at})
    return pd.DataFrame(rows, columns=["job", "run", "state", "since"])


def run_choices(context: StudioContext, include: str | None = None) -> list[str]:
    """Runs for the run selector: run directories plus queued runs, newest first.

    Args:
        context: Studio context.
        include: A name that must be present (e.g. a run just queued).

    Returns:
        Run names.
    """
    names = run_names(context.runs_dir)
    for job in context.supervisor.jobs():
        if job.kind == "train" and job.state in {"queued", "running"} and job.run_name not in names:
            names.insert(0, job.run_name)
    if include and include not in names:
        names.insert(0, include)
    return names


def initial_run(context: StudioContext) -> str | None:
    """The run the Train tab shows when a page opens: the active run, else the newest.

    Args:
        context: Studio context.

    Returns:
        A run name or None.
    """
    active = context.active_run()
    if active:
        return active
    names = run_choices(context)
    return names[0] if names else None


def resume_settings(context: StudioContext, selected: str) -> Settings:
    """The settings that resume a run: its own stored configuration, ``resume=auto``, the studio's paths.

    Args:
        context: Studio context.
        selected: The run.

    Returns:
        The settings to queue.

    Raises:
        ValueError: When the run has no configuration, is completed or is still stopping.
    """
    run_dir = context.runs_dir / selected
    manifest = load_manifest(run_dir)
    if manifest is None or not manifest.config:
        raise ValueError(f"run {selected!r} has no manifest with its configuration; it cannot be resumed")
    if manifest.status == "completed":
        raise ValueError(f"run {selected!r} is already completed")
    if (run_dir / STOP_REQUEST_FILE).exists() and context.active_run() == selected:
        raise ValueError(f"run {selected!r} is still stopping; resume it once it has stopped")
    nested = manifest.config
    nested = {**nested, "run_name": selected, "training": {**nested.get("training", {}), "resume": "auto"}}
    nested["paths"] = plain_config(context.settings)["paths"]
    return settings_from_dict(nested)


def log_hint_text(context: StudioContext, name: str | None) -> str:
    """Where the run's full log is, and the command that opens its TensorBoard curves.

    Args:
        context: Studio context.
        name: The selected run.

    Returns:
        Markdown text (empty without a run).
    """
    if not name:
        return ""
    run_dir = context.runs_dir / name
    hint = f"Full log: `{run_dir / LOG_FILE}`"
    if (run_dir / "tensorboard").is_dir():
        hint += f"  \nTensorBoard: `tensorboard --logdir {run_dir / 'tensorboard'}`"
    return hint


def full_log_copy(context: StudioContext, name: str | None) -> str:
    """A copy of the run's whole ``train.log`` in a temporary folder, for the browser to download.

    Args:
        context: Studio context.
        name: The selected run.

    Returns:
        The copy's path.

    Raises:
        ValueError: Without a run, or when the run has no log yet.
    """
    if not name:
        raise ValueError("select a run first")
    log = context.runs_dir / name / LOG_FILE
    if not log.is_file():
        raise ValueError(f"{name} has no log yet")
    copy = Path(tempfile.mkdtemp(prefix="finetune-studio-log-")) / f"{name}-{LOG_FILE}"
    shutil.copyfile(log, copy)
    return str(copy)
