"""Export tab: merge, download, GGUF/Ollama export, registry, Hub push and the API for a finished run.

The merge shows its verification; adapter and merged model download as zips; registered versions are
browsed with their lineage and metrics; the Hub push has a dry-run preview; the OpenAI-compatible API
starts in a background process with ready ``curl`` and ``openai`` snippets. Each section calls the CLI's use cases (``merge``, ``export``, ``registry``, ``serve``) through
:mod:`studio.export_view` and :mod:`studio.api_server`.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from studio.context import Refresher, StudioContext, plain_errors
from studio.export_view import (
    REGISTRY_COLUMNS,
    export_run,
    merge_run,
    push_preview,
    register_run,
    registry_rows,
    run_summary,
    version_details,
    zip_artifact,
)
from studio.tabs.evaluate import trained_runs

DEFAULT_API_PORT = 8000


def build_export_tab(context: StudioContext) -> Refresher:
    """Builds the Export tab inside the current Blocks context.

    Args:
        context: Studio context.

    Returns:
        The handler refreshing the run list, the run summary and the registry table.
    """
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=280, elem_classes=["tool-panel"]):
            gr.Markdown("### Run", elem_classes=["panel-title"])
            run = gr.Dropdown(choices=[], label="Finished run", elem_id="export-run")
            summary = gr.Markdown("Choose a finished run.", elem_id="export-summary")
            _build_merge_section(context, run, summary)
        with gr.Column(scale=3):
            with gr.Row(equal_height=False):
                _build_gguf_section(context, run, summary)
                _build_api_section(context, run)
            table, version = _build_registry_section(context, run)
            _build_hub_section(context, version)

    @plain_errors
    def refresh(selected: str | None) -> tuple[Any, Any, Any, Any]:
        runs = trained_runs(context)
        chosen = selected if selected in runs else (runs[0] if runs else None)
        rows, references = registry_rows(context.settings)
        return (
            gr.update(choices=runs, value=chosen),
            run_summary(context.settings, chosen),
            rows,
            gr.update(choices=references, value=references[-1] if references else None),
        )

    run.change(
        plain_errors(lambda name: run_summary(context.settings, name)),
        inputs=run,
        outputs=summary,
        api_name="export_run_summary",
    )
    return Refresher(refresh, [run], [run, summary, table, version], "refresh_export")


def _build_merge_section(context: StudioContext, run: gr.Dropdown, summary: gr.Markdown) -> None:
    gr.Markdown("### Merge and download", elem_classes=["panel-title"])
    merge_button = gr.Button("Merge adapter into base", variant="primary", elem_id="export-merge")
    merge_result = gr.Markdown(elem_id="export-merge-result")
    with gr.Row():
        zip_adapter = gr.Button("Zip adapter", size="sm", variant="secondary", elem_id="export-zip-adapter")
        zip_merged = gr.Button("Zip merged model", size="sm", variant="secondary", elem_id="export-zip-merged")
    download = gr.File(label="Download", interactive=False, height=90, elem_id="export-download")

    @plain_errors
    def do_merge(name: str | None) -> tuple[str, str]:
        return merge_run(context.settings, name or ""), run_summary(context.settings, name)

    merge_button.click(do_merge, inputs=run, outputs=[merge_result, summary], api_name="export_merge")
    zip_adapter.click(
        plain_errors(lambda name: str(zip_artifact(context.settings, name or "", "adapter"))),
        inputs=run,
        outputs=download,
        api_name="export_zip_adapter",
    )
    zip_merged.click(
        plain_errors(lambda name: str(zip_artifact(context.settings, name or "", "merged"))),
        inputs=run,
        outputs=download,
        api_name="export_zip_merged",
    )


def _build_gguf_section(context: StudioContext, run: gr.Dropdown, summary: gr.Markdown) -> None:
    with gr.Column(scale=1, elem_classes=["tool-panel"]):
        gr.Markdown("### GGUF / Ollama", elem_classes=["panel-title"])
        with gr.Row():
            export_format = gr.Radio(["gguf", "ollama"], value="gguf", label="Format", elem_id="export-format")
            quantization = gr.Dropdown(["f16", "q8_0", "q4_0"], value="f16", label="Quantization")
        export_button = gr.Button("Export and verify", variant="primary", elem_id="export-gguf")
        export_result = gr.Markdown(elem_id="export-gguf-result")
        export_folder = gr.Textbox(label="Folder", interactive=False, elem_id="export-gguf-folder")

    @plain_errors
    def do_export(name: str | None, chosen_format: str, chosen_quantization: str) -> tuple[str, str, str]:
        text, folder = export_run(context.settings, name or "", chosen_format, chosen_quantization)
        return text, folder, run_summary(context.settings, name)

    export_button.click(
        do_export,
        inputs=[run, export_format, quantization],
        outputs=[export_result, export_folder, summary],
        api_name="export_gguf",
    )


def _build_api_section(context: StudioContext, run: gr.Dropdown) -> None:
    with gr.Column(scale=1, elem_classes=["tool-panel"]):
        gr.Markdown("### OpenAI-compatible API", elem_classes=["panel-title"])
        port = gr.Number(DEFAULT_API_PORT, label="Port (127.0.0.1)", precision=0, minimum=1, elem_id="export-api-port")
        with gr.Row():
            start = gr.Button("Start API", variant="primary", elem_id="export-api-start")
            stop = gr.Button("Stop API", variant="stop", elem_id="export-api-stop")
        status = gr.Markdown("The API is not running.", elem_id="export-api-status")
        curl = gr.Code(
            label="curl", language="shell", lines=4, max_lines=8, interactive=False, elem_id="export-api-curl"
        )
        python = gr.Code(
            label="openai (Python)",
            language="python",
            lines=4,
            max_lines=12,
            interactive=False,
            elem_id="export-api-python",
        )

    @plain_errors
    def do_start(name: str | None, chosen_port: float) -> tuple[str, str, str]:
        if not name:
            raise ValueError("choose a finished run first")
        endpoint = context.api_server.start(context.settings, name, int(chosen_port or DEFAULT_API_PORT))
        text = f"Running on `{endpoint.base_url}`, model `{endpoint.model}`, API key `{endpoint.api_key}`."
        return text, endpoint.curl_snippet(), endpoint.python_snippet()

    start.click(do_start, inputs=[run, port], outputs=[status, curl, python], api_name="export_api_start")
    stop.click(
        plain_errors(lambda: (context.api_server.stop(), "", "")),
        outputs=[status, curl, python],
        api_name="export_api_stop",
    )


def _build_registry_section(context: StudioContext, run: gr.Dropdown) -> tuple[gr.Dataframe, gr.Dropdown]:
    with gr.Column(elem_classes=["tool-panel"]):
        gr.Markdown("### Registry", elem_classes=["panel-title"])
        with gr.Row(equal_height=True):
            name = gr.Textbox(label="Registered model name", placeholder="support-bot", elem_id="export-register-name")
            register_button = gr.Button("Register version", variant="primary", elem_id="export-register")
        register_result = gr.Markdown(elem_id="export-register-result")
        table = gr.Dataframe(headers=REGISTRY_COLUMNS, interactive=False, elem_id="export-registry", max_height=260)
        version = gr.Dropdown(choices=[], label="Version (lineage, metrics)", elem_id="export-version")
        details = gr.JSON(label="Lineage and metrics", elem_id="export-version-details")

    @plain_errors
    def do_register(model_name: str, run_name: str | None) -> tuple[str, Any, Any]:
        reference = register_run(context.settings, model_name, run_name or "")
        rows, references = registry_rows(context.settings)
        return f"Registered `{reference}`.", rows, gr.update(choices=references, value=reference)

    register_button.click(
        do_register, inputs=[name, run], outputs=[register_result, table, version], api_name="export_register"
    )
    version.change(
        plain_errors(lambda reference: version_details(context.settings, reference)),
        inputs=version,
        outputs=details,
        api_name="export_version_details",
    )
    return table, version


def _build_hub_section(context: StudioContext, version: gr.Dropdown) -> None:
    with gr.Column(elem_classes=["tool-panel"]):
        gr.Markdown("### Push to the Hugging Face Hub", elem_classes=["panel-title"])
        with gr.Row(equal_height=True):
            repo_id = gr.Textbox(label="Repository (user/name)", placeholder="me/support-bot", elem_id="export-repo")
            private = gr.Checkbox(True, label="Private")
        with gr.Row():
            preview = gr.Button("Preview upload (dry run)", elem_id="export-push-preview")
            push = gr.Button("Push", variant="primary", elem_id="export-push")
        listing = gr.Code(
            label="Upload", language=None, lines=3, max_lines=16, interactive=False, elem_id="export-push-listing"
        )

    preview.click(
        plain_errors(lambda reference, repo, hidden: push_preview(context.settings, reference, repo, hidden, True)),
        inputs=[version, repo_id, private],
        outputs=listing,
        api_name="export_push_preview",
    )
    push.click(
        plain_errors(lambda reference, repo, hidden: push_preview(context.settings, reference, repo, hidden, False)),
        inputs=[version, repo_id, private],
        outputs=listing,
        api_name="export_push",
    )
