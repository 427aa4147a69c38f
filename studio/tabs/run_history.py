"""Run history in the Train tab: every run in a table, and rename, delete (confirmed) or clone one into the form."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from core.application.run_history import delete_run, rename_run
from studio.context import Refresher, StudioContext, plain_errors
from studio.form_schema import FORM_FIELDS, form_field_values
from studio.job_records import ACTIVE_STATES
from studio.run_views import run_choices
from studio.runs import format_duration, load_manifest, run_names, run_status

HISTORY_COLUMNS = ["run", "status", "technique", "model", "steps", "final eval loss", "duration", "started"]
CONFIRM_DELETE_JS = "(name) => (name && confirm(`Delete run ${name} and all its files?`)) ? name : null"
"""Asks the browser to confirm; a cancelled dialog sends None, which deletes nothing."""


def history_frame(context: StudioContext) -> pd.DataFrame:
    """Every run, newest first: status, technique, model, steps, final eval loss, duration, start time.

    Args:
        context: Studio context.

    Returns:
        The table.
    """
    rows = []
    for name in run_names(context.runs_dir):
        manifest = load_manifest(context.runs_dir / name)
        if manifest is None:
            continue
        metrics, config = manifest.metrics, manifest.config
        loss = metrics.get("final_eval_loss")
        rows.append(
            [
                name,
                run_status(context.runs_dir, name, context.supervisor),
                (config.get("technique") or {}).get("name", "-"),
                Path(str((config.get("model") or {}).get("name", "-"))).name,
                metrics.get("global_step", "-"),
                round(loss, 4) if isinstance(loss, float) else "-",
                format_duration(metrics.get("train_runtime_s")) if metrics.get("train_runtime_s") else "-",
                manifest.created_at[:16].replace("T", " "),
            ]
        )
    rows.sort(key=lambda row: row[-1], reverse=True)
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


@dataclass
class RunHistory:
    """The history's components."""

    table: gr.Dataframe
    chosen: gr.Dropdown
    new_name: gr.Textbox
    rename: gr.Button
    delete: gr.Button
    clone: gr.Button
    message: gr.Markdown


def history_panel(context: StudioContext) -> RunHistory:
    """Builds the run history (an accordion under the queue)."""
    with gr.Accordion("Run history", open=True, elem_id="run-history"):
        table = gr.Dataframe(history_frame(context), interactive=False, elem_id="history-table", max_height=300)
        with gr.Row(equal_height=True):
            chosen = gr.Dropdown(run_choices(context), value=None, label="Run", elem_id="history-run", scale=3)
            new_name = gr.Textbox(label="New name", elem_id="history-new-name", scale=3)
            rename = gr.Button("Rename", size="sm", elem_id="history-rename", scale=1, min_width=80)
            clone = gr.Button("Clone into form", size="sm", elem_id="history-clone", scale=1, min_width=80)
            delete = gr.Button("Delete", size="sm", variant="stop", elem_id="history-delete", scale=1, min_width=80)
        message = gr.Markdown(elem_id="history-message")
    return RunHistory(table, chosen, new_name, rename, delete, clone, message)


def _busy(context: StudioContext, name: str) -> bool:
    """True while a job (training, evaluation) for the run is queued or running."""
    return any(job.run_name == name and job.state in ACTIVE_STATES for job in context.supervisor.jobs())


def _chosen_run(context: StudioContext, name: str | None, action: str) -> str:
    if not name:
        raise ValueError(f"choose a run to {action}")
    if _busy(context, name):
        raise ValueError(f"{name} is queued or running; stop it (or wait) before you {action} it")
    return name


def _listing(context: StudioContext, keep: str | None) -> tuple[Any, Any, Any]:
    """The table, the history's run list and the Train tab's run selector after a change."""
    names = run_choices(context)
    chosen = gr.update(choices=names, value=keep if keep in names else None)
    return history_frame(context), chosen, gr.update(choices=run_choices(context, None))


def wire_history(
    context: StudioContext, history: RunHistory, form_inputs: list[Any], run_selector: Any
) -> tuple[Refresher, Any]:
    """Rename, Delete (after the browser's confirmation) and Clone into form.

    Returns:
        The table's refresher and the clone event (the form's technique-dependent parts follow it).
    """
    listing = [history.table, history.chosen, run_selector]

    @plain_errors
    def rename(name: str | None, new_name: str) -> tuple[Any, ...]:
        renamed = rename_run(context.runs_dir, _chosen_run(context, name, "rename"), new_name).name
        return (*_listing(context, renamed), "", f"Renamed **{name}** to **{renamed}**.")

    @plain_errors
    def delete(name: str | None) -> tuple[Any, ...]:
        if name is None:  # the confirmation was cancelled
            return (*(gr.skip() for _ in listing), "Nothing deleted.")
        delete_run(context.runs_dir, _chosen_run(context, name, "delete"))
        return (*_listing(context, None), f"Deleted **{name}**.")

    @plain_errors
    def clone(name: str | None) -> tuple[Any, ...]:
        manifest = load_manifest(context.runs_dir / name) if name else None
        if manifest is None:
            raise ValueError("choose a run to clone")
        values = form_field_values(manifest.config)
        return (*(values.get(field, gr.skip()) for field in FORM_FIELDS), f"Form filled from **{name}**.")

    history.rename.click(
        rename, inputs=[history.chosen, history.new_name], outputs=[*listing, history.new_name, history.message],
        api_name="rename_run", show_progress="hidden",
    )  # fmt: skip
    history.delete.click(
        delete, inputs=history.chosen, outputs=[*listing, history.message], js=CONFIRM_DELETE_JS,
        api_name="delete_run", show_progress="hidden",
    )  # fmt: skip
    cloned = history.clone.click(
        clone,
        inputs=history.chosen,
        outputs=[*form_inputs, history.message],
        api_name="clone_run",
        show_progress="hidden",
    )
    return Refresher(lambda: _listing(context, None)[:2], [], listing[:2], "refresh_history"), cloned
