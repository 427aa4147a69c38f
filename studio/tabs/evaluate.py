"""Evaluate tab: queue benchmark runs on the test split, then read metrics and per-sample outputs."""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from core.application.evaluate import base_output_dir
from studio.context import Refresher, StudioContext, plain_errors
from studio.runs import evaluated_dirs, load_manifest, read_evaluation, run_names

BASE_CHOICE = "base model"


def trained_runs(context: StudioContext) -> list[str]:
    """Runs that have a final adapter/model or a checkpoint (i.e. can be evaluated or chatted with).

    Args:
        context: Studio context.

    Returns:
        Run names.
    """
    names = []
    for name in run_names(context.runs_dir):
        manifest = load_manifest(context.runs_dir / name)
        if manifest is not None and manifest.status in {"completed", "stopped"}:
            names.append(name)
    return names


def _metric_mapping(evaluation: dict[str, Any]) -> dict[str, Any]:
    metrics = evaluation.get("metrics") if isinstance(evaluation.get("metrics"), dict) else evaluation
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            flat[key] = round(value, 4) if isinstance(value, float) else value
        elif isinstance(value, dict):
            for inner, inner_value in value.items():
                if isinstance(inner_value, int | float) and not isinstance(inner_value, bool):
                    flat[f"{key}.{inner}"] = round(inner_value, 4) if isinstance(inner_value, float) else inner_value
    return flat


def metrics_frame(context: StudioContext, names: list[str] | None = None) -> pd.DataFrame:
    """Metrics of evaluated runs (and base models) side by side, one row each.

    Args:
        context: Studio context.
        names: Directories to include (default: every evaluated one).

    Returns:
        The table.
    """
    rows = []
    for name in names or evaluated_dirs(context.runs_dir):
        evaluation = read_evaluation(context.runs_dir / name)
        if evaluation is not None:
            rows.append({"run": name, **_metric_mapping(evaluation)})
    return pd.DataFrame(rows)


def sample_rows(evaluation: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-sample outputs of an evaluation (prompt, reference, output, checks).

    Args:
        evaluation: ``evaluation.json`` content.

    Returns:
        Rows for the samples table.
    """
    for key in ("samples", "outputs", "predictions", "generations", "records"):
        value = evaluation.get(key)
        if isinstance(value, list):
            rows = []
            for item in value:
                if not isinstance(item, dict):
                    continue
                row = {}
                for column, cell in item.items():
                    row[column] = cell if isinstance(cell, str | int | float | bool) or cell is None else str(cell)
                rows.append(row)
            return rows
    return []


def build_evaluate_tab(context: StudioContext) -> Refresher:
    """Builds the Evaluate tab inside the current Blocks context.

    Args:
        context: Studio context.

    Returns:
        The handler refreshing the tab's lists and results.
    """
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=280, elem_classes=["tool-panel"]):
            gr.Markdown("### Benchmark", elem_classes=["panel-title"])
            runs = gr.CheckboxGroup(choices=[], label="Runs", elem_id="evaluate-runs")
            include_base = gr.Checkbox(True, label=f"Include the base model ({context.settings.model.name})")
            max_samples = gr.Number(
                context.settings.evaluation.max_samples or 32, label="Test records (max)", precision=0, minimum=1
            )
            evaluate_button = gr.Button("Run evaluation", variant="primary", elem_id="evaluate-button")
            refresh_button = gr.Button("Refresh results", size="sm")
            message = gr.Markdown()
        with gr.Column(scale=3):
            metrics = gr.Dataframe(label="Metrics (test split)", interactive=False, elem_id="evaluation-metrics")
            sample_target = gr.Dropdown(choices=[], label="Per-sample outputs of", allow_custom_value=True)
            samples = gr.Dataframe(label="Outputs and references", interactive=False, wrap=True, max_height=480)

    @plain_errors
    def run_evaluation(selected: list[str], base: bool, records: float) -> str:
        if not selected and not base:
            raise ValueError("select at least one run or the base model")
        nested_update = {"max_samples": int(records or 1)}
        settings = context.settings.model_copy(
            update={"evaluation": context.settings.evaluation.model_copy(update=nested_update)}
        )
        queued = []
        for name in selected or []:
            job = context.supervisor.submit("evaluate", name, settings, arguments=["--run", name])
            queued.append(f"{name} ({job.job_id})")
        if base:
            label = base_output_dir(settings, settings.model.name).name  # a name, even when the model is a path
            job = context.supervisor.submit("evaluate", label, settings, arguments=["--base"])
            queued.append(f"base model ({job.job_id})")
        return "Queued evaluation of " + ", ".join(queued) + ". Results appear here when each finishes."

    evaluate_button.click(
        run_evaluation, inputs=[runs, include_base, max_samples], outputs=message, api_name="run_evaluation"
    )

    @plain_errors
    def results(target: str | None) -> tuple[Any, Any, Any, Any]:
        evaluated = evaluated_dirs(context.runs_dir)
        table = metrics_frame(context, evaluated)
        target = target if target in evaluated else (evaluated[0] if evaluated else None)
        evaluation = read_evaluation(context.runs_dir / target) if target else None
        rows = pd.DataFrame(sample_rows(evaluation)) if evaluation else pd.DataFrame()
        return (
            gr.update(choices=trained_runs(context)),
            table,
            gr.update(choices=evaluated, value=target),
            rows,
        )

    outputs = [runs, metrics, sample_target, samples]
    refresh_button.click(results, inputs=sample_target, outputs=outputs, api_name="evaluation_results")
    sample_target.input(results, inputs=sample_target, outputs=outputs, api_name="evaluation_samples")
    return Refresher(results, [sample_target], outputs, "refresh_evaluate")
