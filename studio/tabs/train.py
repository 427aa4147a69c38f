"""Train tab: the run form, memory fit, Start/Stop/Resume, and live progress of the selected run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd
from loguru import logger

from studio.context import Refresher, StudioContext, plain_errors
from studio.data_sources import joined
from studio.form_schema import (
    FORM_FIELDS,
    HYPERPARAMETER_ROWS,
    SWITCHES,
    help_markdown,
    setting_component,
    technique_fields,
    visible_for,
)
from studio.form_state import (
    FORM_STORAGE_KEY,
    TECHNIQUE_DEFAULT_FIELDS,
    form_from_values,
    form_secret,
    initial_memory_table,
    restored_form_values,
    technique_default_values,
    with_sample_prompts,
)
from studio.progress import progress_view, stop_message
from studio.run_views import full_log_copy, log_hint_text, resume_settings, run_choices
from studio.runs import load_manifest, run_names
from studio.tabs.run_history import RunHistory, history_panel, wire_history
from studio.training_form import (
    TECHNIQUES,
    memory_estimates,
    model_choices,
    settings_from_form,
    technique_defaults,
    technique_description,
    with_data_options,
)

POLL_INTERVAL_S = 2.0
MEMORY_COLUMNS = ["technique", "estimated_mb", "available_mb", "device", "fits", "note"]


@dataclass
class TrainTab:
    """Components other tabs and the app wire to.

    Attributes:
        run_selector: Dropdown of runs whose progress is shown.
        dataset: Dataset the next run trains on (set by the Data tab).
        data_options: The Data tab's format, column mapping and leniency for that dataset.
        model_name: Model the next run finetunes.
        timer: The progress poll timer.
        form_restore: Page-load handler putting the form values saved in the browser back.
        history_refresh: Page-load handler filling the run history.
    """

    run_selector: gr.Dropdown
    dataset: gr.Textbox
    data_options: gr.State
    model_name: gr.Dropdown
    timer: gr.Timer
    form_restore: Refresher
    history_refresh: Refresher


@dataclass
class _Form:
    """The form's components: inputs in :data:`FORM_FIELDS` order and the outputs it updates."""

    inputs: dict[str, Any]
    technique_info: gr.Markdown
    start_button: gr.Button
    action_message: gr.Markdown
    memory_table: gr.Dataframe
    estimate_button: gr.Button

    def ordered(self) -> list[Any]:
        """The input components in :data:`FORM_FIELDS` order."""
        return [self.inputs[name] for name in FORM_FIELDS]


def _general_fields(context: StudioContext, technique: str) -> tuple[dict[str, Any], gr.Markdown]:
    """Model, technique, run name and dataset."""
    settings = context.settings
    model_name = gr.Dropdown(
        choices=model_choices(),
        value=settings.model.name,
        allow_custom_value=True,
        label="Model",
        info="Catalog name, local directory or Hub id",
    )
    technique_radio = gr.Radio(list(TECHNIQUES), value=technique, label="Technique", elem_id="technique")
    technique_info = gr.Markdown(technique_description(technique))
    run_name = gr.Textbox(label="Run name", placeholder="generated when empty", elem_id="run-name")
    dataset = gr.Textbox(
        value=joined([source.dataset for source in settings.data.sources()]),
        label="Dataset",
        info="Set from the Data tab; several, comma-separated, are mixed",
        elem_id="dataset",
    )
    fields = {"model_name": model_name, "technique": technique_radio, "run_name": run_name, "dataset": dataset}
    return fields, technique_info


def _hyperparameters(technique: str) -> dict[str, Any]:
    """The hyper-parameter rows, the selected technique's settings and the switches."""
    defaults = technique_defaults(technique)
    components: dict[str, Any] = {}
    with gr.Accordion("Hyper-parameters", open=True):
        for row in (*HYPERPARAMETER_ROWS, technique_fields()):
            with gr.Row():
                for field in row:
                    components[field.name] = setting_component(field, defaults[field.name], technique)
        for field in SWITCHES:
            components[field.name] = setting_component(field, defaults[field.name], technique)
        with gr.Accordion("What these settings mean", open=False):
            gr.Markdown(help_markdown(), elem_classes=["settings-help"])
    return components


