"""The Train tab's status block: status pill (``evaluating k/N`` while a run evaluates), bar and key figures.

The live phase and the time estimate come from the run's ``progress.json`` (written by the training
process at every step and evaluation batch, see ``core/infrastructure/training/progress.py``); the
ETA there includes the remaining evaluations, sample generations and checkpoints, each timed earlier
in the run. Without that file (older runs) the ETA is extrapolated from the logged steps.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

import gradio as gr
from loguru import logger

from core.domain.manifest import PROGRESS_FILE
from studio.charts import loss_figure, rate_figure
from studio.context import StudioContext
from studio.run_views import queue_frame, samples_markdown
from studio.runs import (
    INTERRUPTED_MESSAGE,
    METRICS,
    compute_progress,
    format_duration,
    load_manifest,
    log_tail,
    run_status,
)

LIVE_STATUSES = {"training", "starting", "stopping"}


def read_progress(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``progress.json``, or None when absent or unreadable.

    Args:
        run_dir: The run directory.

    Returns:
        The progress mapping or None.
    """
    try:
        return json.loads((Path(run_dir) / PROGRESS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def live_label(status: str, progress: dict[str, Any] | None) -> str:
    """The pill text: ``evaluating k/N`` while a training run evaluates, else the status.

    Args:
        status: The run status (``training``, ``stopping``, ...).
        progress: The run's progress file.

    Returns:
        The label.
    """
    if status == "training" and progress and progress.get("phase") == "evaluating":
        return f"evaluating {progress.get('eval_done', 0)}/{progress.get('eval_total', 0)}"
    return status


def live_eta(progress: dict[str, Any] | None, fallback: float | None, now: float | None = None) -> float | None:
    """Seconds left: the run's own estimate minus the time since it was written, else ``fallback``.

    Args:
        progress: The run's progress file.
        fallback: The estimate from the logged steps.
        now: Current epoch time (tests).

    Returns:
        Seconds or None.
    """
    if not progress or progress.get("eta_s") is None:
        return fallback
    since = (now if now is not None else time.time()) - float(progress.get("updated_at") or 0.0)
    return max(0.0, float(progress["eta_s"]) - max(since, 0.0))


def stop_message(run_dir: Path, run_name: str) -> str:
    """What Stop does now, in plain words.

    Args:
        run_dir: The run directory.
        run_name: The run.

    Returns:
        The message.
    """
    progress = read_progress(run_dir)
    if progress and progress.get("phase") == "evaluating":
        return f"{run_name}: stopping: the evaluation in progress is skipped, a checkpoint is saved"
    return f"{run_name}: stopping at the next training step (a checkpoint is kept)"


def _kpi(label: str, value: str) -> str:
    return (
        f'<div class="kpi"><div class="kpi-label">{label}</div><div class="kpi-value">{html.escape(value)}</div></div>'
    )


def _number(value: float | None, pattern: str) -> str:
    return pattern.format(value) if isinstance(value, int | float) else "-"


def _error_line(context: StudioContext, run_name: str, manifest: Any, status: str) -> str:
    if manifest is not None and manifest.error and status in {"failed", "stopped"}:
        return f'<p class="fit-no">{html.escape(manifest.error)}</p>'
    if status == "interrupted":
        return f'<p class="fit-no">{html.escape(INTERRUPTED_MESSAGE)}</p>'
    job = context.supervisor.latest_job_for(run_name)
    if job is not None and job.state == "failed":
        return f'<p class="fit-no">{html.escape(job.message)}</p>'
    return ""


def status_html(context: StudioContext, run_name: str | None) -> tuple[str, list[dict[str, Any]]]:
    """The status block of a run (status pill, progress bar, key figures) and its metrics rows.

    Args:
        context: Studio context.
        run_name: Selected run.

    Returns:
        ``(html, rows)``.
    """
    if not run_name:
        return "<p>No run selected. Fill the form and press <b>Start</b>.</p>", []
    run_dir = context.runs_dir / run_name
    manifest = load_manifest(run_dir)
    rows = METRICS.rows(run_dir)
    status = run_status(context.runs_dir, run_name, context.supervisor)
    progress = compute_progress(rows, manifest)
    live = read_progress(run_dir) if status in LIVE_STATUSES else None
    label = live_label(status, live)
    eta = live_eta(live, progress.eta_s) if status in {"training", "starting"} else None
    technique = (manifest.config.get("technique", {}) or {}).get("name", "") if manifest else ""
    model = (manifest.config.get("model", {}) or {}).get("name", "") if manifest else ""
    steps = f"{progress.step} / {progress.max_steps}" if progress.max_steps else str(progress.step)
    block = (
        f'<div id="run-status"><b>{html.escape(run_name)}</b> '
        f'<span class="status-pill status-{status}" id="status-pill">{html.escape(label)}</span> '
        f"<span>{html.escape(technique)} · {html.escape(Path(model).name)}</span>"
        f'<div class="progress-outer"><div class="progress-inner" style="width:{round(progress.fraction * 100)}%">'
        "</div></div>"
        '<div class="kpi-grid">'
        + _kpi("step", steps)
        + _kpi("loss", _number(progress.loss, "{:.4f}"))
        + _kpi("eval loss", _number(progress.eval_loss, "{:.4f}"))
        + _kpi("learning rate", _number(progress.learning_rate, "{:.2e}"))
        + _kpi("tokens/s", _number(progress.tokens_per_second, "{:,.0f}"))
        + _kpi("ETA", format_duration(eta) if eta is not None else "-")
        + "</div>"
        + _error_line(context, run_name, manifest, status)
        + "</div>"
    )
    return block, rows


def progress_view(context: StudioContext, selected: str | None, last: Any) -> tuple[Any, ...]:
    """One poll of the selected run: status block, curves, log tail, samples, queue (charts only on change).

    Args:
        context: Studio context.
        selected: The run shown.
        last: The previous poll's signature (run, metric rows, status).

    Returns:
        The Train tab's poll outputs and the new signature; a failure shows a message instead of raising.
    """
    try:
        block, rows = status_html(context, selected)
        current = run_status(context.runs_dir, selected, context.supervisor) if selected else None
        signature = (selected, len(rows), current)
        changed = signature != last
        return (
            block,
            loss_figure(rows) if changed else gr.skip(),
            rate_figure(rows) if changed else gr.skip(),
            log_tail(context.runs_dir, selected, context.supervisor, max_lines=40) if selected else "",
            samples_markdown(rows) if changed else gr.skip(),
            queue_frame(context),
            signature,
        )
    except Exception as error:  # a poll must never kill the page; log and show it
        logger.opt(exception=error).error("Progress poll failed")
        return (f'<p class="fit-no">Could not read the run: {html.escape(str(error))}</p>', *[gr.skip()] * 5, last)
