"""Data tab: pick a dataset, see its format and a paged preview, validate it, and see what the model sees."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd

from core.domain.errors import PROBLEMS_SHOWN, ConfigError, DataValidationError
from studio import data_view
from studio.charts import length_histogram
from studio.context import StudioContext, plain_errors
from studio.data_sources import dataset_names, joined
from studio.tabs.train import TrainTab

FORMATS = ["auto", "alpaca", "dolly", "sharegpt", "openai", "oasst", "custom"]


@dataclass
class _DataControls:
    """The left column: where the data comes from, its format, column mapping and the actions."""

    source: gr.Radio
    upload: gr.File
    named: gr.Textbox
    data_format: gr.Dropdown
    mapping_panel: gr.Accordion
    columns_note: gr.Markdown
    mapping_fields: list[gr.Dropdown]
    lenient: gr.Checkbox
    load_button: gr.Button
    prepare_button: gr.Button
    detected: gr.Markdown


@dataclass
class _DataViews:
    """The right column: the paged preview, the report, the length histogram and the model's view."""

    preview: gr.Dataframe
    previous_page: gr.Button
    page: gr.Number
    next_page: gr.Button
    page_label: gr.Markdown
    report: gr.Markdown
    histogram: gr.Plot
    example_index: gr.Number
    show_example: gr.Button
    caption: gr.Markdown
    model_view: gr.HTML


def build_data_tab(context: StudioContext, train_tab: TrainTab) -> None:
    """Builds the Data tab inside the current Blocks context.

    Args:
        context: Studio context.
        train_tab: The Train tab (its dataset field follows the dataset chosen here).
    """
    with gr.Row(equal_height=False):
        controls = _controls_panel(context.settings)
        views = _views_panel()
    frame_state = gr.State(None)
    _wire_load(context.settings, controls, views, frame_state, train_tab)
    _wire_paging(views, frame_state)
    _wire_prepare(context.settings, controls, views, train_tab)


def _controls_panel(settings: Any) -> _DataControls:
    """Builds the left column (see :class:`_DataControls`)."""
    configured = joined([source.dataset for source in settings.data.sources()])
    default_source = "demo" if configured == "demo" else "path or Hub dataset"
    with gr.Column(scale=1, min_width=300, elem_classes=["tool-panel"]):
        gr.Markdown("### Dataset", elem_classes=["panel-title"])
        source = gr.Radio(
            ["demo", "upload", "path or Hub dataset"], value=default_source, label="Source", elem_id="data-source"
        )
        upload = gr.File(
            label="Upload (JSON, JSONL, CSV, Parquet; several files are mixed)", file_count="multiple", visible=False
        )
        named = gr.Textbox(
            value="" if configured == "demo" else configured,
            label="Local path or Hub dataset id (several: comma-separated, mixed)",
            placeholder="tatsu-lab/alpaca or data/my.jsonl, data/more.json",
            visible=default_source != "demo",
        )
        data_format = gr.Dropdown(FORMATS, value=settings.data.format, label="Format", elem_id="data-format")
        with gr.Accordion("Column mapping", open=False, elem_id="column-mapping") as mapping_panel:
            columns_note = gr.Markdown("Load a dataset to see its columns.", elem_id="data-columns")
            mapping_fields = [_mapping_field(name) for name in data_view.MAPPED_FIELDS]
        lenient = gr.Checkbox(settings.data.lenient, label="Lenient (skip bad records, report them)")
        load_button = gr.Button("Load and preview", variant="primary", elem_id="load-data")
        prepare_button = gr.Button("Validate and prepare", elem_id="prepare-data")
        detected = gr.Markdown(elem_id="detected-format")
    return _DataControls(
        source, upload, named, data_format, mapping_panel, columns_note, mapping_fields, lenient, load_button,
        prepare_button, detected,
    )  # fmt: skip


