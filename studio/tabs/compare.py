"""Compare tab: live overlay of loss curves, side-by-side figures, config diff, report and the 4-technique sweep."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from studio.charts import overlay_figure
from studio.context import Refresher, StudioContext, plain_errors
from studio.evaluation_views import headline_metrics
from studio.form_state import with_sample_prompts
from studio.job_records import ACTIVE_STATES
from studio.runs import METRICS, evaluated_dirs, load_manifest, read_evaluation, run_names, run_status
from studio.tabs.train import TrainTab
from studio.training_form import TECHNIQUES, sweep_settings

SUMMARY_KEYS = (
    "initial_eval_loss",
    "final_eval_loss",
    "best_eval_loss",
    "train_runtime_s",
    "tokens_per_second",
    "peak_memory_mb",
)


def comparable(context: StudioContext) -> list[str]:
    """Runs, then evaluated base models (``base-<model>``: their test metrics sit beside the runs')."""
    names = run_names(context.runs_dir)
    return [*names, *(name for name in evaluated_dirs(context.runs_dir) if name not in names)]


def summary_frame(context: StudioContext, names: list[str]) -> pd.DataFrame:
    """Metrics, memory, time and trainable parameters of runs side by side (one column per run).

    Args:
        context: Studio context.
        names: Runs.

    Returns:
        The table with a ``figure`` column and one column per run.
    """
    columns: dict[str, dict[str, Any]] = {}
    for name in names:
        run_dir = context.runs_dir / name
        manifest = load_manifest(run_dir)
        status = run_status(context.runs_dir, name, context.supervisor) if manifest else "base model (evaluated)"
        column: dict[str, Any] = {"status": status}
        if manifest is not None:
            column["technique"] = (manifest.config.get("technique") or {}).get("name")
            column["model"] = Path(str((manifest.config.get("model") or {}).get("name", ""))).name
            column["trainable parameters"] = manifest.trainable_parameters
            column["total parameters"] = manifest.total_parameters
            if manifest.trainable_parameters and manifest.total_parameters:
                column["trainable %"] = round(100 * manifest.trainable_parameters / manifest.total_parameters, 3)
            for key in SUMMARY_KEYS:
                value = manifest.metrics.get(key)
                column[key.replace("_", " ")] = round(value, 4) if isinstance(value, float) else value
        rows = METRICS.rows(run_dir)
        steps = [row["step"] for row in rows if row.get("loss") is not None]
        column["steps"] = max(steps) if steps else 0
        evaluation = read_evaluation(run_dir)
        if evaluation:
            for label, value in headline_metrics(evaluation).items():
                column[f"test: {label}"] = value
        columns[name] = column
    figures: list[str] = []
    for column in columns.values():
        for key in column:
            if key not in figures:
                figures.append(key)
    table = [{"figure": key, **{name: _text(columns[name].get(key)) for name in columns}} for key in figures]
    return pd.DataFrame(table, columns=["figure", *columns])


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def config_diff(context: StudioContext, names: list[str]) -> pd.DataFrame:
    """Configuration keys whose values differ between the runs.

    Args:
        context: Studio context.
        names: Runs.

    Returns:
        ``setting`` plus one column per run.
    """
    configs = {}
    for name in names:
        manifest = load_manifest(context.runs_dir / name)
        configs[name] = _flatten(manifest.config) if manifest is not None else {}
    keys = sorted({key for config in configs.values() for key in config} - {"run_name"})
    rows = []
    for key in keys:
        values = [repr(configs[name].get(key)) for name in names]
        if len(set(values)) > 1:
            rows.append({"setting": key, **{name: str(configs[name].get(key, "-")) for name in names}})
    return pd.DataFrame(rows, columns=["setting", *names])


def latest_report(context: StudioContext) -> str:
    """The newest comparison report written by the compare use case, as Markdown.

    Args:
        context: Studio context.

    Returns:
        Markdown text.
    """
    reports = sorted(
        (context.runs_dir / "comparisons").glob("*/report.md"), key=lambda path: path.stat().st_mtime, reverse=True
    )
    if not reports:
        return "*No comparison report yet: select runs and press **Build comparison report**.*"
    return f"*{reports[0].parent.name}*\n\n" + reports[0].read_text(encoding="utf-8")


def build_compare_tab(context: StudioContext, train_tab: TrainTab) -> Refresher:
    """Builds the Compare tab inside the current Blocks context.

    Args:
        context: Studio context.
        train_tab: The Train tab (its model and dataset are the sweep's).

    Returns:
        The handler refreshing the run list.
    """
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=280, elem_classes=["tool-panel"]):
            gr.Markdown("### Runs", elem_classes=["panel-title"])
            runs = gr.CheckboxGroup(
                choices=[], label="Runs to compare", elem_id="compare-runs",
                info="Evaluated base models (base-...) can be ticked too: their test metrics join the table",
            )  # fmt: skip
            axis = gr.Radio(["step", "tokens", "time"], value="step", label="X axis")
            report_button = gr.Button("Build comparison report", elem_id="report-button")
            gr.Markdown("### Sweep", elem_classes=["panel-title"])
            sweep_steps = gr.Number(60, label="Steps per technique", precision=0, minimum=1)
            sweep_button = gr.Button(
                f"Train all {len(TECHNIQUES)} techniques on this data", variant="primary", elem_id="sweep"
            )
            message = gr.Markdown()
        with gr.Column(scale=3):
            overlay = gr.Plot(overlay_figure({}, "step"), label="Loss curves", elem_id="compare-plot")
            summary = gr.Dataframe(
                summary_frame(context, []), label="Side by side", interactive=False, elem_id="compare-table"
            )
            diff = gr.Dataframe(config_diff(context, []), label="Configuration differences", interactive=False)
            with gr.Accordion("Comparison report", open=False):
                report = gr.Markdown(latest_report(context))
    _wire_curves(context, runs, axis, [overlay, summary, diff])
    report_button.click(
        plain_errors(lambda selected: _queue_report(context, selected)),
        inputs=runs, outputs=message, api_name="comparison_report",
    )  # fmt: skip
    sweep_button.click(
        plain_errors(lambda model, dataset, steps: _queue_sweep(context, model, dataset, steps)),
        inputs=[train_tab.model_name, train_tab.dataset, sweep_steps], outputs=message, api_name="train_all_techniques",
    )  # fmt: skip

    def refresh(selected: list[str] | None) -> tuple[Any, str]:
        names = comparable(context)
        chosen = [name for name in selected or [] if name in names]
        return gr.update(choices=names, value=chosen), latest_report(context)

    return Refresher(refresh, [runs], [runs, report], "refresh_compare")


