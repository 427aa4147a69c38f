"""One prompt of an API request inside a batch: its channel back to the request, and per-row stopping.

A batch decodes several requests together, each with its own ``max_tokens``, stop strings and
cancellation. :class:`RowTracker` is a stopping criterion that sees every generated token of the
batch: it finishes each row exactly where a generation of that row alone would have ended (EOS,
stop string, its own ``max_tokens``, cancellation), builds the row's completion from its own
tokens, and hands it (and, for streams, each token) to the waiting request at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from loguru import logger
from transformers import StoppingCriteria

from core.infrastructure.inference.options import stop_string_criteria
from core.infrastructure.inference.predictor import Completion, Predictor, SamplingOptions


class RowChannel:
    """Hands a row's tokens and its final completion (or error) from the batch worker to the request.

    Thread-safe on the sending side; the receiving side runs on the event loop that created it.

    Args:
        loop: The request's event loop.
        streaming: Whether each generated token is forwarded (streams) or only the completion.
        on_finished: Called once (in the worker thread) when the row is finished, whatever the outcome.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, streaming: bool, on_finished: Callable[[], None] | None = None
    ) -> None:
        self.streaming = streaming
        self._loop = loop
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._on_finished = on_finished
        self._finished = False
        self._lock = threading.Lock()

    def _send(self, kind: str, value: Any) -> None:
        with contextlib.suppress(RuntimeError):  # a closed event loop (shutting down): nobody is listening
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, value))

    def token(self, token_id: int) -> None:
        """Forwards one generated token (streams only)."""
        if self.streaming:
            self._send("token", token_id)

    def finish(self, completion: Completion) -> None:
        """Delivers the row's completion (only the first outcome counts)."""
        self._close("done", completion)

    def fail(self, error: BaseException) -> None:
        """Delivers an error instead of a completion (only the first outcome counts)."""
        self._close("error", error)

    @property
    def finished(self) -> bool:
        """True once a completion or an error was delivered."""
        return self._finished

    def _close(self, kind: str, value: Any) -> None:
        with self._lock:
            if self._finished:
                return
            self._finished = True
        if self._on_finished is not None:  # first, so the slot is free before the client hears back
            try:
                self._on_finished()
            except Exception:  # a callback bug must not stop the batch
                logger.exception("Row completion callback failed")
        self._send(kind, value)

    async def receive(self) -> tuple[str, Any]:
        """The next event: ``("token", id)``, ``("done", Completion)`` or ``("error", exception)``."""
        return await self._queue.get()

    async def completion(self) -> Completion:
        """Waits for the completion, skipping tokens.

        Returns:
            The completion.

        Raises:
            BaseException: The error the batch failed with.
        """
        while True:
            kind, value = await self.receive()
            if kind == "done":
                return value
            if kind == "error":
                raise value


@dataclass(eq=False)
class Row:
    """One prompt waiting for (or in) a batch.

    Attributes:
        prompt_ids: Prompt token ids.
        options: The request's decoding options (``max_new_tokens`` and ``stop`` are per row).
        cancel: Set when the request gave up (timeout, client gone); the row then stops.
        channel: Where the result goes.
        enqueued_at: ``time.monotonic()`` when it was submitted.
    """

    prompt_ids: list[int]
    options: SamplingOptions
    cancel: threading.Event
    channel: RowChannel
    enqueued_at: float = field(default=0.0)


class Countdown:
    """Calls ``callback`` once, when :meth:`__call__` has been called ``count`` times (thread-safe).

    Args:
        count: Calls to wait for.
        callback: What to run then.
    """

    def __init__(self, count: int, callback: Callable[[], None]) -> None:
        self._left = count
        self._callback = callback
        self._lock = threading.Lock()

    def __call__(self) -> None:
        """Counts one call; runs the callback on the last."""
        with self._lock:
            self._left -= 1
            fire = self._left == 0
        if fire:
            self._callback()


class RowTracker(StoppingCriteria):
    """Stopping criterion that finishes each row of a batch on its own, exactly as if it ran alone.

    Args:
        predictor: The predictor generating (tokenizer, EOS ids, completion building).
        rows: The batch, in input order.
    """

    def __init__(self, predictor: Predictor, rows: Sequence[Row]) -> None:
        self.predictor = predictor
        self.rows = list(rows)
        self.tokens: list[list[int]] = [[] for _ in self.rows]
        self.done = [False] * len(self.rows)
        self._eos = set(predictor.eos_token_ids)
        self._stops: dict[tuple[str, ...], StoppingCriteria | None] = {}
        for row in self.rows:
            stop = _stop_strings(row.options)
            if stop and stop not in self._stops:
                self._stops[stop] = stop_string_criteria(predictor.tokenizer, stop)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        """Records each running row's new token and finishes the rows that end here."""
        last = input_ids[:, -1].tolist()
        hits: dict[tuple[str, ...], list[bool]] = {}
        for index, row in enumerate(self.rows):
            if self.done[index]:
                continue
            token = int(last[index])
            self.tokens[index].append(token)
            row.channel.token(token)
            stop = _stop_strings(row.options)
            if stop and stop not in hits:
                criterion = self._stops[stop]
                hits[stop] = criterion(input_ids, scores).tolist() if criterion else [False] * len(self.rows)
            if (
                token in self._eos
                or (stop and hits[stop][index])
                or len(self.tokens[index]) >= row.options.max_new_tokens
                or row.cancel.is_set()
            ):
                self._finish(index)
        return torch.tensor(self.done, dtype=torch.bool, device=input_ids.device)

    def finish_all(self) -> None:
        """Finishes the rows still open once generation has ended (normally none)."""
        for index in range(len(self.rows)):
            if not self.done[index]:
                self._finish(index)

    def _finish(self, index: int) -> None:
        self.done[index] = True
        row = self.rows[index]
        completion = self.predictor.completion_from_ids(
            self.tokens[index], len(row.prompt_ids), row.options, row.cancel.is_set()
        )
        row.channel.finish(completion)


def _stop_strings(options: SamplingOptions) -> tuple[str, ...]:
    return tuple(marker for marker in options.stop if marker)