def _mapping_field(name: str) -> gr.Dropdown:
    """The column chosen for one record field (instruction and output are required)."""
    optional = "" if name in ("instruction", "output") else " (optional)"
    return gr.Dropdown(
        [], value=None, label=f"{name.capitalize()} column{optional}", elem_id=f"map-{name}", allow_custom_value=True
    )


def _views_panel() -> _DataViews:
    """Builds the right column (see :class:`_DataViews`)."""
    with gr.Column(scale=3):
        preview = gr.Dataframe(
            pd.DataFrame(columns=["prompt", "response"]), label="Preview", interactive=False, wrap=True,
            max_height=420, elem_id="preview",
        )  # fmt: skip
        with gr.Row():
            previous_page = gr.Button("◀ Previous", size="sm")
            page = gr.Number(1, label="Page", precision=0, minimum=1, scale=0, min_width=90)
            next_page = gr.Button("Next ▶", size="sm")
            page_label = gr.Markdown("Choose a source and press **Load and preview**.")
        with gr.Row(equal_height=False):
            with gr.Column():
                report = gr.Markdown(elem_id="data-report")
            with gr.Column():
                histogram = gr.Plot(label="Token lengths")
        with gr.Accordion("As the model sees it", open=True):
            with gr.Row():
                example_index = gr.Number(0, label="Example", precision=0, minimum=0, scale=0, min_width=90)
                show_example = gr.Button("Show", size="sm", scale=0)
                caption = gr.Markdown()
            model_view = gr.HTML(elem_id="model-view")
    return _DataViews(
        preview, previous_page, page, next_page, page_label, report, histogram, example_index, show_example, caption,
        model_view,
    )  # fmt: skip


def _chosen_dataset(settings: Any, selected: str, uploaded: list[str] | str | None, name: str) -> str:
    """The dataset field's value for the chosen source (uploads are stored by content hash first)."""
    if selected == "demo":
        return "demo"
    if selected == "upload":
        if not uploaded:
            raise ValueError("upload a file first (JSON, JSONL, CSV or Parquet)")
        files = [uploaded] if isinstance(uploaded, str) else list(uploaded)
        return joined([str(data_view.store_upload(file, settings.paths.data_dir)) for file in files])
    if not (name or "").strip():
        raise ValueError("type a local path or a Hub dataset id")
    return name.strip()


def _load_several(settings: Any, dataset: str, chosen_format: str) -> tuple[Any, ...]:
    """A mix of datasets: each is detected on its own; no column mapping."""
    text, frame = data_view.several_datasets(settings, dataset_names(dataset), chosen_format)
    rows, label = data_view.page_of(frame, 1)
    rows = gr.update(value=rows, column_widths=data_view.column_widths(list(frame.columns)))
    options = {"dataset": dataset, "format": chosen_format or "auto", "field_mapping": {}}
    cleared = [gr.update(choices=[], value="") for _ in data_view.MAPPED_FIELDS]
    note = "Several datasets: each is read in its own (detected or chosen) format."
    return (text, rows, 1, label, frame, dataset, options, note, gr.update(open=False), *cleared)


def _format_and_mapping(
    dataset: str, chosen_format: str, mapped: tuple[str, ...], columns: list[str]
) -> tuple[str | None, str, str, dict[str, str]]:
    """The detected format (and why), the format used and its column mapping (custom format only)."""
    try:
        format_name, reason = data_view.detect(dataset)
    except ConfigError as error:
        format_name, reason = None, str(error).removeprefix("data.format: ")
    pairs = zip(data_view.MAPPED_FIELDS, mapped, strict=True)
    mapping = {key: column for key, column in pairs if column and column in columns}
    if chosen_format == "custom" or (chosen_format in (None, "", "auto") and format_name is None):
        return format_name, reason, "custom", mapping or data_view.guess_mapping(columns)
    return format_name, reason, (chosen_format if chosen_format not in (None, "", "auto") else format_name), {}