def _wire_curves(context: StudioContext, runs: gr.CheckboxGroup, axis: gr.Radio, views: list[Any]) -> None:
    """The overlay (redrawn every 3 s while curves grow), the side-by-side table and the config differences."""
    overlay, summary, diff = views
    timer, shown = gr.Timer(3.0), gr.State(None)

    def signature_of(selected: list[str], chosen_axis: str) -> tuple[dict[str, Any], tuple[Any, ...]]:
        data = {name: METRICS.rows(context.runs_dir / name) for name in selected}
        return data, (tuple(selected), chosen_axis, tuple(len(rows) for rows in data.values()))

    def curves(selected: list[str] | None, chosen_axis: str, last: Any) -> tuple[Any, Any]:
        data, signature = signature_of(selected or [], chosen_axis)
        if signature == last:
            return gr.skip(), last
        return overlay_figure(data, chosen_axis), signature

    @plain_errors
    def compare_selected(selected: list[str] | None, chosen_axis: str) -> tuple[Any, ...]:
        data, signature = signature_of(selected or [], chosen_axis)
        frames = summary_frame(context, selected or []), config_diff(context, selected or [])
        return overlay_figure(data, chosen_axis), *frames, signature

    timer.tick(
        curves, inputs=[runs, axis, shown], outputs=[overlay, shown], api_name="compare_curves",
        show_progress="hidden", queue=False,
    )  # fmt: skip
    for trigger, api_name in ((runs.change, "compare_runs"), (axis.change, "compare_axis")):
        trigger(compare_selected, inputs=[runs, axis], outputs=[overlay, summary, diff, shown], api_name=api_name)


def _queue_report(context: StudioContext, selected: list[str] | None) -> str:
    """Queues ``compare`` over the selected runs (a background job); the report appears when it ends."""
    if not selected or len(selected) < 2:
        raise ValueError("select at least two runs to compare")
    output = context.runs_dir / "comparisons" / datetime.now().strftime("%Y%m%d-%H%M%S")
    job = context.supervisor.submit(
        "compare", "comparison", context.settings, arguments=["--runs", *selected, "--output", str(output)],
        output=str(output),
    )  # fmt: skip
    return f"Queued the comparison report ({job.job_id}); open **Comparison report** when it is done."


def _free_sweep(context: StudioContext, model: str | None, dataset: str | None, steps: float | None) -> list[Any]:
    """The sweep's settings under run names no run or queued job uses (two sweeps in one second differ)."""
    taken = set(run_names(context.runs_dir)) | {
        job.run_name for job in context.supervisor.jobs() if job.kind == "train" and job.state in ACTIVE_STATES
    }
    stamp = datetime.now().strftime("%m%d-%H%M%S")
    for attempt in range(1, 100):
        planned = sweep_settings(
            context.settings, (dataset or "").strip() or "demo", int(steps) if steps else None, model_name=model,
            stamp=stamp if attempt == 1 else f"{stamp}-{attempt}",
        )  # fmt: skip
        if not taken & {settings.run_name or "" for settings in planned}:
            return planned
    raise ValueError("could not find free run names for the sweep; try again in a second")


def _queue_sweep(context: StudioContext, model: str | None, dataset: str | None, steps: float | None) -> str:
    """Queues one run per technique on the Train form's model and dataset."""
    planned = _free_sweep(context, model, dataset, steps)
    names = [settings.run_name or "" for settings in planned]
    for settings in planned:
        context.supervisor.submit("train", settings.run_name or "", with_sample_prompts(settings))
    return (
        f"Queued {len(names)} runs of {Path(planned[0].model.name).name} on {planned[0].data.dataset_label()} "
        f"({', '.join(TECHNIQUES)}; one trains at a time): " + ", ".join(f"**{name}**" for name in names)
    )
