"""The ``chat`` mode of the Space: chat with the shipped runs (N columns) and the base model; no training.

A chat-mode Space folder holds ``adapters/<run>/`` (the run's ``final/`` adapter, pointing at its
base model by Hub id, and a manifest without machine paths) and ``space_config.json``. Its
``app.py`` calls :func:`launch_chat_space`, which shows the studio's Chat tab over those runs.
The studio side (``--auth``) is :func:`studio_auth`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import gradio as gr
from loguru import logger

from core.application.hub_runs import ADAPTERS_DIR, fetch_hub_runs
from core.domain.config import Settings, load_settings
from core.domain.errors import ConfigError
from studio.chat_engine import ChatModels
from studio.context import StudioContext
from studio.jobs import JobSupervisor
from studio.tabs.chat import build_chat_tab

SPACE_CONFIG_FILE = "space_config.json"
AUTH_VARIABLE = "SPACE_AUTH"
AUTH_DISABLED = "none"


def studio_auth() -> tuple[str, str] | None:
    """The Gradio ``auth`` of a studio-mode Space from ``SPACE_AUTH`` (``user:password``).

    Returns:
        ``(user, password)``, or None when ``SPACE_AUTH=none`` disables it explicitly.

    Raises:
        ConfigError: When ``SPACE_AUTH`` is unset or malformed: the full studio (which trains and
            deletes runs) is never served without a login unless that is asked for.
    """
    value = os.environ.get(AUTH_VARIABLE, "").strip()
    if value.lower() == AUTH_DISABLED:
        logger.warning("{}=none: the studio is served WITHOUT a login; anyone with the URL can train", AUTH_VARIABLE)
        return None
    user, _, password = value.partition(":")
    if not user or not password:
        raise ConfigError(
            f"{AUTH_VARIABLE}: the studio Space needs a login; set {AUTH_VARIABLE}=user:password (a Space secret), "
            f"or {AUTH_VARIABLE}=none to serve it without one"
        )
    return user, password


def chat_space_settings(space_dir: Path) -> Settings:
    """Settings of a chat-mode Space: the shipped runs as ``paths.runs_dir``, their base model as ``model.name``.

    Args:
        space_dir: The Space folder.

    Returns:
        The settings (``FINETUNE_*`` variables still apply, e.g. the model cache).
    """
    config = json.loads((space_dir / SPACE_CONFIG_FILE).read_text(encoding="utf-8"))
    overrides = [f"paths.runs_dir={space_dir / ADAPTERS_DIR}", f"model.name={config['base_model']}"]
    return load_settings(None, overrides)


def build_chat_space(settings: Settings, title: str) -> tuple[gr.Blocks, StudioContext]:
    """The chat-only Blocks: the studio's Chat tab (single chat and N columns) over the shipped runs.

    Args:
        settings: From :func:`chat_space_settings`.
        title: Shown as the page heading.

    Returns:
        The Blocks and its context (the job supervisor is never started: no training here).
    """
    context = StudioContext(
        settings=settings,
        supervisor=JobSupervisor(Path(settings.paths.runs_dir)),
        chat_models=ChatModels(settings),
    )
    with gr.Blocks(title=title, analytics_enabled=False, fill_width=True) as blocks:
        gr.Markdown(f"# {title}")
        gr.Markdown(
            "Chat with the finetuned runs and the base model they started from; **N columns** sends one "
            "prompt to several of them with the same seed."
        )
        refresher = build_chat_tab(context)
        refresher.listen(blocks.load)
    return blocks, context


def launch_chat_space(space_dir: Path, block: bool = True) -> gr.Blocks:
    """Serves the chat-mode Space on ``GRADIO_SERVER_NAME``/``GRADIO_SERVER_PORT`` (0.0.0.0:7860 by default).

    Args:
        space_dir: The Space folder.
        block: Serve until interrupted.

    Returns:
        The running Blocks.

    Raises:
        FinetuneStudioError: When a ``hub_runs`` adapter cannot be fetched or does not fit the base model.
    """
    settings = chat_space_settings(space_dir)
    config = json.loads((space_dir / SPACE_CONFIG_FILE).read_text(encoding="utf-8"))
    fetch_hub_runs(space_dir, config, Path(settings.paths.model_cache))
    blocks, _context = build_chat_space(settings, config.get("title", "Finetuned model chat"))
    blocks.queue(default_concurrency_limit=2)
    blocks.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        prevent_thread_lock=True,
        show_error=True,
        quiet=True,
        ssr_mode=False,
    )
    logger.info("Chat Space running on {} with runs: {}", blocks.local_url, ", ".join(config["runs"]))
    if block:
        blocks.block_thread()
    return blocks
