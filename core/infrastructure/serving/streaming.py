"""Server-sent events of a streamed completion, fed token by token by the batch worker.

The text is decoded incrementally from the row's tokens; a piece is sent only once it can no
longer change (no trailing half character, no possible start of a stop string), and the last
piece makes the streamed text equal to the completion's text.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from loguru import logger

from core.infrastructure.inference.predictor import Completion
from core.infrastructure.serving.rows import RowChannel


class IncrementalText:
    """Turns a row's tokens into text pieces whose concatenation is the final text.

    Args:
        tokenizer: The model's tokenizer.
        stop: The request's stop strings (never sent).
    """

    def __init__(self, tokenizer: Any, stop: Sequence[str]) -> None:
        self.tokenizer = tokenizer
        self.stop = [marker for marker in stop if marker]
        self.holdback = max((len(marker) for marker in self.stop), default=1) - 1
        self.ids: list[int] = []
        self.sent = ""
        self.stopped = False

    def add(self, token_id: int) -> str:
        """Adds a token; returns the text that became final (possibly empty)."""
        if self.stopped:
            return ""
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        positions = [text.find(marker) for marker in self.stop if marker in text]
        if positions:
            self.stopped = True
            return self._advance(text[: min(positions)])
        text = text.rstrip("\ufffd")  # an incomplete multi-byte character
        return self._advance(text[: max(0, len(text) - self.holdback)])

    def finish(self, final_text: str) -> str:
        """The rest of the completion's text after what was already sent."""
        if final_text.startswith(self.sent):
            return self._advance(final_text)
        logger.warning("Streamed text diverged from the final text; sending no remainder")
        return ""

    def _advance(self, text: str) -> str:
        if len(text) <= len(self.sent) or not text.startswith(self.sent):
            return ""
        piece, self.sent = text[len(self.sent) :], text
        return piece


@dataclass(frozen=True)
class StreamFormat:
    """How the chunks of one stream look.

    Attributes:
        identifier: Response id.
        created: Unix time.
        model: Model name as requested.
        style: ``chat`` (``chat.completion.chunk``) or ``text`` (``text_completion``).
        include_usage: Send a final usage chunk.
    """

    identifier: str
    created: int
    model: str
    style: str
    include_usage: bool

    @property
    def kind(self) -> str:
        """The ``object`` field of each chunk."""
        return "chat.completion.chunk" if self.style == "chat" else "text_completion"

    def chunk(self, text: str | None, finish_reason: str | None, first: bool = False) -> str:
        """One content (or final) chunk as JSON."""
        if self.style == "chat":
            delta: dict[str, Any] = {"role": "assistant", "content": text or ""} if first else {}
            if text and not first:
                delta = {"content": text}
            choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        else:
            choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish_reason}
        return self._envelope({"choices": [choice]})

    def usage_chunk(self, usage: dict[str, int]) -> str:
        """The final usage chunk as JSON."""
        return self._envelope({"choices": [], "usage": usage})

    def _envelope(self, fields: dict[str, Any]) -> str:
        return json.dumps(
            {"id": self.identifier, "object": self.kind, "created": self.created, "model": self.model, **fields}
        )


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """The OpenAI ``usage`` object.

    Args:
        prompt_tokens: Prompt tokens.
        completion_tokens: Generated tokens.

    Returns:
        Prompt, completion and total tokens.
    """
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def openai_reason(reason: str) -> str:
    """The OpenAI finish reason (a cancelled generation reports ``length``)."""
    return {"cancelled": "length"}.get(reason, reason)


async def stream_events(
    channel: RowChannel,
    cancel: threading.Event,
    text: IncrementalText,
    layout: StreamFormat,
    timeout_s: float,
) -> AsyncIterator[dict[str, str]]:
    """The SSE events of one streamed row, ending with ``[DONE]`` (or an error event).

    Args:
        channel: The row's channel (tokens, then the completion).
        cancel: The row's cancel event, set when the stream ends early (timeout, client gone).
        text: Incremental decoder of the row's tokens.
        layout: Chunk format.
        timeout_s: Longest time for the whole generation; past it an error event ends the stream.

    Yields:
        ``{"data": ...}`` events for ``EventSourceResponse``.
    """
    deadline = time.monotonic() + timeout_s
    try:
        if layout.style == "chat":
            yield {"data": layout.chunk("", None, first=True)}
        while True:
            try:
                kind, value = await asyncio.wait_for(channel.receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                cancel.set()
                message = f"generation exceeded the request timeout of {timeout_s:g} s"
                yield {"data": json.dumps({"error": {"message": message, "type": "timeout_error"}})}
                return
            if kind == "error":
                raise value
            if kind == "token":
                piece = text.add(value)
                if piece:
                    yield {"data": layout.chunk(piece, None)}
                continue
            completion: Completion = value
            rest = text.finish(completion.text)
            if rest:
                yield {"data": layout.chunk(rest, None)}
            yield {"data": layout.chunk(None, openai_reason(completion.finish_reason))}
            if layout.include_usage:
                yield {"data": layout.usage_chunk(usage(completion.prompt_tokens, completion.completion_tokens))}
            yield {"data": "[DONE]"}
            return
    except Exception as error:  # reported to the client as an error event
        logger.exception("Streaming generation failed")
        yield {"data": json.dumps({"error": {"message": str(error), "type": "server_error"}})}
    finally:
        cancel.set()
