"""Use case ``chat`` (``make inference``): an interactive terminal chat with a run or model.

Type a message and the answer streams back; the conversation history is kept and sent with each
turn. ``/reset`` starts a new conversation, ``/exit`` (or end of input) leaves.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from loguru import logger

from core.domain.config import Settings, load_settings

RESET_COMMAND = "/reset"
EXIT_COMMANDS = ("/exit", "/quit")
HELP_TEXT = "Commands: /reset starts a new conversation, /exit leaves.\n"


def chat_loop(
    predictor,
    input_stream: TextIO,
    output_stream: TextIO,
    system_prompt: str | None = None,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
) -> int:
    """Runs the chat until ``/exit`` or end of input.

    Args:
        predictor: A :class:`~core.infrastructure.inference.predictor.Predictor`.
        input_stream: Where user lines are read from (stdin).
        output_stream: Where prompts and streamed answers are written (stdout).
        system_prompt: Optional system prompt at the start of every conversation.
        max_new_tokens: Longest answer.
        temperature: 0 decodes greedily.

    Returns:
        The number of answers given.
    """
    head = [{"role": "system", "content": system_prompt}] if system_prompt else []
    history: list[dict[str, str]] = list(head)
    answers = 0
    output_stream.write(HELP_TEXT)
    while True:
        output_stream.write("you> ")
        output_stream.flush()
        line = input_stream.readline()
        if not line:
            output_stream.write("\n")
            break
        text = line.strip()
        if not text:
            continue
        if text in EXIT_COMMANDS:
            break
        if text == RESET_COMMAND:
            history = list(head)
            output_stream.write("(conversation reset)\n")
            continue
        history.append({"role": "user", "content": text})
        output_stream.write("assistant> ")
        pieces = []
        for chunk in predictor.stream(history, max_new_tokens=max_new_tokens, temperature=temperature):
            pieces.append(chunk)
            output_stream.write(chunk)
            output_stream.flush()
        output_stream.write("\n")
        history.append({"role": "assistant", "content": "".join(pieces)})
        answers += 1
    output_stream.flush()
    return answers


def new_model_cache() -> Any:
    """A cache that lets several chat models share one loaded base (adapters switch on it).

    Returns:
        An :class:`~core.infrastructure.inference.loading.InferenceCache`.
    """
    from core.infrastructure.inference.loading import InferenceCache

    return InferenceCache()


def open_chat_model(target: str | None, settings: Settings, cache: Any = None) -> Any:
    """Loads what a chat talks to -- a run, a merged model or a base model -- with its own chat template.

    The CLI chat, the studio's Chat tab and the API load models this same way.

    Args:
        target: Run name, model directory or model name (None: ``settings.model.name``).
        settings: Settings (paths, model).
        cache: A :func:`new_model_cache` to share bases between models, or None.

    Returns:
        A :class:`~core.infrastructure.inference.predictor.Predictor`.
    """
    from core.infrastructure.inference.loading import load_for_inference
    from core.infrastructure.inference.predictor import Predictor

    return Predictor(load_for_inference(target, settings, cache=cache))


def run(arguments: argparse.Namespace) -> int:
    """Runs ``finetune-studio chat``.

    Args:
        arguments: Parsed CLI arguments.

    Returns:
        Exit code 0.
    """
    settings = load_settings(arguments.config, arguments.overrides)
    predictor = open_chat_model(arguments.run, settings)
    logger.info("Chatting with {} ({})", predictor.loaded.name, predictor.loaded.technique or "base model")
    chat_loop(
        predictor,
        sys.stdin,
        sys.stdout,
        system_prompt=arguments.system,
        max_new_tokens=arguments.max_new_tokens,
        temperature=arguments.temperature,
    )
    return 0
