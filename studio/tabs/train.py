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
from studio.form_state import (
    FORM_FIELDS,
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
from studio.run_views import resume_settings, run_choices
from studio.runs import load_manifest, run_names
from studio.training_form import (
    TECHNIQUES,
    TrainForm,
    memory_estimates,
    model_choices,
    settings_from_form,
    shows_setting,
    technique_defaults,
    technique_description,
    with_data_options,
)

POLL_INTERVAL_S = 2.0


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
    """

    run_selector: gr.Dropdown
    dataset: gr.Textbox
    data_options: gr.State
    model_name: gr.Dropdown
    timer: gr.Timer
    form_restore: Refresher


def build_train_tab(context: StudioContext) -> TrainTab:
    """Builds the Train tab inside the current Blocks context.

    Args:
        context: Studio context.

    Returns:
        Components other tabs use.
    """
    settings = context.settings
    initial_technique = settings.technique.name if settings.technique.name in TECHNIQUES else TECHNIQUES[0]
    defaults = technique_defaults(initial_technique)
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=320, elem_classes=["tool-panel"]):
            gr.Markdown("### New run", elem_classes=["panel-title"])
            model_name = gr.Dropdown(
                choices=model_choices(),
                value=settings.model.name,
                allow_custom_value=True,
                label="Model",
                info="Catalog name, local directory or Hub id",
            )
            technique = gr.Radio(list(TECHNIQUES), value=initial_technique, label="Technique", elem_id="technique")
            technique_info = gr.Markdown(technique_description(initial_technique))
            run_name = gr.Textbox(label="Run name", placeholder="generated when empty", elem_id="run-name")
            dataset = gr.Textbox(
                value=joined([source.dataset for source in settings.data.sources()]),
                label="Dataset",
                info="Set from the Data tab; several, comma-separated, are mixed",
                elem_id="dataset",
            )
            start_button = gr.Button("Start training", variant="primary", elem_id="start-button")
            action_message = gr.Markdown(elem_id="train-message")
            with gr.Accordion("Hyper-parameters", open=True):
                with gr.Row():
                    learning_rate = gr.Number(
                        min_width=90, value=defaults["learning_rate"], label="Learning rate", elem_id="learning-rate"
                    )
                    max_steps = gr.Number(
                        min_width=90,
                        value=defaults["max_steps"],
                        label="Max steps (-1: epochs)",
                        precision=0,
                        elem_id="max-steps",
                    )
                    num_epochs = gr.Number(min_width=90, value=defaults["num_epochs"], label="Epochs")
                with gr.Row():
                    batch_size = gr.Number(
                        min_width=90,
                        value=defaults["batch_size"],
                        label="Batch size",
                        precision=0,
                        minimum=1,
                        elem_id="batch-size",
                    )
                    accumulation = gr.Number(
                        min_width=90,
                        value=defaults["gradient_accumulation_steps"],
                        label="Grad. accumulation",
                        precision=0,
                        minimum=1,
                    )
                    max_seq_length = gr.Number(
                        min_width=90,
                        value=defaults["max_seq_length"],
                        label="Max seq. length",
                        precision=0,
                        elem_id="max-seq-length",
                    )
                with gr.Row():
                    eval_steps = gr.Number(
                        min_width=90,
                        value=defaults["eval_steps"],
                        label="Eval every (steps)",
                        precision=0,
                        elem_id="eval-steps",
                    )
                    save_steps = gr.Number(
                        min_width=90,
                        value=defaults["save_steps"],
                        label="Save every (steps)",
                        precision=0,
                        elem_id="save-steps",
                    )
                    sample_every = gr.Number(
                        min_width=90,
                        value=defaults["sample_every_steps"],
                        label="Samples every",
                        precision=0,
                        elem_id="sample-every",
                    )
                with gr.Row(visible=shows_setting(initial_technique, "rank")) as lora_row:
                    lora_rank = gr.Number(
                        min_width=90, value=defaults["lora_rank"], label="LoRA rank", precision=0, minimum=1
                    )
                    lora_alpha = gr.Number(min_width=90, value=defaults["lora_alpha"], label="LoRA alpha")
                    lora_dropout = gr.Number(min_width=90, value=defaults["lora_dropout"], label="LoRA dropout")
                with gr.Row(visible=shows_setting(initial_technique, "num_virtual_tokens")) as prefix_row:
                    virtual_tokens = gr.Number(
                        min_width=90,
                        value=defaults["virtual_tokens"],
                        label="Virtual tokens",
                        precision=0,
                        elem_id="virtual-tokens",
                    )
                gradient_checkpointing = gr.Checkbox(
                    defaults["gradient_checkpointing"], label="Gradient checkpointing (saves memory)"
                )
            with gr.Accordion("Memory fit (all techniques)", open=True):
                memory_table = gr.Dataframe(
                    value=initial_memory_table(settings),
                    headers=["technique", "estimated_mb", "available_mb", "device", "fits", "note"],
                    interactive=False,
                    label="Estimated peak memory vs this machine",
                )
                estimate_button = gr.Button("Estimate memory", size="sm")
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
                    stop_button = gr.Button("Stop", variant="stop", elem_id="stop-button", min_width=70)
                    resume_button = gr.Button("Resume", elem_id="resume-button", min_width=70)
                    refresh_button = gr.Button("Refresh", min_width=70)
            status = gr.HTML(elem_id="run-status-block")
            with gr.Row():
                loss_plot = gr.Plot(label="Loss", elem_id="loss-plot")
                rate_plot = gr.Plot(label="Learning rate and tokens/s", elem_id="rate-plot")
            with gr.Row():
                with gr.Column(scale=3):
                    logs = gr.Textbox(
                        label="Log (tail)",
                        lines=12,
                        max_lines=12,
                        interactive=False,
                        autoscroll=True,
                        elem_classes=["log-view"],
                    )
                with gr.Column(scale=2):
                    samples = gr.Markdown(label="Sample generations")
            queue = gr.Dataframe(label="Queue (one training at a time)", interactive=False, elem_id="queue-table")
    timer = gr.Timer(POLL_INTERVAL_S)
    poll_state = gr.State(None)
    data_options = gr.State({})

    form_inputs = [
        model_name,
        technique,
        run_name,
        dataset,
        learning_rate,
        max_steps,
        num_epochs,
        batch_size,
        accumulation,
        max_seq_length,
        eval_steps,
        save_steps,
        sample_every,
        lora_rank,
        lora_alpha,
        lora_dropout,
        virtual_tokens,
        gradient_checkpointing,
    ]

    def form_from(values: tuple[Any, ...]) -> TrainForm:
        return form_from_values(values, settings.model.name)

    @plain_errors
    def on_technique(selected: str) -> tuple[Any, ...]:
        return (
            technique_description(selected),
            gr.update(visible=shows_setting(selected, "rank")),
            gr.update(visible=shows_setting(selected, "num_virtual_tokens")),
            *technique_default_values(selected),
        )

    components = dict(zip(FORM_FIELDS, form_inputs, strict=True))
    technique_event = technique.input(  # user choices only: a restored form keeps its saved values
        on_technique,
        inputs=technique,
        outputs=[technique_info, lora_row, prefix_row, *(components[name] for name in TECHNIQUE_DEFAULT_FIELDS)],
        api_name="technique_defaults",
    )

    @plain_errors
    def estimate(*values: Any) -> pd.DataFrame:
        form = form_from(values)
        planned = settings_from_form(settings, form)
        rows = memory_estimates(planned)
        return pd.DataFrame(rows, columns=["technique", "estimated_mb", "available_mb", "device", "fits", "note"])

    estimate_button.click(estimate, inputs=form_inputs, outputs=memory_table, api_name="estimate_memory")
    model_name.change(estimate, inputs=form_inputs, outputs=memory_table, api_name="estimate_memory_for_model")
    technique_event.then(estimate, inputs=form_inputs, outputs=memory_table, api_name="estimate_memory_for_technique")

    @plain_errors
    def start(*values: Any) -> tuple[Any, str]:
        form = form_from(values[:-1])
        planned = with_data_options(settings_from_form(settings, form), values[-1])
        name = planned.run_name or ""
        if (context.runs_dir / name).exists() and load_manifest(context.runs_dir / name) is not None:
            raise ValueError(f"run {name!r} already exists; pick another name, or select it and press Resume")
        fits = [row for row in memory_estimates(planned) if row["technique"] == form.technique]
        if fits and fits[0]["fits"] == "no":
            gr.Warning(
                f"{form.technique} is estimated at {fits[0]['estimated_mb']:,} MB, more than the "
                f"{fits[0]['available_mb']:,} MB available; it may run out of memory."
            )
        planned = with_sample_prompts(planned)
        job = context.supervisor.submit("train", name, planned)
        ahead = context.supervisor.jobs_ahead(job.job_id)
        if ahead is None:
            message = f"Started **{name}** ({job.job_id})."
        elif ahead == 0:
            message = f"Queued **{name}** ({job.job_id}); it starts now."
        else:
            running = context.supervisor.current()
            now = f" ({running.run_name} is running now)" if running is not None else ""
            message = f"Queued **{name}** ({job.job_id}); {ahead} job(s) ahead of it{now}."
        return gr.update(choices=run_choices(context, name), value=name), message

    start_button.click(
        start, inputs=[*form_inputs, data_options], outputs=[run_selector, action_message], api_name="start_training"
    )

    @plain_errors
    def stop(selected: str | None) -> str:
        if not selected:
            raise ValueError("select a run to stop")
        running = context.active_run() == selected
        message = context.supervisor.stop(selected)
        return stop_message(context.runs_dir / selected, selected) if running else message

    stop_button.click(stop, inputs=run_selector, outputs=action_message, api_name="stop_training")

    @plain_errors
    def resume(selected: str | None) -> tuple[Any, str]:
        if not selected:
            raise ValueError("select a run to resume")
        job = context.supervisor.submit("train", selected, resume_settings(context, selected))
        logger.info("Resume of {} queued as {}", selected, job.job_id)
        return gr.update(choices=run_choices(context, selected), value=selected), (
            f"Resuming **{selected}** from its last checkpoint ({job.job_id})."
        )

    resume_button.click(resume, inputs=run_selector, outputs=[run_selector, action_message], api_name="resume_training")

    def poll(selected: str | None, last: Any) -> tuple[Any, ...]:
        return progress_view(context, selected, last)

    poll_outputs = [status, loss_plot, rate_plot, logs, samples, queue, poll_state]
    timer.tick(
        poll,
        inputs=[run_selector, poll_state],
        outputs=poll_outputs,
        api_name="poll_progress",
        show_progress="hidden",
        concurrency_limit=16,
        queue=False,
    )
    run_selector.change(
        poll,
        inputs=[run_selector, gr.State(None)],
        outputs=poll_outputs,
        api_name="show_run",
        show_progress="hidden",
    )

    def refresh(selected: str | None) -> Any:
        return gr.update(choices=run_choices(context, selected), value=selected)

    refresh_button.click(refresh, inputs=run_selector, outputs=run_selector, api_name="list_runs")
    # the form survives a page reload: every change is saved in the browser's localStorage (client-side,
    # no server round trip) and put back when the page loads
    form_store = gr.BrowserState(None, storage_key=FORM_STORAGE_KEY, secret=form_secret(context))
    gr.on(
        triggers=[component.change for component in form_inputs],
        fn=None,
        inputs=form_inputs,
        outputs=form_store,
        js=f"(...values) => Object.fromEntries({json.dumps(FORM_FIELDS)}.map((name, i) => [name, values[i]]))",
        queue=False,
        show_progress="hidden",
    )

    def restore_form(saved: Any) -> tuple[Any, ...]:
        values = restored_form_values(context, saved)
        if not values:
            return tuple(gr.skip() for _ in range(len(form_inputs) + 4))
        chosen = values.get("technique", technique.value)
        try:
            merged = {
                name: values.get(name, component.value)
                for name, component in zip(FORM_FIELDS, form_inputs, strict=True)
            }
            table = estimate(*merged.values())
        except Exception as error:  # a stale saved form must never break the page
            logger.debug("No memory estimate for the restored form: {}", error)
            table = gr.skip()
        return (
            technique_description(chosen),
            gr.update(visible=shows_setting(chosen, "rank")),
            gr.update(visible=shows_setting(chosen, "num_virtual_tokens")),
            table,
            *(values[name] if name in values else gr.skip() for name in FORM_FIELDS),
        )

    restore = Refresher(
        restore_form,
        [form_store],
        [technique_info, lora_row, prefix_row, memory_table, *form_inputs],
        "restore_train_form",
    )
    return TrainTab(run_selector, dataset, data_options, model_name, timer, form_restore=restore)