def _form_panel(context: StudioContext) -> _Form:
    """The left column: the new run's form, Start, and the memory fit of every technique."""
    settings = context.settings
    technique = settings.technique.name if settings.technique.name in TECHNIQUES else TECHNIQUES[0]
    with gr.Column(scale=1, min_width=320, elem_classes=["tool-panel"]):
        gr.Markdown("### New run", elem_classes=["panel-title"])
        general, technique_info = _general_fields(context, technique)
        start_button = gr.Button("Start training", variant="primary", elem_id="start-button")
        action_message = gr.Markdown(elem_id="train-message")
        inputs = {**general, **_hyperparameters(technique)}
        with gr.Accordion("Memory fit (all techniques)", open=True):
            memory_table = gr.Dataframe(
                value=initial_memory_table(settings),
                headers=MEMORY_COLUMNS,
                interactive=False,
                label="Estimated peak memory vs this machine",
            )
            estimate_button = gr.Button("Estimate memory", size="sm")
    return _Form(inputs, technique_info, start_button, action_message, memory_table, estimate_button)


@dataclass
class _RunPanel:
    """The right column: the selected run's controls, status, curves, log, samples and the queue."""

    run_selector: gr.Dropdown
    stop_button: gr.Button
    resume_button: gr.Button
    refresh_button: gr.Button
    outputs: list[Any]
    history: RunHistory
    log_controls: tuple[Any, Any, Any]


def _run_panel(context: StudioContext) -> _RunPanel:
    """Builds the right column (see :class:`_RunPanel`)."""
    with gr.Column(scale=2):
        with gr.Row():
            run_selector = gr.Dropdown(
                choices=run_names(context.runs_dir),
                value=None,
                label="Run",
                allow_custom_value=True,
                scale=4,
                elem_id="run-selector",
            )
            with gr.Column(scale=2, min_width=240), gr.Row():
                stop_button = gr.Button("Stop", variant="stop", elem_id="stop-button", min_width=70, interactive=False)
                resume_button = gr.Button("Resume", elem_id="resume-button", min_width=70, interactive=False)
                refresh_button = gr.Button("Refresh", min_width=70)
        status = gr.HTML(elem_id="run-status-block")
        with gr.Row():
            loss_plot = gr.Plot(label="Loss", elem_id="loss-plot")
            rate_plot = gr.Plot(label="Learning rate and tokens/s", elem_id="rate-plot")
        with gr.Row():
            with gr.Column(scale=3):
                logs = gr.Textbox(
                    label="Log (newest lines last)", lines=12, max_lines=12, interactive=False, autoscroll=True,
                    elem_classes=["log-view"], elem_id="log-view",
                )  # fmt: skip
                with gr.Row():
                    log_button = gr.Button("Download full log", size="sm", elem_id="full-log", scale=0, min_width=160)
                    log_hint = gr.Markdown(elem_id="log-hint", elem_classes=["hint"])
                log_file = gr.File(label="Full log", visible=False, interactive=False, elem_id="full-log-file")
            with gr.Column(scale=2):
                samples = gr.Markdown(label="Sample generations")
        queue = gr.Dataframe(label="Queue (one training at a time)", interactive=False, elem_id="queue-table")
        history = history_panel(context)
    outputs = [status, loss_plot, rate_plot, logs, samples, queue]
    log_controls = (log_button, log_hint, log_file)
    return _RunPanel(run_selector, stop_button, resume_button, refresh_button, outputs, history, log_controls)


def build_train_tab(context: StudioContext) -> TrainTab:
    """Builds the Train tab inside the current Blocks context.

    Args:
        context: Studio context.

    Returns:
        Components other tabs use.
    """
    with gr.Row(equal_height=False):
        form = _form_panel(context)
        panel = _run_panel(context)
    timer = gr.Timer(POLL_INTERVAL_S)
    data_options = gr.State({})
    estimate = _wire_form(context, form)
    _wire_start(context, form, panel, data_options)
    _wire_run_controls(context, form, panel, timer)
    restore = _wire_saved_form(context, form, estimate)
    history, cloned = wire_history(context, panel.history, form.ordered(), panel.run_selector)
    history.listen(panel.refresh_button.click)
    technique_outputs = [form.technique_info, *(form.inputs[field.name] for field in technique_fields())]
    cloned.then(_technique_updates, inputs=form.inputs["technique"], outputs=technique_outputs)
    inputs = form.inputs
    return TrainTab(panel.run_selector, inputs["dataset"], data_options, inputs["model_name"], timer, restore, history)


