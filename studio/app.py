"""The Finetune Studio Gradio app: header, Data, Train, Evaluate, Compare, Chat and Export tabs.

``build_app`` assembles the Blocks; ``launch_studio`` starts the job supervisor and the server.
The studio only calls ``core``: data preparation, training (in a child process), evaluation,
comparison and inference are the same use cases the CLI runs.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr
from loguru import logger

from core.domain.config import Settings
from studio.chat_engine import ChatModels
from studio.context import Refresher, StudioContext
from studio.jobs import JobSupervisor
from studio.resources import resources_markdown
from studio.run_views import initial_run, run_choices
from studio.tabs.chat import build_chat_tab
from studio.tabs.compare import build_compare_tab
from studio.tabs.data import build_data_tab
from studio.tabs.evaluate import build_evaluate_tab
from studio.tabs.export import build_export_tab
from studio.tabs.train import TrainTab, build_train_tab

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
THEME_FILE = ASSETS_DIR / "theme.json"
CSS_FILE = ASSETS_DIR / "studio.css"
HEADER_INTERVAL_S = 5.0
GUIDE = (
    "**Data** (check and prepare your file) → **Train** (pick a technique, start) → **Evaluate** (test split, "
    "base model for contrast) → **Compare** (runs side by side) → **Chat** (try it) → **Export** (merge, GGUF, "
    "Hub, API)"
)
"""The order a newcomer goes through the tabs, shown under the header."""


def load_theme() -> gr.themes.Base:
    """The studio theme from ``assets/theme.json`` (Gradio's default theme when the file is missing)."""
    if THEME_FILE.exists():
        return gr.Theme.load(str(THEME_FILE))
    logger.warning("{} not found; using the default theme", THEME_FILE)
    return gr.themes.Default()


def load_css() -> str:
    """The studio stylesheet from ``assets/studio.css``."""
    return CSS_FILE.read_text(encoding="utf-8") if CSS_FILE.exists() else ""


def build_app(settings: Settings, supervisor: JobSupervisor | None = None) -> tuple[gr.Blocks, StudioContext]:
    """Builds the studio's Blocks.

    Args:
        settings: Studio settings: paths, the default model (``model.name``) and dataset (``data.dataset``).
        supervisor: Job supervisor (one is created for ``paths.runs_dir`` when omitted; not started).

    Returns:
        The Blocks and the shared context.
    """
    supervisor = supervisor or JobSupervisor(Path(settings.paths.runs_dir))
    context = StudioContext(settings=settings, supervisor=supervisor, chat_models=ChatModels(settings))
    with gr.Blocks(title="Finetune Studio", analytics_enabled=False, fill_width=True) as blocks:
        with gr.Row(elem_id="studio-header", equal_height=True):
            gr.Markdown("# Finetune Studio", elem_id="studio-title")
            resources = gr.Markdown(  # a function: computed for each page load, not once at start-up
                lambda: resources_markdown(context.active_run()), elem_id="studio-resources"
            )
        gr.Markdown(GUIDE, elem_id="studio-guide", elem_classes=["hint"])
        with gr.Tabs(elem_classes=["studio-tabs"], selected="train"):
            with gr.Tab("Data", id="data"):
                data_placeholder = gr.Column()
            with gr.Tab("Train", id="train"):
                train_tab = build_train_tab(context)
            with gr.Tab("Evaluate", id="evaluate") as evaluate_tab:
                evaluate_refresher = build_evaluate_tab(context)
            with gr.Tab("Compare", id="compare") as compare_tab:
                compare_refresher = build_compare_tab(context, train_tab)
            with gr.Tab("Chat", id="chat") as chat_tab:
                chat_refresher = build_chat_tab(context)
            with gr.Tab("Export", id="export") as export_tab:
                export_refresher = build_export_tab(context)
        with data_placeholder:
            build_data_tab(context, train_tab)

        header_timer = gr.Timer(HEADER_INTERVAL_S)
        header_timer.tick(
            lambda: resources_markdown(context.active_run()),
            outputs=resources,
            api_name="machine_resources",
            show_progress="hidden",
            queue=False,
        )
        _refresh_on_select(
            [
                (evaluate_tab, evaluate_refresher),
                (compare_tab, compare_refresher),
                (chat_tab, chat_refresher),
                (export_tab, export_refresher),
            ]
        )
        _on_page_load(blocks, context, train_tab)
    return blocks, context


def _refresh_on_select(pairs: list[tuple[gr.Tab, Refresher]]) -> None:
    """Each tab refreshes its lists when it is selected."""
    for tab, refresher in pairs:
        refresher.listen(tab.select)


def _on_page_load(blocks: gr.Blocks, context: StudioContext, train_tab: TrainTab) -> None:
    """On page load: the Train tab's run selector and its saved form."""

    def on_load() -> object:
        selected = initial_run(context)
        return gr.update(choices=run_choices(context, selected), value=selected)

    blocks.load(on_load, outputs=train_tab.run_selector, api_name="initial_run")
    train_tab.form_restore.listen(blocks.load)
    train_tab.history_refresh.listen(blocks.load)


def launch_studio(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    block: bool = True,
    supervisor: JobSupervisor | None = None,
    auth: tuple[str, str] | None = None,
) -> tuple[gr.Blocks, StudioContext]:
    """Builds the studio, starts its job supervisor and serves it.

    Args:
        settings: Studio settings.
        host: Bind address (default: ``studio.host``).
        port: Port (default: ``studio.port``; 0 picks a free one).
        block: Serve until interrupted (the CLI); False returns at once (tests, notebooks).
        supervisor: Optional job supervisor (created for ``paths.runs_dir`` when omitted).
        auth: ``(user, password)`` for Gradio's login page (the studio-mode Space), or None.

    Returns:
        The running Blocks (``blocks.local_url`` is its address) and the shared context.
    """
    blocks, context = build_app(settings, supervisor)
    context.supervisor.start()
    server_port = settings.studio.port if port is None else port
    if server_port == 0:
        server_port = free_port(host or settings.studio.host)
    blocks.queue(default_concurrency_limit=2)
    blocks.launch(
        server_name=host or settings.studio.host,
        server_port=server_port,
        share=settings.studio.share,
        prevent_thread_lock=True,
        show_error=True,
        quiet=True,
        ssr_mode=False,
        theme=load_theme(),
        css=load_css(),
        footer_links=["api"],
        auth=auth,
    )
    logger.info("Finetune Studio is running on {}", blocks.local_url)
    if block:
        try:
            blocks.block_thread()
        finally:
            close_studio(blocks, context)
    return blocks, context


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free now on ``host`` (for tests and ``--port 0``).

    Args:
        host: Bind address.

    Returns:
        The port number.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def close_studio(blocks: gr.Blocks, context: StudioContext, stop_running: bool = True) -> None:
    """Stops the server and the job supervisor (a running training is asked to stop and checkpoint).

    Args:
        blocks: The running Blocks.
        context: Its context.
        stop_running: Stop the running job too.
    """
    context.supervisor.close(stop_running=stop_running)
    context.api_server.stop()
    blocks.close()
    logger.info("Finetune Studio closed")
