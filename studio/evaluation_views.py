"""What the Evaluate tab shows: metrics with intervals, score and loss bars, check pass rates by kind, per-sample rows."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from core.domain.evaluation_metrics import METRIC_LABELS, SCORE_METRICS
from core.domain.report_format import format_value
from core.domain.sample_tables import SAMPLE_HEADERS, kind_comparison, sample_rows
from studio.charts import PALETTE, Figure, empty_figure, figure
from studio.context import StudioContext
from studio.job_records import ACTIVE_STATES
from studio.runs import evaluated_dirs, format_duration, read_evaluation

METRIC_COLUMN = "metric"
RECORDS_ROW = "Test records answered"
LABELS = dict(METRIC_LABELS)
CHART_LABELS = {
    "normalized_exact_match": "Norm. exact match",
    "checks_pass_rate": "Instr. strict",
    "checks_pass_rate_loose": "Instr. loose",
    "checks_all_passed_rate": "Prompt strict",
    "checks_all_passed_rate_loose": "Prompt loose",
    "bleu": "BLEU / 100",
}
"""Shorter names where the chart's axis has little room."""


def evaluations(runs_dir: Path, names: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """The ``evaluation.json`` of each evaluated run and base model, by directory name.

    Args:
        runs_dir: ``paths.runs_dir``.
        names: Directories to read (default: every evaluated one).

    Returns:
        Name -> evaluation, in name order.
    """
    found = {}
    for name in names if names is not None else evaluated_dirs(runs_dir):
        evaluation = read_evaluation(Path(runs_dir) / name)
        if evaluation is not None:
            found[name] = evaluation
    return found


def metrics_table(found: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per headline metric any evaluation has, one column per run (or base model).

    Args:
        found: Name -> evaluation.

    Returns:
        The table (values rounded to 4 decimals; "-" where a run lacks a metric), ending with the
        number of test records each answered.
    """
    rows = []
    for key, label in METRIC_LABELS:
        values = {name: _rounded(_metric(evaluation, key)) for name, evaluation in found.items()}
        if any(value is not None for value in values.values()):
            shown = {name: _with_interval(value, found[name], key) for name, value in values.items()}
            rows.append({METRIC_COLUMN: label, **shown})
    records = {name: (evaluation.get("data") or {}).get("generated_samples") for name, evaluation in found.items()}
    rows.append({METRIC_COLUMN: RECORDS_ROW, **{name: _shown(value) for name, value in records.items()}})
    return pd.DataFrame(rows, columns=[METRIC_COLUMN, *found]) if found else pd.DataFrame(columns=[METRIC_COLUMN])


def _shown(value: Any) -> Any:
    return "-" if value is None else value


def _with_interval(value: Any, evaluation: dict[str, Any], key: str) -> Any:
    """The value, followed by its 95 % bootstrap interval where the evaluation has one (``0.83 [0.79, 0.87]``)."""
    interval = (evaluation.get("metrics_ci") or {}).get(key)
    if value is None or not interval:
        return _shown(value)
    return f"{format_value(value)} [{format_value(interval[0])}, {format_value(interval[1])}]"


def headline_metrics(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The headline metrics an evaluation has, by label (rounded to 4 decimals).

    Args:
        evaluation: ``evaluation.json`` content.

    Returns:
        Label -> value, in report order.
    """
    values = {LABELS[key]: _rounded(_metric(evaluation, key)) for key, _label in METRIC_LABELS}
    return {label: value for label, value in values.items() if value is not None}


def _metric(evaluation: dict[str, Any], key: str) -> Any:
    value = (evaluation.get("metrics") or {}).get(key)
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _rounded(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


def score_bars(found: dict[str, dict[str, Any]]) -> Figure:
    """Grouped bars of the scores in [0, 1] (ROUGE, exact match, checks) and BLEU / 100, one colour per run.

    Args:
        found: Name -> evaluation.

    Returns:
        The figure.
    """
    keys = [key for key in (*SCORE_METRICS, "bleu") if any(_metric(found[name], key) is not None for name in found)]
    if not keys:
        return empty_figure("Scores (higher is better)", "no scores yet: run an evaluation")
    labels = [CHART_LABELS.get(key, LABELS[key]) for key in keys]
    traces = []
    for index, (name, evaluation) in enumerate(found.items()):
        values = [_metric(evaluation, key) for key in keys]
        values = [
            value / 100 if key == "bleu" and value is not None else value
            for key, value in zip(keys, values, strict=True)
        ]
        traces.append({"type": "bar", "name": name, "x": labels, "y": values, "marker": {"color": _colour(index)}})
    return figure(traces, "Scores (higher is better)", barmode="group", yaxis={"range": [0, 1]})


def loss_bars(found: dict[str, dict[str, Any]]) -> Figure:
    """The response loss of each run and base model on the test split (lower is better).

    Args:
        found: Name -> evaluation.

    Returns:
        The figure.
    """
    names = [name for name in found if _metric(found[name], "eval_loss") is not None]
    if not names:
        return empty_figure("Test loss (lower is better)", "no evaluation yet")
    trace = {
        "type": "bar",
        "x": names,
        "y": [found[name]["metrics"]["eval_loss"] for name in names],
        "marker": {"color": [_colour(list(found).index(name)) for name in names]},
        "text": [f"{found[name]['metrics']['eval_loss']:.3f}" for name in names],
        "textposition": "outside",
    }
    top = max(trace["y"]) * 1.2
    return figure([trace], "Test loss (lower is better)", showlegend=False, yaxis={"range": [0, top]})


def _colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def sample_table(evaluation: dict[str, Any] | None) -> pd.DataFrame:
    """Per-sample rows, worst score first: prompt, answer, reference, sentence BLEU, ROUGE-L, checks passed.

    Args:
        evaluation: ``evaluation.json`` content (None: an empty table).

    Returns:
        The table (scores are numbers, so a click on their header sorts them).
    """
    return pd.DataFrame(sample_rows((evaluation or {}).get("samples") or []), columns=SAMPLE_HEADERS)


def kind_table(found: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Instruction pass rates by check kind, ``strict / loose``, one column per run (or base model).

    Args:
        found: Name -> evaluation.

    Returns:
        The table (one row per check kind any evaluation ran).
    """
    summaries = {name: (evaluation.get("metrics") or {}).get("checks") or {} for name, evaluation in found.items()}
    headers, rows = kind_comparison(summaries)
    return pd.DataFrame(rows, columns=headers)


def evaluation_jobs_line(context: StudioContext) -> str:
    """What the evaluation queue is doing: each queued or running evaluation and for how long.

    Args:
        context: Studio context.

    Returns:
        Markdown text (empty when no evaluation is queued or running).
    """
    active = [job for job in context.supervisor.jobs() if job.kind == "evaluate" and job.state in ACTIVE_STATES]
    parts = []
    for job in active:
        if job.state == "running" and job.started_at:
            elapsed = (datetime.now(UTC) - datetime.fromisoformat(job.started_at)).total_seconds()
            parts.append(f"**{job.run_name}** evaluating for {format_duration(elapsed)}")
        else:
            parts.append(f"**{job.run_name}** queued")
    if not parts:
        return ""
    return "⏳ " + "; ".join(parts) + " (results appear here when each finishes)"