def _technique_updates(technique: str) -> list[Any]:
    """The technique's description and the visibility of every technique setting."""
    return [
        technique_description(technique),
        *(gr.update(visible=visible_for(technique, f)) for f in technique_fields()),
    ]


def _wire_form(context: StudioContext, form: _Form) -> Any:
    """Technique choice (defaults, visible settings) and the memory estimate; returns the estimator."""
    settings = context.settings

    @plain_errors
    def on_technique(selected: str) -> tuple[Any, ...]:
        return (*_technique_updates(selected), *technique_default_values(selected))

    technique_outputs = [form.inputs[field.name] for field in technique_fields()]
    technique_event = form.inputs["technique"].input(  # user choices only: a restored form keeps its saved values
        on_technique,
        inputs=form.inputs["technique"],
        outputs=[form.technique_info, *technique_outputs, *(form.inputs[name] for name in TECHNIQUE_DEFAULT_FIELDS)],
        api_name="technique_defaults",
    )

    @plain_errors
    def estimate(*values: Any) -> pd.DataFrame:
        planned = settings_from_form(settings, form_from_values(values, settings.model.name))
        return pd.DataFrame(memory_estimates(planned), columns=MEMORY_COLUMNS)

    inputs, table = form.ordered(), form.memory_table
    form.estimate_button.click(estimate, inputs=inputs, outputs=table, api_name="estimate_memory")
    form.inputs["model_name"].change(estimate, inputs=inputs, outputs=table, api_name="estimate_memory_for_model")
    technique_event.then(estimate, inputs=inputs, outputs=table, api_name="estimate_memory_for_technique")
    return estimate


def _queued_message(context: StudioContext, name: str, job: Any) -> str:
    """What the user reads after Start: started, starting now, or how many jobs are ahead."""
    ahead = context.supervisor.jobs_ahead(job.job_id)
    if ahead is None:
        return f"Started **{name}** ({job.job_id})."
    if ahead == 0:
        return f"Queued **{name}** ({job.job_id}); it starts now."
    running = context.supervisor.current()
    now = f" ({running.run_name} is running now)" if running is not None else ""
    return f"Queued **{name}** ({job.job_id}); {ahead} job(s) ahead of it{now}."


def _wire_start(context: StudioContext, form: _Form, panel: _RunPanel, data_options: gr.State) -> None:
    """Start training: validate the form, warn when it may not fit, queue the run."""
    settings = context.settings

    @plain_errors
    def start(*values: Any) -> tuple[Any, str]:
        chosen = form_from_values(values[:-1], settings.model.name)
        planned = with_data_options(settings_from_form(settings, chosen), values[-1])
        name = planned.run_name or ""
        if (context.runs_dir / name).exists() and load_manifest(context.runs_dir / name) is not None:
            raise ValueError(f"run {name!r} already exists; pick another name, or select it and press Resume")
        fits = [row for row in memory_estimates(planned) if row["technique"] == chosen.technique]
        if fits and fits[0]["fits"] == "no":
            gr.Warning(
                f"{chosen.technique} is estimated at {fits[0]['estimated_mb']:,} MB, more than the "
                f"{fits[0]['available_mb']:,} MB available; it may run out of memory."
            )
        job = context.supervisor.submit("train", name, with_sample_prompts(planned))
        return gr.update(choices=run_choices(context, name), value=name), _queued_message(context, name, job)

    form.start_button.click(
        start,
        inputs=[*form.ordered(), data_options],
        outputs=[panel.run_selector, form.action_message],
        api_name="start_training",
    )


