"""Running one request's prompts: wait for slots in the admission queue, then generate on the batcher.

Each prompt becomes a :class:`~core.infrastructure.serving.rows.Row` submitted to its model's
batcher as soon as the :class:`~core.infrastructure.serving.admission.AdmissionQueue` grants it a
slot; the slot is freed when the row ends (whatever the outcome). A request that gets no slot
within ``serve.queue_timeout_s``, or finds the queue full, is answered with 429; one whose
generation (from its first slot on) runs past ``serve.request_timeout_s`` with 504.
"""

from __future__ import annotations

import asyncio
import threading
import time

from sse_starlette.sse import EventSourceResponse
from starlette.background import BackgroundTask

from core.domain.serve_settings import ServeSettings
from core.infrastructure.inference.predictor import Completion, Predictor, SamplingOptions
from core.infrastructure.serving.admission import AdmissionQueue, QueueFullError, Ticket
from core.infrastructure.serving.batcher import Batchers, ModelBatcher
from core.infrastructure.serving.guard import ApiError
from core.infrastructure.serving.rows import Row, RowChannel
from core.infrastructure.serving.streaming import IncrementalText, StreamFormat, stream_events


class Generations:
    """Admits and runs the prompts of API requests.

    Args:
        serve: Serving settings (limits and timeouts).
        batchers: The per-model batch workers.
    """

    def __init__(self, serve: ServeSettings, batchers: Batchers) -> None:
        self.serve = serve
        self.batchers = batchers
        self.admission = AdmissionQueue(serve.max_concurrency, serve.max_queue, serve.queue_timeout_s)

    def check_prompt_count(self, count: int) -> None:
        """Rejects a request with more prompts than the server can ever hold at once.

        Args:
            count: Prompts of the request.

        Raises:
            ApiError: 400 when ``count`` exceeds ``max_concurrency + max_queue``.
        """
        if count > self.admission.capacity:
            raise ApiError(
                400,
                f"{count} prompts in one request; this server takes at most {self.admission.capacity} "
                "(serve.max_concurrency + serve.max_queue)",
                param="prompt",
                code="too_many_prompts",
            )

    async def complete(
        self, name: str, predictor: Predictor, prompts: list[list[int]], options: SamplingOptions
    ) -> list[Completion]:
        """Generates every prompt of a request (rows start as slots are granted, in arrival order).

        Args:
            name: Model name (batcher thread name).
            predictor: The model.
            prompts: Prompt token ids, one list per prompt.
            options: Decoding options.

        Returns:
            One completion per prompt, in order.

        Raises:
            ApiError: 429 (queue full or no slot in time), 504 (generation timeout).
        """
        if not prompts:  # ``"prompt": []``: nothing to generate
            return []
        self.check_prompt_count(len(prompts))
        loop = asyncio.get_running_loop()
        cancel = threading.Event()
        channels = [RowChannel(loop, False, self.admission.release) for _ in prompts]
        rows = [Row(ids, options, cancel, channel) for ids, channel in zip(prompts, channels, strict=True)]
        batcher = self.batchers.for_predictor(predictor, name)
        ticket = await self._admitted(len(rows))
        try:
            deadline = time.monotonic() + self.serve.request_timeout_s
            submitted = 0
            while True:
                submitted += self._submit(batcher, ticket, rows[submitted:])
                if submitted == len(rows):
                    break
                if not await ticket.wait(submitted + 1, deadline - time.monotonic()):
                    raise TimeoutError
            return await asyncio.wait_for(
                asyncio.gather(*(channel.completion() for channel in channels)),
                timeout=max(0.0, deadline - time.monotonic()),
            )
        except TimeoutError:
            cancel.set()
            raise ApiError(
                504,
                f"generation exceeded the request timeout of {self.serve.request_timeout_s:g} s "
                "(serve.request_timeout_s)",
                "timeout_error",
                "timeout",
            ) from None
        except BaseException:
            cancel.set()
            raise
        finally:
            ticket.leave()

    async def stream(
        self, name: str, predictor: Predictor, prompt_ids: list[int], options: SamplingOptions, layout: StreamFormat
    ) -> EventSourceResponse:
        """Waits for a slot, then streams one prompt's generation as server-sent events.

        Args:
            name: Model name.
            predictor: The model.
            prompt_ids: Prompt token ids.
            options: Decoding options.
            layout: Chunk format.

        Returns:
            The event stream (its row is cancelled when the stream ends early).

        Raises:
            ApiError: 429 when no slot is available in time.
        """
        batcher = self.batchers.for_predictor(predictor, name)
        channel = RowChannel(asyncio.get_running_loop(), True, self.admission.release)
        cancel = threading.Event()
        ticket = await self._admitted(1)
        try:
            self._submit(batcher, ticket, [Row(prompt_ids, options, cancel, channel)])
        finally:
            ticket.leave()
        text = IncrementalText(predictor.tokenizer, options.stop)
        events = stream_events(channel, cancel, text, layout, self.serve.request_timeout_s)
        return EventSourceResponse(events, ping=15, background=BackgroundTask(cancel.set))

    async def _admitted(self, count: int) -> Ticket:
        """Queues ``count`` prompts and waits (up to ``queue_timeout_s``) for the first slot."""
        try:
            ticket = self.admission.enter(count)
        except QueueFullError as error:
            raise self._busy(f"the waiting queue is full ({error})") from None
        try:
            admitted = await ticket.wait(1, self.admission.timeout_s)
        except BaseException:
            ticket.leave()
            raise
        if not admitted:
            ticket.leave()
            raise self._busy(f"no generation slot freed within {self.admission.timeout_s:g} s (serve.queue_timeout_s)")
        return ticket

    def _submit(self, batcher: ModelBatcher, ticket: Ticket, pending: list[Row]) -> int:
        """Submits as many pending rows as the ticket has fresh slots for; returns how many."""
        fresh = ticket.take()
        if fresh:
            try:
                batcher.submit(pending[:fresh])
            except BaseException:
                self.admission.release(fresh)
                raise
        return fresh

    def _busy(self, reason: str) -> ApiError:
        return ApiError(
            429,
            f"server busy: {reason}; {self.admission.limit} prompts generate at once and up to "
            f"{self.admission.max_queue} wait; retry shortly",
            "rate_limit_error",
            "too_many_requests",
        )