def _load_one(settings: Any, dataset: str, chosen_format: str, mapped: tuple[str, ...]) -> tuple[Any, ...]:
    """One dataset: detected format, the format used, a preview page and the mapping fields."""
    columns = data_view.input_columns(dataset)
    format_name, reason, used, mapping = _format_and_mapping(dataset, chosen_format, mapped, columns)
    text = f"**Dataset** `{dataset}`  \n**Detected format** `{format_name or 'none'}`: {reason}"
    if used != format_name:
        shown = ", ".join(f"{key} = `{column}`" for key, column in mapping.items()) if used == "custom" else ""
        text += f"  \n**Using** `{used}`" + (f" with {shown}" if shown else " (chosen)")
    if used == "custom" and not {"instruction", "output"} <= set(mapping):
        text += "  \n**Map the instruction and output columns** under Column mapping, then load again."
        frame = pd.DataFrame({"column": columns})
    else:
        data_settings = data_view.settings_for_dataset(settings, dataset, used, field_mapping=mapping)
        frame = data_view.preview_frame(data_settings, dataset, used)
    rows, label = data_view.page_of(frame, 1)
    rows = gr.update(value=rows, column_widths=data_view.column_widths(list(frame.columns)))
    options = {"dataset": dataset, "format": used, "field_mapping": mapping}
    fields = [gr.update(choices=["", *columns], value=mapping.get(key, "")) for key in data_view.MAPPED_FIELDS]
    note = f"Columns: {', '.join(f'`{column}`' for column in columns) or 'none'}"
    return (text, rows, 1, label, frame, dataset, options, note, gr.update(open=used == "custom"), *fields)


def _wire_load(
    settings: Any, controls: _DataControls, views: _DataViews, frame_state: gr.State, train_tab: TrainTab
) -> None:
    """Source choice and Load: the dataset (or mix) is read, detected and previewed."""

    def on_source(selected: str) -> tuple[Any, Any]:
        return gr.update(visible=selected == "upload"), gr.update(visible=selected == "path or Hub dataset")

    controls.source.change(
        on_source, inputs=controls.source, outputs=[controls.upload, controls.named], api_name="data_source"
    )

    @plain_errors
    def load(selected: str, uploaded: Any, name: str, chosen_format: str, *mapped: str) -> tuple[Any, ...]:
        dataset = _chosen_dataset(settings, selected, uploaded, name)
        if len(dataset_names(dataset)) > 1:
            return _load_several(settings, dataset, chosen_format)
        return _load_one(settings, dataset, chosen_format, mapped)

    controls.load_button.click(
        load,
        inputs=[controls.source, controls.upload, controls.named, controls.data_format, *controls.mapping_fields],
        outputs=[
            controls.detected, views.preview, views.page, views.page_label, frame_state, train_tab.dataset,
            train_tab.data_options, controls.columns_note, controls.mapping_panel, *controls.mapping_fields,
        ],
        api_name="load_data",
    )  # fmt: skip


def _wire_paging(views: _DataViews, frame_state: gr.State) -> None:
    """Previous, Next and a typed page number page through the loaded preview."""

    @plain_errors
    def go_to(frame: pd.DataFrame | None, number: float, delta: int) -> tuple[Any, float, str]:
        if frame is None:
            raise ValueError("load a dataset first")
        rows, label = data_view.page_of(frame, int(number or 1) + delta)
        return rows, int(label.split()[1]), label

    outputs = [views.preview, views.page, views.page_label]
    for trigger, delta, api_name in (
        (views.previous_page.click, -1, "previous_page"),
        (views.next_page.click, 1, "next_page"),
        (views.page.submit, 0, "preview_page"),
    ):
        trigger(
            _pager(go_to, delta),
            inputs=[frame_state, views.page],
            outputs=outputs,
            api_name=api_name,
        )


def _pager(go_to: Any, delta: int) -> Any:
    """An event handler moving ``delta`` pages from the current one."""
    return lambda frame, number: go_to(frame, number, delta)


