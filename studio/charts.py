"""Plotly figures of the studio: loss curves, learning rate and throughput, overlays, histograms.

Figures are built as plain plotly JSON (traces and layout as dicts) and handed to ``gr.Plot`` as
ready-made plot data: building ``plotly.graph_objects`` figures costs tens of milliseconds each
(property validation), which the progress poll cannot afford while a run trains.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Literal

from gradio.components.plot import PlotData

from studio.runs import deduplicate_by_step

XAxis = Literal["step", "tokens", "time"]

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777")

Figure = PlotData
"""What the chart functions return: serialized plotly JSON that ``gr.Plot`` displays as is."""

_LAYOUT: dict[str, Any] = {
    "margin": {"l": 50, "r": 20, "t": 40, "b": 40},
    "height": 320,
    "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "right", "x": 1},
    "font": {"size": 12},
}


@functools.lru_cache(maxsize=1)
def _template() -> dict[str, Any]:
    import plotly.io

    return plotly.io.templates["plotly_white"].to_plotly_json()


def figure(traces: list[dict[str, Any]], title: str, **layout: Any) -> Figure:
    """Serializes traces and layout as plotly JSON for ``gr.Plot``.

    Args:
        traces: Plotly trace dicts (``type``, ``x``, ``y``, ...).
        title: Figure title.
        **layout: Layout entries (axis titles, shapes, ...), over the studio defaults.

    Returns:
        The plot data.
    """
    full_layout = {**_LAYOUT, "template": _template(), "title": {"text": title}, **layout}
    return PlotData(type="plotly", plot=json.dumps({"data": traces, "layout": full_layout}, default=float))


def empty_figure(title: str, message: str) -> Figure:
    """A figure without axes that says why it is empty (what to do to fill it)."""
    annotation = {"text": message, "showarrow": False, "x": 0.5, "y": 0.5, "xref": "paper", "yref": "paper"}
    return figure([], title, annotations=[annotation], xaxis={"visible": False}, yaxis={"visible": False})


def _line(x: list[Any], y: list[Any], name: str, **extra: Any) -> dict[str, Any]:
    return {"type": "scatter", "x": x, "y": y, "name": name, "mode": "lines", **extra}


def loss_figure(rows: list[dict[str, Any]], title: str = "Loss") -> Figure:
    """Training loss and evaluation loss against the optimizer step.

    Args:
        rows: Metrics rows of one run.
        title: Figure title.

    Returns:
        The figure.
    """
    train = deduplicate_by_step(rows, "loss")
    evaluation = deduplicate_by_step(rows, "eval_loss")
    if not train and not evaluation:
        return empty_figure(title, "waiting for the first logged step")
    traces = []
    if train:
        traces.append(
            _line(
                [row["step"] for row in train],
                [row["loss"] for row in train],
                "train loss",
                mode="lines+markers" if len(train) < 40 else "lines",
                line={"color": PALETTE[0]},
            )
        )
    if evaluation:
        traces.append(
            _line(
                [row["step"] for row in evaluation],
                [row["eval_loss"] for row in evaluation],
                "eval loss",
                mode="lines+markers",
                line={"color": PALETTE[1], "dash": "dash"},
            )
        )
    return figure(traces, title, xaxis={"title": {"text": "step"}}, yaxis={"title": {"text": "loss"}})


def rate_figure(rows: list[dict[str, Any]]) -> Figure:
    """Learning rate (left axis) and tokens per second (right axis) against the step.

    Args:
        rows: Metrics rows of one run.

    Returns:
        The figure.
    """
    title = "Learning rate and throughput"
    train = deduplicate_by_step(rows, "loss")
    if not train:
        return empty_figure(title, "waiting for the first logged step")
    steps = [row["step"] for row in train]
    traces = [
        _line(steps, [row.get("learning_rate") for row in train], "learning rate", line={"color": PALETTE[3]}),
        _line(
            steps, [row.get("tokens_per_second") for row in train], "tokens/s", yaxis="y2", line={"color": PALETTE[2]}
        ),
    ]
    return figure(
        traces,
        title,
        xaxis={"title": {"text": "step"}},
        yaxis={"title": {"text": "learning rate"}, "exponentformat": "e"},
        yaxis2={"title": {"text": "tokens/s"}, "overlaying": "y", "side": "right", "showgrid": False},
    )


def _x_values(rows: list[dict[str, Any]], axis: XAxis) -> list[float | None]:
    if axis == "step":
        return [row["step"] for row in rows]
    if axis == "time":
        return [row.get("elapsed_s") for row in rows]
    values: list[float | None] = []
    for row in rows:
        counted = next((row[key] for key in ("tokens", "num_tokens", "total_tokens") if row.get(key) is not None), None)
        if counted is None and row.get("tokens_per_second") is not None and row.get("elapsed_s") is not None:
            counted = row["tokens_per_second"] * row["elapsed_s"]
        values.append(counted)
    return values


def overlay_figure(runs: dict[str, list[dict[str, Any]]], axis: XAxis = "step") -> Figure:
    """Loss curves of several runs on one figure (solid: train, dashed: eval).

    Args:
        runs: Run name -> metrics rows.
        axis: ``step``, ``tokens`` (tokens processed; from throughput x time when not logged) or
            ``time`` (seconds of training).

    Returns:
        The figure.
    """
    if not runs:
        return empty_figure("Loss curves", "select runs to compare")
    traces = []
    for index, (name, rows) in enumerate(runs.items()):
        color = PALETTE[index % len(PALETTE)]
        train = deduplicate_by_step(rows, "loss")
        evaluation = deduplicate_by_step(rows, "eval_loss")
        if axis != "step":
            by_step = {row["step"]: row for row in train}
            evaluation = [
                {**by_step.get(row["step"], {"elapsed_s": 0.0, "tokens_per_second": 0.0}), **row} for row in evaluation
            ]
        if train:
            traces.append(
                _line(_x_values(train, axis), [row["loss"] for row in train], f"{name} train", line={"color": color})
            )
        if evaluation:
            traces.append(
                _line(
                    _x_values(evaluation, axis),
                    [row["eval_loss"] for row in evaluation],
                    f"{name} eval",
                    mode="lines+markers",
                    line={"color": color, "dash": "dash"},
                )
            )
    titles = {"step": "step", "tokens": "tokens processed", "time": "seconds"}
    return figure(traces, "Loss curves", xaxis={"title": {"text": titles[axis]}}, yaxis={"title": {"text": "loss"}})


def _guide(axis: Literal["x", "y"], value: float, label: str) -> tuple[dict[str, Any], dict[str, Any]]:
    line = {"type": "line", "line": {"dash": "dot", "color": "#6b7280"}}
    if axis == "x":
        shape = {**line, "x0": value, "x1": value, "y0": 0, "y1": 1, "xref": "x", "yref": "paper"}
        note = {"x": value, "y": 1, "xref": "x", "yref": "paper", "text": label, "showarrow": False}
    else:
        shape = {**line, "y0": value, "y1": value, "x0": 0, "x1": 1, "yref": "y", "xref": "paper"}
        note = {"y": value, "x": 1, "yref": "y", "xref": "paper", "text": label, "showarrow": False}
    return shape, note


def length_histogram(lengths: dict[str, list[int]], max_length: int | None = None) -> Figure:
    """Histogram of tokenized example lengths per split.

    Args:
        lengths: Split -> token counts.
        max_length: ``data.max_seq_length``, drawn as a vertical line.

    Returns:
        The figure.
    """
    if not any(lengths.values()):
        return empty_figure("Token lengths", "prepare the data to see token lengths")
    traces = [
        {"type": "histogram", "x": values, "name": split, "opacity": 0.75, "marker": {"color": PALETTE[index]}}
        for index, (split, values) in enumerate(lengths.items())
        if values
    ]
    extra: dict[str, Any] = {}
    if max_length:
        shape, note = _guide("x", max_length, "max_seq_length")
        extra = {"shapes": [shape], "annotations": [note]}
    return figure(
        traces,
        "Token lengths",
        barmode="overlay",
        xaxis={"title": {"text": "tokens"}},
        yaxis={"title": {"text": "examples"}},
        **extra,
    )
