"""Data tab: pick a dataset, see its format and a paged preview, validate it, and see what the model sees."""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from core.domain.errors import ConfigError, DataValidationError
from studio import data_view
from studio.charts import length_histogram
from studio.context import StudioContext, plain_errors
from studio.data_sources import dataset_names, joined
from studio.tabs.train import TrainTab

FORMATS = ["auto", "alpaca", "dolly", "sharegpt", "openai", "oasst", "custom"]


def build_data_tab(context: StudioContext, train_tab: TrainTab) -> None:
    """Builds the Data tab inside the current Blocks context.

    Args:
        context: Studio context.
        train_tab: The Train tab (its dataset field follows the dataset chosen here).
    """
    settings = context.settings
    configured = joined([source.dataset for source in settings.data.sources()])
    default_source = "demo" if configured == "demo" else "path or Hub dataset"
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=300, elem_classes=["tool-panel"]):
            gr.Markdown("### Dataset", elem_classes=["panel-title"])
            source = gr.Radio(
                ["demo", "upload", "path or Hub dataset"], value=default_source, label="Source", elem_id="data-source"
            )
            upload = gr.File(
                label="Upload (JSON, JSONL, CSV, Parquet; several files are mixed)",
                file_count="multiple",
                visible=False,
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
                mapping_fields = [
                    gr.Dropdown(
                        [],
                        value=None,
                        label=f"{name.capitalize()} column"
                        + ("" if name in ("instruction", "output") else " (optional)"),
                        elem_id=f"map-{name}",
                        allow_custom_value=True,
                    )
                    for name in data_view.MAPPED_FIELDS
                ]
            lenient = gr.Checkbox(settings.data.lenient, label="Lenient (skip bad records, report them)")
            load_button = gr.Button("Load and preview", variant="primary", elem_id="load-data")
            prepare_button = gr.Button("Validate and prepare", elem_id="prepare-data")
            detected = gr.Markdown(elem_id="detected-format")
        with gr.Column(scale=3):
            preview = gr.Dataframe(label="Preview", interactive=False, wrap=True, max_height=420, elem_id="preview")
            with gr.Row():
                previous_page = gr.Button("◀ Previous", size="sm")
                page = gr.Number(1, label="Page", precision=0, minimum=1, scale=0, min_width=90)
                next_page = gr.Button("Next ▶", size="sm")
                page_label = gr.Markdown()
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
    frame_state = gr.State(None)

    def on_source(selected: str) -> tuple[Any, Any]:
        return gr.update(visible=selected == "upload"), gr.update(visible=selected == "path or Hub dataset")

    source.change(on_source, inputs=source, outputs=[upload, named], api_name="data_source")

    def chosen_dataset(selected: str, uploaded: list[str] | str | None, name: str) -> str:
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

    @plain_errors
    def load(selected: str, uploaded: Any, name: str, chosen_format: str, *mapped: str) -> tuple[Any, ...]:
        dataset = chosen_dataset(selected, uploaded, name)
        if len(dataset_names(dataset)) > 1:  # a mix: each source detected on its own, no column mapping
            text, frame = data_view.several_datasets(settings, dataset_names(dataset), chosen_format)
            rows, label = data_view.page_of(frame, 1)
            options = {"dataset": dataset, "format": chosen_format or "auto", "field_mapping": {}}
            cleared = [gr.update(choices=[], value="") for _ in data_view.MAPPED_FIELDS]
            note = "Several datasets: each is read in its own (detected or chosen) format."
            return (text, rows, 1, label, frame, dataset, options, note, gr.update(open=False), *cleared)
        columns = data_view.input_columns(dataset)
        try:
            format_name, reason = data_view.detect(dataset)
        except ConfigError as error:
            format_name, reason = None, str(error).removeprefix("data.format: ")
        pairs = zip(data_view.MAPPED_FIELDS, mapped, strict=True)
        mapping = {key: column for key, column in pairs if column and column in columns}
        if chosen_format == "custom" or (chosen_format in (None, "", "auto") and format_name is None):
            mapping = mapping or data_view.guess_mapping(columns)
            used = "custom"
        else:
            used, mapping = chosen_format if chosen_format not in (None, "", "auto") else format_name, {}
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
        options = {"dataset": dataset, "format": used, "field_mapping": mapping}
        fields = [gr.update(choices=["", *columns], value=mapping.get(key, "")) for key in data_view.MAPPED_FIELDS]
        note = f"Columns: {', '.join(f'`{column}`' for column in columns) or 'none'}"
        return (text, rows, 1, label, frame, dataset, options, note, gr.update(open=used == "custom"), *fields)

    load_button.click(
        load,
        inputs=[source, upload, named, data_format, *mapping_fields],
        outputs=[
            detected,
            preview,
            page,
            page_label,
            frame_state,
            train_tab.dataset,
            train_tab.data_options,
            columns_note,
            mapping_panel,
            *mapping_fields,
        ],
        api_name="load_data",
    )

    @plain_errors
    def go_to(frame: pd.DataFrame | None, number: float, delta: int) -> tuple[Any, float, str]:
        if frame is None:
            raise ValueError("load a dataset first")
        rows, label = data_view.page_of(frame, int(number or 1) + delta)
        current = int(label.split()[1])
        return rows, current, label

    previous_page.click(
        lambda frame, number: go_to(frame, number, -1),
        inputs=[frame_state, page],
        outputs=[preview, page, page_label],
        api_name="previous_page",
    )
    next_page.click(
        lambda frame, number: go_to(frame, number, 1),
        inputs=[frame_state, page],
        outputs=[preview, page, page_label],
        api_name="next_page",
    )
    page.submit(
        lambda frame, number: go_to(frame, number, 0),
        inputs=[frame_state, page],
        outputs=[preview, page, page_label],
        api_name="preview_page",
    )

    def data_settings_for(
        dataset: str, chosen_format: str, skip_bad: bool, model_name: str, options: dict | None
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

    @plain_errors
    def prepare(
        dataset: str, chosen_format: str, skip_bad: bool, model_name: str, index: float, options: dict | None
    ) -> tuple[Any, ...]:
        data_settings = data_settings_for(dataset, chosen_format, skip_bad, model_name, options)
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
        return (
            data_view.report_markdown(prepared.report or prepared.info),
            length_histogram(lengths, data_settings.data.max_seq_length),
            view,
            view_caption,
            used,
        )

    prepare_outputs = [report, histogram, model_view, caption, train_tab.data_options]
    prepare_button.click(
        prepare,
        inputs=[train_tab.dataset, data_format, lenient, train_tab.model_name, example_index, train_tab.data_options],
        outputs=prepare_outputs,
        api_name="prepare_data",
    )

    @plain_errors
    def example(
        dataset: str, chosen_format: str, skip_bad: bool, model_name: str, index: float, options: dict | None
    ) -> tuple[str, str]:
        data_settings = data_settings_for(dataset, chosen_format, skip_bad, model_name, options)
        prepared = data_view.prepare(data_settings)
        return data_view.model_view_html(data_settings, prepared, int(index or 0))

    show_example.click(
        example,
        inputs=[train_tab.dataset, data_format, lenient, train_tab.model_name, example_index, train_tab.data_options],
        outputs=[model_view, caption],
        api_name="model_view",
    )


def _failed_report(dataset: str, error: DataValidationError) -> str:
    """The report shown when strict validation stops: every problem of *this* dataset, and what to do."""
    shown = "\n".join(f"- {_escaped(problem)}" for problem in error.problems[:50])
    more = f"\n- ... and {len(error.problems) - 50} more" if len(error.problems) > 50 else ""
    return (
        f"### Validation failed: {len(error.problems)} problem(s) in `{dataset}`\n\n"
        f"{shown}{more}\n\n"
        + (f"{error.note}\n\n" if error.note else "")
        + "Fix the records, or tick **Lenient** to skip them (each skipped record is counted in the report)."
    )


def _escaped(text: str) -> str:
    """Text shown verbatim in Markdown (paths and field names keep their ``_``, ``*`` and brackets)."""
    return "".join(f"\\{character}" if character in "\\`*_[]<>#|" else character for character in text)
