"""Chat for the studio: which models can be chatted with, a small cache of loaded models, streaming.

Models are loaded with :func:`core.application.chat.open_chat_model`, so each
run answers with its own chat template, exactly as the CLI chat and the API server do.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from core.application.chat import new_model_cache, open_chat_model
from core.domain.config import Settings
from core.domain.manifest import FINAL_DIR
from studio.runs import load_manifest, run_names

BASE_PREFIX = "base: "
RUN_PREFIX = "run: "
MERGED_PREFIX = "merged: "


def chat_targets(settings: Settings) -> list[str]:
    """Labels of everything the Chat tab can talk to: finished runs, merged models, the base model.

    Args:
        settings: Studio settings.

    Returns:
        Labels such as ``run: my-lora``, ``merged: my-lora/merged`` and ``base: smollm2-135m-instruct``.
    """
    runs_dir = Path(settings.paths.runs_dir)
    labels = []
    for name in run_names(runs_dir):
        run_dir = runs_dir / name
        manifest = load_manifest(run_dir)
        if manifest is not None and (run_dir / (manifest.final_path or FINAL_DIR)).exists():
            labels.append(f"{RUN_PREFIX}{name}")
        for merged in sorted(run_dir.glob("merged*")):
            if (merged / "config.json").exists():
                labels.append(f"{MERGED_PREFIX}{name}/{merged.name}")
    labels.append(f"{BASE_PREFIX}{settings.model.name}")
    return labels


def resolve_target(label: str, settings: Settings) -> str:
    """The ``load_for_inference`` target of a label.

    Args:
        label: A label from :func:`chat_targets` (a bare run name or model name is accepted too).
        settings: Studio settings.

    Returns:
        Run name, merged directory or model name.
    """
    if label.startswith(RUN_PREFIX):
        return label.removeprefix(RUN_PREFIX)
    if label.startswith(MERGED_PREFIX):
        return str(Path(settings.paths.runs_dir) / label.removeprefix(MERGED_PREFIX))
    if label.startswith(BASE_PREFIX):
        return label.removeprefix(BASE_PREFIX)
    return label


class ChatModels:
    """Models loaded for chat, shared by all sessions; adapters share one loaded base model.

    Args:
        settings: Studio settings (paths, model).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._predictors: dict[str, Any] = {}
        self._cache: Any = None
        self._lock = threading.Lock()
        self._streams: dict[str, set[Any]] = {}
        self._streams_lock = threading.Lock()

    def get(self, label: str) -> Any:
        """Loads (or reuses) the model behind a label.

        Args:
            label: Chat target label.

        Returns:
            Its ``Predictor``.
        """
        target = resolve_target(label, self.settings)
        with self._lock:
            if target not in self._predictors:
                if self._cache is None:
                    self._cache = new_model_cache()
                logger.info("Loading {} for chat", target)
                self._predictors[target] = open_chat_model(target, self.settings, cache=self._cache)
            return self._predictors[target]

    def template(self, label: str) -> str:
        """The chat template a target answers with.

        Args:
            label: Chat target label.

        Returns:
            The Jinja template text.
        """
        predictor = self.get(label)
        return predictor.loaded.chat_template or predictor.tokenizer.chat_template or ""

    def context_use(self, label: str, messages: list[dict[str, str]]) -> ContextUse:
        """How much of the model's context window a conversation's prompt takes.

        Args:
            label: Chat target label.
            messages: Conversation ending with a user turn.

        Returns:
            Prompt tokens and the model's window.
        """
        predictor = self.get(label)
        window = getattr(predictor.loaded.model.config, "max_position_embeddings", None) or 2048
        return ContextUse(prompt_tokens=len(predictor.render(messages)), window=int(window))

    def stream(
        self,
        label: str,
        messages: list[dict[str, str]],
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        seed: int = 42,
        session: str | None = None,
    ) -> Iterator[str]:
        """Streams an answer; yields the text generated so far after each new piece.

        Args:
            label: Chat target label.
            messages: Conversation ending with a user turn.
            max_new_tokens: Longest answer.
            temperature: 0 for greedy decoding, else sampling temperature.
            seed: Sampling seed (the same for every model in N-column mode).
            session: The browser session asking; :meth:`cancel` with it stops this generation.

        Yields:
            The answer so far.
        """
        predictor = self.get(label)
        stream = predictor.stream(
            messages, max_new_tokens=int(max_new_tokens), temperature=float(temperature), seed=int(seed)
        )
        key = session or ""
        with self._streams_lock:
            self._streams.setdefault(key, set()).add(stream)
        text = ""
        try:
            for piece in stream:
                text += piece
                yield text
        finally:
            with self._streams_lock:
                self._streams.get(key, set()).discard(stream)
            stream.close()

    def cancel(self, session: str | None) -> int:
        """Stops every answer being generated for a browser session (generation ends within one token).

        Args:
            session: The session given to :meth:`stream`.

        Returns:
            How many generations were stopped.
        """
        with self._streams_lock:
            streams = list(self._streams.pop(session or "", set()))
        for stream in streams:
            stream.cancel()
        if streams:
            logger.info("Chat: stopped {} generation(s) on request", len(streams))
        return len(streams)


@dataclass(frozen=True)
class ContextUse:
    """A prompt's length against the model's context window.

    Attributes:
        prompt_tokens: Tokens of the rendered conversation (assistant header included).
        window: The model's context window (``max_position_embeddings``).
    """

    prompt_tokens: int
    window: int

    def room(self, max_new_tokens: int) -> int:
        """New tokens that still fit after the prompt (at most *max_new_tokens*, never below 0)."""
        return max(0, min(int(max_new_tokens), self.window - self.prompt_tokens))
