"""Dynamic batching: one worker thread per model decodes concurrent compatible requests together.

Requests (streaming or not) are queued as :class:`~core.infrastructure.serving.rows.Row` s. The
worker takes the oldest row and, for up to ``serve.batch_wait_ms`` after it arrived, collects
compatible rows (see :func:`batch_key`) up to ``serve.max_batch_size``, then runs them as one
left-padded ``Predictor.complete_ids`` call. Only one generation runs on a model at a time, so
concurrent requests never oversubscribe the CPU cores with competing torch threads.

Each row keeps its own ``max_tokens``, stop strings and cancellation
(:class:`~core.infrastructure.serving.rows.RowTracker`), and its result is delivered as soon as the
row ends. Seeded sampling requests run alone, so a seed reproduces the same answer.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import replace

from loguru import logger

from core.infrastructure.inference.predictor import Completion, Predictor, SamplingOptions
from core.infrastructure.serving.rows import Row, RowTracker


def batch_key(options: SamplingOptions) -> Hashable | None:
    """What rows must share to be decoded in one batch; None for rows that must run alone.

    Greedy rows all batch together (``max_tokens`` and stop strings are per row); sampling rows
    batch when temperature and top-p match; seeded sampling rows never batch (reproducibility).

    Args:
        options: A row's decoding options.

    Returns:
        A hashable key, or None.
    """
    if not options.sampling:
        return ("greedy",)
    if options.seed is not None:
        return None
    return ("sample", options.temperature, options.top_p)


class BatchLog:
    """Sizes of the recent batches (all models), for ``/health`` and tests.

    Args:
        keep: How many recent batch sizes to keep.
    """

    def __init__(self, keep: int = 1000) -> None:
        self.sizes: deque[int] = deque(maxlen=keep)
        self.batches = 0
        self.rows = 0
        self._lock = threading.Lock()

    def record(self, size: int) -> None:
        """Counts one batch of ``size`` rows."""
        with self._lock:
            self.sizes.append(size)
            self.batches += 1
            self.rows += size

    def summary(self) -> dict[str, float | int]:
        """Batches run, rows decoded, mean and largest recent batch size."""
        with self._lock:
            recent = list(self.sizes)
            return {
                "batches": self.batches,
                "rows": self.rows,
                "mean_batch_size": round(sum(recent) / len(recent), 2) if recent else 0.0,
                "largest_recent_batch": max(recent, default=0),
            }


class ModelBatcher:
    """The batch worker of one model.

    Args:
        predictor: The model's predictor.
        max_batch_size: Most rows per batch.
        wait_s: Longest wait for more compatible rows after the oldest one arrived.
        log: Where batch sizes are recorded.
        name: Model name (thread name, logs).
    """

    def __init__(self, predictor: Predictor, max_batch_size: int, wait_s: float, log: BatchLog, name: str) -> None:
        self.predictor = predictor
        self.max_batch_size = max_batch_size
        self.wait_s = wait_s
        self.log = log
        self.name = name
        self._waiting: list[Row] = []
        self._closed = False
        self._condition = threading.Condition()
        self._thread = threading.Thread(target=self._work, name=f"api-batch-{name}", daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        """Rows queued and not yet in a batch."""
        with self._condition:
            return len(self._waiting)

    def submit(self, rows: Sequence[Row]) -> None:
        """Queues rows (one request's prompts) for the next batches.

        Args:
            rows: The rows.

        Raises:
            RuntimeError: When the batcher is closed.
        """
        now = time.monotonic()
        with self._condition:
            if self._closed:
                raise RuntimeError("the server is shutting down")
            for row in rows:
                row.enqueued_at = now
                self._waiting.append(row)
            self._condition.notify_all()

    def close(self) -> None:
        """Stops the worker after its current batch; queued rows fail."""
        with self._condition:
            self._closed = True
            left, self._waiting = self._waiting, []
            self._condition.notify_all()
        for row in left:
            row.channel.fail(RuntimeError("the server is shutting down"))

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            live = [row for row in batch if not row.cancel.is_set()]
            for row in batch:
                if row.cancel.is_set():
                    row.channel.finish(Completion("", len(row.prompt_ids), 0, "cancelled"))
            if live:
                self._generate(live)

    def _next_batch(self) -> list[Row] | None:
        with self._condition:
            while not self._waiting and not self._closed:
                self._condition.wait()
            if self._closed:
                return None
            key = batch_key(self._waiting[0].options)
            if key is None:
                return [self._waiting.pop(0)]
            deadline = self._waiting[0].enqueued_at + self.wait_s
            while not self._closed:
                compatible = sum(1 for row in self._waiting if batch_key(row.options) == key)
                remaining = deadline - time.monotonic()
                if compatible >= self.max_batch_size or remaining <= 0:
                    break
                self._condition.wait(remaining)
            batch: list[Row] = []
            for row in list(self._waiting):
                if len(batch) < self.max_batch_size and batch_key(row.options) == key:
                    batch.append(row)
                    self._waiting.remove(row)
            return batch

    def _generate(self, rows: list[Row]) -> None:
        self.log.record(len(rows))
        longest = max(row.options.max_new_tokens for row in rows)
        # Stop strings and max_tokens are applied per row by the tracker; the seed only for a lone row.
        shared = replace(rows[0].options, max_new_tokens=longest, stop=())
        tracker = RowTracker(self.predictor, rows)
        started = time.monotonic()
        try:
            self.predictor.complete_ids([row.prompt_ids for row in rows], shared, stopping_criteria=[tracker])
            tracker.finish_all()
        except Exception as error:
            logger.exception("Batch of {} on {} failed", len(rows), self.name)
            for row in rows:
                row.channel.fail(error)
        logger.debug("Batch of {} on {} took {:.3f} s", len(rows), self.name, time.monotonic() - started)


class Batchers:
    """One :class:`ModelBatcher` per loaded predictor, started on first use.

    Args:
        max_batch_size: Most rows per batch.
        wait_s: Batch collection window in seconds.
    """

    def __init__(self, max_batch_size: int, wait_s: float) -> None:
        self.max_batch_size = max_batch_size
        self.wait_s = wait_s
        self.log = BatchLog()
        self._batchers: dict[int, ModelBatcher] = {}
        self._lock = threading.Lock()

    def for_predictor(self, predictor: Predictor, name: str) -> ModelBatcher:
        """The batcher of a predictor (created with its worker thread on first use).

        Args:
            predictor: The predictor.
            name: Model name (thread name, logs).

        Returns:
            The batcher.
        """
        with self._lock:
            batcher = self._batchers.get(id(predictor))
            if batcher is None or batcher.predictor is not predictor:
                batcher = ModelBatcher(predictor, self.max_batch_size, self.wait_s, self.log, name)
                self._batchers[id(predictor)] = batcher
            return batcher

    def close(self) -> None:
        """Stops every worker."""
        with self._lock:
            batchers, self._batchers = list(self._batchers.values()), {}
        for batcher in batchers:
            batcher.close()
