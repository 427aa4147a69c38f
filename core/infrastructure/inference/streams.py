"""Streamed answers: text chunks as they are generated, held back at a possible stop string, cancellable."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from transformers import TextIteratorStreamer

from core.infrastructure.inference.options import Completion, FinishReason, SamplingOptions, trim_at_stop

if TYPE_CHECKING:
    from core.infrastructure.inference.predictor import Predictor


class TextStream:
    """Iterator over the text chunks of a streamed answer; after it ends it knows how the answer ended.

    Attributes:
        finish_reason: Set once the stream is exhausted.
        prompt_tokens: Tokens in the prompt.
        completion_tokens: Tokens generated, set once the stream is exhausted.
    """

    def __init__(
        self,
        predictor: Predictor,
        prompt_ids: list[int],
        options: SamplingOptions,
        cancel_event: threading.Event | None,
        timeout_s: float | None,
    ) -> None:
        self.prompt_tokens = len(prompt_ids)
        self.completion_tokens = 0
        self.finish_reason: FinishReason | None = None
        self._predictor = predictor
        self._options = options
        self._cancel = cancel_event or threading.Event()
        self._streamer = TextIteratorStreamer(
            predictor.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=timeout_s
        )
        self._results: list[Completion] = []
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(prompt_ids,), daemon=True, name="generate-stream")
        self._iterator = self._chunks()
        self._thread.start()

    def _run(self, prompt_ids: list[int]) -> None:
        try:
            self._results = self._predictor.complete_ids(
                [prompt_ids], self._options, cancel_event=self._cancel, streamer=self._streamer
            )
        except BaseException as error:  # re-raised in the consuming thread
            self._error = error
        finally:
            self._streamer.end()

    def _chunks(self) -> Iterator[str]:
        stop = [marker for marker in self._options.stop if marker]
        holdback = max((len(marker) for marker in stop), default=1) - 1
        pending = ""
        stopped = exhausted = False
        try:
            for piece in self._streamer:
                if stopped:
                    continue
                pending += piece
                trimmed, found = trim_at_stop(pending, stop)
                if found:
                    stopped = True
                    self._cancel.set()
                    if trimmed:
                        yield trimmed
                    pending = ""
                    continue
                ready = len(pending) - holdback
                if ready > 0:
                    yield pending[:ready]
                    pending = pending[ready:]
            exhausted = True
            if pending and not stopped:
                yield pending
        finally:
            if not exhausted:  # the consumer stopped early: end generation instead of running on
                self._cancel.set()
            self._thread.join()
        if self._error is not None:
            raise self._error
        result = self._results[0] if self._results else None
        self.completion_tokens = result.completion_tokens if result else 0
        self.finish_reason = "stop" if stopped else (result.finish_reason if result else "cancelled")

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        return next(self._iterator)

    def cancel(self) -> None:
        """Stops generation early (the stream then ends with ``finish_reason == "cancelled"``)."""
        self._cancel.set()

    def join(self, timeout: float | None = None) -> None:
        """Waits for the generation thread to end.

        Args:
            timeout: Longest wait in seconds (None: no limit).
        """
        self._thread.join(timeout)

    def close(self) -> None:
        """Cancels generation and waits for its thread."""
        self._cancel.set()
        self._iterator.close()
