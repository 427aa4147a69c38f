"""Plotly figures for the evaluation and comparison reports, and their HTML embedding."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

QUALITY_METRICS = (
    ("rouge1", "ROUGE-1"),
    ("rouge2", "ROUGE-2"),
    ("rougeL", "ROUGE-L"),
    ("rougeLsum", "ROUGE-Lsum"),
    ("exact_match", "Exact match"),
    ("normalized_exact_match", "Normalized EM"),
    ("checks_pass_rate", "Instr. acc. strict"),
    ("checks_pass_rate_loose", "Instr. acc. loose"),
    ("checks_all_passed_rate", "Prompt acc. strict"),
    ("checks_all_passed_rate_loose", "Prompt acc. loose"),
)
"""Metrics in [0, 1] shown as bars: (key in evaluation metrics, label)."""

_LAYOUT = {"template": "plotly_white", "height": 420, "margin": {"l": 60, "r": 20, "t": 60, "b": 60}}


def metric_bars(metrics: dict[str, Any], title: str = "Quality metrics (0-1)") -> go.Figure:
    """Bars of the [0, 1] quality metrics of one evaluation.

    Args:
        metrics: The ``metrics`` mapping of an evaluation.
        title: Figure title.

    Returns:
        The figure.
    """
    shown = [(label, metrics[key]) for key, label in QUALITY_METRICS if isinstance(metrics.get(key), int | float)]
    figure = go.Figure(
        go.Bar(
            x=[label for label, _ in shown],
            y=[value for _, value in shown],
            text=[f"{value:.3f}" for _, value in shown],
            textposition="outside",
        )
    )
    figure.update_layout(title=title, yaxis={"range": [0, 1.1]}, **_LAYOUT)
    return figure


def check_bars(by_kind: dict[str, float], title: str = "Instruction checks passed, by kind") -> go.Figure:
    """Bars of the pass rate of each check kind.

    Args:
        by_kind: Check kind -> pass rate.
        title: Figure title.

    Returns:
        The figure.
    """
    figure = go.Figure(
        go.Bar(
            x=list(by_kind),
            y=list(by_kind.values()),
            text=[f"{value:.0%}" for value in by_kind.values()],
            textposition="outside",
        )
    )
    figure.update_layout(title=title, yaxis={"range": [0, 1.1], "tickformat": ".0%"}, **_LAYOUT)
    return figure


def loss_curves(series: dict[str, Sequence[dict[str, Any]]], title: str = "Loss curves") -> go.Figure:
    """Training and evaluation loss over steps, one pair of lines per run (overlaid).

    Args:
        series: Run name -> rows of its ``metrics.jsonl``.
        title: Figure title.

    Returns:
        The figure (solid: training loss, dashed with markers: evaluation loss).
    """
    figure = go.Figure()
    for name, rows in series.items():
        train = [row for row in rows if isinstance(row.get("loss"), int | float) and "step" in row]
        evals = [row for row in rows if isinstance(row.get("eval_loss"), int | float) and "step" in row]
        if train:
            figure.add_trace(
                go.Scatter(
                    x=[row["step"] for row in train],
                    y=[row["loss"] for row in train],
                    mode="lines",
                    name=f"{name} train",
                    legendgroup=name,
                )
            )
        if evals:
            figure.add_trace(
                go.Scatter(
                    x=[row["step"] for row in evals],
                    y=[row["eval_loss"] for row in evals],
                    mode="lines+markers",
                    line={"dash": "dash"},
                    name=f"{name} eval",
                    legendgroup=name,
                )
            )
    figure.update_layout(title=title, xaxis_title="step", yaxis_title="loss (nats/token)", **_LAYOUT)
    return figure


def grouped_metric_bars(rows: dict[str, dict[str, Any]], title: str = "Quality by model (0-1)") -> go.Figure:
    """Grouped bars of the [0, 1] quality metrics, one group per metric and one bar per model.

    Args:
        rows: Model name -> its evaluation metrics.
        title: Figure title.

    Returns:
        The figure.
    """
    figure = go.Figure()
    keys = [
        (key, label)
        for key, label in QUALITY_METRICS
        if any(isinstance(metrics.get(key), int | float) for metrics in rows.values())
    ]
    for name, metrics in rows.items():
        figure.add_trace(
            go.Bar(
                name=name,
                x=[label for _, label in keys],
                y=[metrics.get(key) if isinstance(metrics.get(key), int | float) else None for key, _ in keys],
            )
        )
    figure.update_layout(title=title, barmode="group", yaxis={"range": [0, 1.05]}, **_LAYOUT)
    return figure


def resource_bars(rows: dict[str, dict[str, Any]], title: str = "Cost of training") -> go.Figure:
    """Side-by-side bars of eval loss, peak memory, wall time, throughput and size per run.

    Args:
        rows: Run name -> mapping with ``final_eval_loss``, ``peak_memory_mb``, ``train_runtime_s``,
            ``tokens_per_second``, ``trainable_parameters`` and ``adapter_size_mb``.
        title: Figure title.

    Returns:
        The figure.
    """
    panels = (
        ("final_eval_loss", "final eval loss"),
        ("peak_memory_mb", "peak memory (MB)"),
        ("train_runtime_s", "wall time (s)"),
        ("tokens_per_second", "tokens/s"),
        ("trainable_parameters", "trainable parameters"),
        ("adapter_size_mb", "saved size (MB)"),
    )
    figure = make_subplots(rows=2, cols=3, subplot_titles=[label for _, label in panels])
    names = list(rows)
    for index, (key, _label) in enumerate(panels):
        values = [rows[name].get(key) for name in names]
        figure.add_trace(
            go.Bar(
                x=names, y=[value if isinstance(value, int | float) else None for value in values], showlegend=False
            ),
            row=index // 3 + 1,
            col=index % 3 + 1,
        )
    figure.update_layout(title=title, template="plotly_white", height=620, margin={"l": 60, "r": 20, "t": 80, "b": 60})
    return figure


def figures_html(figures: Sequence[go.Figure]) -> list[str]:
    """HTML fragments of figures; plotly.js is inlined once (the report opens offline).

    Args:
        figures: The figures, in page order.

    Returns:
        One ``<div>`` fragment per figure; the first carries plotly.js.
    """
    return [
        figure.to_html(full_html=False, include_plotlyjs=index == 0, config={"displaylogo": False})
        for index, figure in enumerate(figures)
    ]
