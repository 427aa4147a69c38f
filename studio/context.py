"""What every tab shares (settings, job supervisor, chat models) and the plain-words error handling."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
from loguru import logger

from core.domain.config import Settings
from core.domain.errors import FinetuneStudioError
from studio.api_server import ApiServer
from studio.chat_engine import ChatModels
from studio.jobs import JobSupervisor


@dataclass
class StudioContext:
    """Shared state of one studio process.

    Attributes:
        settings: The studio's settings (paths, default model and dataset).
        supervisor: The job supervisor running training/evaluation in child processes.
        chat_models: Cache of models loaded for chat.
        api_server: The Export tab's OpenAI-compatible API process (state under ``<runs>/.studio-api``).
    """

    settings: Settings
    supervisor: JobSupervisor
    chat_models: ChatModels
    api_server: ApiServer = field(init=False)

    def __post_init__(self) -> None:
        self.api_server = ApiServer(self.runs_dir / ".studio-api")

    @property
    def runs_dir(self) -> Path:
        """``paths.runs_dir``."""
        return Path(self.settings.paths.runs_dir)

    def active_run(self) -> str | None:
        """The run whose job is running now, if any."""
        current = self.supervisor.current()
        return current.run_name if current is not None and current.kind == "train" else None


def plain_message(error: BaseException) -> str:
    """Turns an exception into a message for the user, in plain words.

    Args:
        error: The exception.

    Returns:
        The message.
    """
    text = str(error).strip() or error.__class__.__name__
    lowered = text.lower()
    if "out of memory" in lowered or isinstance(error, MemoryError):
        return (
            "Out of memory: this model/technique/batch does not fit this machine. "
            "Try a smaller batch, a shorter max sequence length, QLoRA or LoRA, or gradient checkpointing."
        )
    if isinstance(error, FinetuneStudioError | ValueError | FileNotFoundError | KeyError):
        return text.strip("'\"")
    return f"Unexpected error ({error.__class__.__name__}): {text}. Details are in the studio log."


USER_ERROR_TOAST_S = 10
"""Seconds a message about something the user can fix stays up (an unexpected error stays until closed)."""


def _raise_plain(name: str, error: Exception) -> None:
    if isinstance(error, gr.Error):
        raise error
    if isinstance(error, FinetuneStudioError | ValueError | FileNotFoundError | KeyError):
        logger.warning("{} failed: {}", name, error)
        raise gr.Error(plain_message(error), duration=USER_ERROR_TOAST_S) from error
    logger.opt(exception=error).error("{} failed", name)
    raise gr.Error(plain_message(error), duration=None) from error


def plain_errors(function: Callable[..., Any]) -> Callable[..., Any]:
    """Decorates an event handler: errors are logged with details and shown to the user in plain words.

    Works for plain functions and generators (streaming handlers).

    Args:
        function: The handler.

    Returns:
        The wrapped handler (same signature, so Gradio sees the same inputs).
    """
    name = function.__name__
    if inspect.isgeneratorfunction(function):

        @functools.wraps(function)
        def generator_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from function(*args, **kwargs)
            except Exception as error:
                _raise_plain(name, error)

        return generator_wrapper

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except Exception as error:
            _raise_plain(name, error)

    return wrapper


@dataclass
class Refresher:
    """An event handler that refreshes a tab's lists, run when the tab is selected or the page loads.

    Attributes:
        function: The handler.
        inputs: Its input components.
        outputs: Its output components.
        api_name: Endpoint name.
    """

    function: Callable[..., Any]
    inputs: list[Any]
    outputs: list[Any]
    api_name: str

    def listen(self, event: Callable[..., Any]) -> None:
        """Runs the handler on ``event`` (e.g. ``tab.select`` or ``blocks.load``), without a progress overlay."""
        event(
            self.function,
            inputs=self.inputs,
            outputs=self.outputs,
            api_name=self.api_name,
            show_progress="hidden",
        )