def _data_settings_for(
    settings: Any, dataset: str, chosen_format: str, skip_bad: bool, model_name: str, options: dict | None
) -> Any:
    """Settings of the Data tab's dataset: the options of the last load apply to the dataset loaded."""
    options = options if options and options.get("dataset") == (dataset or "demo") else {}
    used = options.get("format") if chosen_format in (None, "", "auto") else chosen_format
    mapping = options.get("field_mapping") if used == "custom" else None
    data_settings = data_view.settings_for_dataset(settings, dataset or "demo", used or "auto", skip_bad, mapping)
    if model_name and model_name != data_settings.model.name:
        data_settings = data_settings.model_copy(
            update={"model": data_settings.model.model_copy(update={"name": model_name})}
        )
    return data_settings


def _prepared_views(data_settings: Any, dataset: str, skip_bad: bool, index: float) -> tuple[Any, ...]:
    """Validates and prepares; the report, histogram, model view and the options used (or the failure)."""
    try:
        prepared = data_view.prepare(data_settings)
    except DataValidationError as error:  # this file's problems replace the previous file's report
        gr.Warning(f"{len(error.problems)} problem(s) in {dataset}; see the report")
        return _failed_report(dataset, error), None, "", "", gr.update()
    lengths = data_view.token_lengths(prepared)
    view, view_caption = data_view.model_view_html(data_settings, prepared, int(index or 0))
    counts = prepared.info.get("counts", {})
    gr.Info(f"Prepared: {', '.join(f'{split} {count}' for split, count in counts.items())}")
    data = data_settings.data
    used = {
        "dataset": dataset or "demo",
        "format": data.format,
        "field_mapping": data.field_mapping,
        "lenient": skip_bad,
    }
    report = data_view.report_markdown(prepared.report or prepared.info, prepared.report_path)
    return report, length_histogram(lengths, data.max_seq_length), view, view_caption, used


def _wire_prepare(settings: Any, controls: _DataControls, views: _DataViews, train_tab: TrainTab) -> None:
    """Validate and prepare (report, lengths, the model's view) and Show (one example as the model sees it)."""

    @plain_errors
    def prepare(dataset: str, chosen_format: str, skip_bad: bool, model_name: str, index: float, options: Any):
        data_settings = _data_settings_for(settings, dataset, chosen_format, skip_bad, model_name, options)
        return _prepared_views(data_settings, dataset, skip_bad, index)

    @plain_errors
    def example(dataset: str, chosen_format: str, skip_bad: bool, model_name: str, index: float, options: Any):
        data_settings = _data_settings_for(settings, dataset, chosen_format, skip_bad, model_name, options)
        return data_view.model_view_html(data_settings, data_view.prepare(data_settings), int(index or 0))

    inputs = [
        train_tab.dataset, controls.data_format, controls.lenient, train_tab.model_name, views.example_index,
        train_tab.data_options,
    ]  # fmt: skip
    controls.prepare_button.click(
        prepare,
        inputs=inputs,
        outputs=[views.report, views.histogram, views.model_view, views.caption, train_tab.data_options],
        api_name="prepare_data",
    )
    views.show_example.click(example, inputs=inputs, outputs=[views.model_view, views.caption], api_name="model_view")


def _failed_report(dataset: str, error: DataValidationError) -> str:
    """The report shown when strict validation stops: every problem of *this* dataset, and what to do."""
    shown = "\n".join(f"- {_escaped(problem)}" for problem in error.problems[:PROBLEMS_SHOWN])
    hidden = len(error.problems) - PROBLEMS_SHOWN
    more = f"\n- ... and {hidden} more" if hidden > 0 else ""
    return (
        f"### Validation failed: {len(error.problems)} problem(s) in `{dataset}`\n\n"
        f"{shown}{more}\n\n"
        + (f"{error.note}\n\n" if error.note else "")
        + "Fix the records, or tick **Lenient** to skip them (each skipped record is counted in the report)."
    )


def _escaped(text: str) -> str:
    """Text shown verbatim in Markdown (paths and field names keep their ``_``, ``*`` and brackets)."""
    return "".join(f"\\{character}" if character in "\\`*_[]<>#|" else character for character in text)
