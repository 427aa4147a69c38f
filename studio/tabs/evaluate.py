"""Evaluate tab: queue benchmark runs on the test split, then read metrics and per-sample outputs."""

from __future__ import annotations

from typing import Any

import gradio as gr

from core.application.evaluate import base_output_dir
from studio.context import Refresher, StudioContext, plain_errors
from studio.evaluation_views import (
    evaluation_jobs_line,
    evaluations,
    kind_table,
    loss_bars,
    metrics_table,
    sample_table,
    score_bars,
)
from studio.runs import evaluated_dirs, load_manifest, run_names

BASE_CHOICE = "base model"
RESULTS_POLL_S = 3.0
RUNS_INFO = "Finished runs (completed or stopped)"
NO_RUNS_HINT = "No finished run yet: train one in the Train tab. The base model can be evaluated now."
SAMPLES_LABEL = "Per sample, lowest score first (sort by any column from the ⋮ menu in its header)"
SAMPLE_TYPES = ["number", "str", "str", "str", "number", "number", "str"]


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
            runs = gr.CheckboxGroup(choices=[], label="Runs", elem_id="evaluate-runs", info=NO_RUNS_HINT)
            include_base = gr.Checkbox(True, label=f"Include the base model ({context.settings.model.name})")
            max_samples = gr.Number(
                context.settings.evaluation.max_samples or 32,
                label="Test records (max; loss and generations)",
                precision=0,
                minimum=1,
            )
            evaluate_button = gr.Button("Run evaluation", variant="primary", elem_id="evaluate-button")
            message = gr.Markdown()
            status = gr.Markdown(elem_id="evaluation-status")
        with gr.Column(scale=3):
            metrics = gr.Dataframe(
                metrics_table({}), label="Metrics (test split; 95 % bootstrap interval in brackets)", interactive=False,
                elem_id="evaluation-metrics", max_height=720,
            )  # fmt: skip
            with gr.Row():
                scores = gr.Plot(score_bars({}), label="Scores", elem_id="evaluation-scores")
                losses = gr.Plot(loss_bars({}), label="Test loss", elem_id="evaluation-loss")
            kinds = gr.Dataframe(
                kind_table({}), label="Instruction checks passed, by kind (strict / loose)", interactive=False,
                elem_id="evaluation-kinds", max_height=320,
            )  # fmt: skip
            sample_target = gr.Dropdown(choices=[], label="Per-sample outputs of", allow_custom_value=True)
            samples = gr.Dataframe(
                sample_table(None), label=SAMPLES_LABEL, interactive=False, wrap=True, max_height=480,
                elem_id="evaluation-samples", datatype=SAMPLE_TYPES, show_search="search",
                column_widths=["5%", "24%", "24%", "19%", "9%", "9%", "10%"],
            )  # fmt: skip
    evaluate_button.click(
        plain_errors(lambda selected, base, records: _queue_evaluations(context, selected, base, records)),
        inputs=[runs, include_base, max_samples], outputs=message, api_name="run_evaluation",
    )  # fmt: skip
    outputs = [runs, metrics, scores, losses, kinds, sample_target, samples]
    results = plain_errors(lambda target: _results(context, target))
    sample_target.input(results, inputs=sample_target, outputs=outputs, api_name="evaluation_samples")
    _wire_live_results(context, status, sample_target, outputs)
    return Refresher(results, [sample_target], outputs, "refresh_evaluate")


def _queue_evaluations(context: StudioContext, selected: list[str] | None, base: bool, records: float | None) -> str:
    """Queues one evaluation per selected run (and the base model), capped at ``records`` test records."""
    if not selected and not base:
        raise ValueError("select at least one run or the base model")
    evaluation = context.settings.evaluation.model_copy(update={"max_samples": int(records or 1)})
    settings = context.settings.model_copy(update={"evaluation": evaluation})
    queued = []
    for name in selected or []:
        job = context.supervisor.submit("evaluate", name, settings, arguments=["--run", name])
        queued.append(f"{name} ({job.job_id})")
    if base:
        label = base_output_dir(settings, settings.model.name).name  # a name, even when the model is a path
        job = context.supervisor.submit("evaluate", label, settings, arguments=["--base"])
        queued.append(f"base model ({job.job_id})")
    return "Queued evaluation of " + ", ".join(queued) + ". Results appear here when each finishes."


def _results(context: StudioContext, target: str | None) -> tuple[Any, ...]:
    """The evaluable runs, the metrics table, both charts, pass rates by kind and the chosen evaluation's samples."""
    found = evaluations(context.runs_dir)
    target = target if target in found else (next(iter(found)) if found else None)
    choices = trained_runs(context)
    return (
        gr.update(choices=choices, info=RUNS_INFO if choices else NO_RUNS_HINT),
        metrics_table(found),
        score_bars(found),
        loss_bars(found),
        kind_table(found),
        gr.update(choices=list(found), value=target),
        sample_table(found.get(target)),
    )


def _results_signature(context: StudioContext) -> tuple[Any, ...]:
    """Changes when an evaluation is written or a job changes state (the results are redrawn then)."""
    written = tuple(
        (name, (context.runs_dir / name / "evaluation.json").stat().st_mtime)
        for name in evaluated_dirs(context.runs_dir)
    )
    jobs = tuple((job.job_id, job.state) for job in context.supervisor.jobs() if job.kind == "evaluate")
    return written, jobs


def _wire_live_results(context: StudioContext, status: gr.Markdown, target: gr.Dropdown, outputs: list[Any]) -> None:
    """Every few seconds: the queue line, and the results redrawn when an evaluation finished."""
    timer, shown = gr.Timer(RESULTS_POLL_S), gr.State(None)

    def poll(current: str | None, last: Any) -> tuple[Any, ...]:
        signature = _results_signature(context)
        line = evaluation_jobs_line(context)
        if signature == last:
            return (line, *(gr.skip() for _ in outputs), last)
        return (line, *_results(context, current), signature)

    timer.tick(
        poll, inputs=[target, shown], outputs=[status, *outputs, shown], api_name="poll_evaluations",
        show_progress="hidden", queue=False,
    )  # fmt: skip