def _wire_run_controls(context: StudioContext, form: _Form, panel: _RunPanel, timer: gr.Timer) -> None:
    """Stop, Resume, Refresh and the progress poll of the selected run."""

    @plain_errors
    def stop(selected: str | None) -> str:
        if not selected:
            raise ValueError("select a run to stop")
        running = context.active_run() == selected
        message = context.supervisor.stop(selected)
        return stop_message(context.runs_dir / selected, selected) if running else message

    @plain_errors
    def resume(selected: str | None) -> tuple[Any, str]:
        if not selected:
            raise ValueError("select a run to resume")
        job = context.supervisor.submit("train", selected, resume_settings(context, selected))
        logger.info("Resume of {} queued as {}", selected, job.job_id)
        return gr.update(choices=run_choices(context, selected), value=selected), (
            f"Resuming **{selected}** from its last checkpoint ({job.job_id})."
        )

    def poll(selected: str | None, last: Any) -> tuple[Any, ...]:
        return progress_view(context, selected, last)

    def refresh(selected: str | None) -> Any:
        return gr.update(choices=run_choices(context, selected), value=selected)

    selector, message, poll_state = panel.run_selector, form.action_message, gr.State(None)
    panel.stop_button.click(stop, inputs=selector, outputs=message, api_name="stop_training")
    panel.resume_button.click(resume, inputs=selector, outputs=[selector, message], api_name="resume_training")
    poll_outputs = [*panel.outputs, poll_state]
    timer.tick(
        poll, inputs=[selector, poll_state], outputs=poll_outputs, api_name="poll_progress", show_progress="hidden",
        concurrency_limit=16, queue=False,
    )  # fmt: skip
    selector.change(
        poll, inputs=[selector, gr.State(None)], outputs=poll_outputs, api_name="show_run", show_progress="hidden"
    )
    panel.refresh_button.click(refresh, inputs=selector, outputs=selector, api_name="list_runs")
    log_button, log_hint, log_file = panel.log_controls
    selector.change(  # Stop and Resume act on the selected run: disabled while none is
        lambda name: (gr.update(interactive=bool(name)), gr.update(interactive=bool(name))),
        inputs=selector, outputs=[panel.stop_button, panel.resume_button], api_name="run_buttons",
    )  # fmt: skip
    selector.change(lambda name: log_hint_text(context, name), inputs=selector, outputs=log_hint, api_name="log_hint")
    log_button.click(
        plain_errors(lambda name: gr.update(value=full_log_copy(context, name), visible=True)),
        inputs=selector, outputs=log_file, api_name="full_log",
    )  # fmt: skip


def _wire_saved_form(context: StudioContext, form: _Form, estimate: Any) -> Refresher:
    """The form survives a page reload: saved in the browser's localStorage, put back on page load."""
    inputs = form.ordered()
    form_store = gr.BrowserState(None, storage_key=FORM_STORAGE_KEY, secret=form_secret(context))
    gr.on(  # client-side, no server round trip
        triggers=[component.change for component in inputs],
        fn=None,
        inputs=inputs,
        outputs=form_store,
        js=f"(...values) => Object.fromEntries({json.dumps(FORM_FIELDS)}.map((name, i) => [name, values[i]]))",
        queue=False,
        show_progress="hidden",
    )
    updates = len(_technique_updates(TECHNIQUES[0]))

    def restore_form(saved: Any) -> tuple[Any, ...]:
        values = restored_form_values(context, saved)
        if not values:
            return tuple(gr.skip() for _ in range(updates + 1 + len(inputs)))
        chosen = values.get("technique", form.inputs["technique"].value)
        try:
            merged = {
                name: values.get(name, component.value) for name, component in zip(FORM_FIELDS, inputs, strict=True)
            }
            table = estimate(*merged.values())
        except Exception as error:  # a stale saved form must never break the page
            logger.debug("No memory estimate for the restored form: {}", error)
            table = gr.skip()
        restored = (values[name] if name in values else gr.skip() for name in FORM_FIELDS)
        return (*_technique_updates(chosen), table, *restored)

    technique_outputs = [form.inputs[field.name] for field in technique_fields()]
    outputs = [form.technique_info, *technique_outputs, form.memory_table, *inputs]
    return Refresher(restore_form, [form_store], outputs, "restore_train_form")
