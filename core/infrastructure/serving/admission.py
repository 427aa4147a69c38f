"""Admission control: a fixed number of generation slots and a bounded first-come-first-served queue.

Every prompt needs one slot while it is generating (or next in a batch). A request asks for one
slot per prompt with :meth:`AdmissionQueue.enter`; slots are granted in arrival order as they
free up, one prompt at a time, so a long multi-prompt request starts at once with the slots there
are and cannot take more than ``limit`` of them. Requests whose prompts would leave more than
``max_queue`` prompts waiting are refused at once (:class:`QueueFullError`).

Slots are released from the batch worker threads, so the counts are guarded by a lock and the
waiting requests are woken on their event loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque


class QueueFullError(Exception):
    """The waiting queue has no room for the request's prompts."""


class Ticket:
    """One request's place in the queue: how many of its prompts have been granted a slot.

    Args:
        queue: The queue it waits in.
        count: Slots the request needs (one per prompt).
        loop: The request's event loop (where it is woken).
    """

    def __init__(self, queue: AdmissionQueue, count: int, loop: asyncio.AbstractEventLoop) -> None:
        self.queue = queue
        self.count = count
        self.granted = 0
        self.used = 0
        self._loop = loop
        self._changed = asyncio.Event()

    def _grant(self) -> None:
        """Counts one more granted slot (called with the queue's lock held)."""
        self.granted += 1
        with contextlib.suppress(RuntimeError):  # a closed loop: the request is gone
            self._loop.call_soon_threadsafe(self._changed.set)

    async def wait(self, needed: int, timeout_s: float) -> bool:
        """Waits until at least ``needed`` slots are granted.

        Args:
            needed: Granted slots to wait for.
            timeout_s: Longest wait.

        Returns:
            True once they are granted, False on timeout.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            self._changed.clear()
            if self.granted >= needed:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def take(self) -> int:
        """Marks the granted slots as used by rows; returns how many were newly taken."""
        fresh = self.granted - self.used
        self.used = self.granted
        return fresh

    def leave(self) -> None:
        """Leaves the queue: prompts not yet granted stop waiting, granted slots not used are freed."""
        self.queue.leave(self)


class AdmissionQueue:
    """Generation slots with a bounded queue of prompts waiting for them.

    Args:
        limit: Slots (prompts generating at once).
        max_queue: Most prompts waiting for a slot.
        timeout_s: Longest wait for a request's first slot (enforced by the caller).
    """

    def __init__(self, limit: int, max_queue: int, timeout_s: float) -> None:
        self.limit = limit
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self.active = 0
        self.queued = 0
        self._tickets: deque[Ticket] = deque()
        self._lock = threading.Lock()

    @property
    def capacity(self) -> int:
        """Most prompts one request may have: every slot plus the whole queue."""
        return self.limit + self.max_queue

    def enter(self, count: int) -> Ticket:
        """Queues a request's prompts; free slots are granted at once.

        Args:
            count: Prompts of the request (at most :attr:`capacity`).

        Returns:
            The request's ticket.

        Raises:
            QueueFullError: When the prompts would leave more than ``max_queue`` prompts waiting.
        """
        ticket = Ticket(self, count, asyncio.get_running_loop())
        with self._lock:
            free = max(0, self.limit - self.active) if not self._tickets else 0
            if self.queued + count - free > self.max_queue:
                raise QueueFullError(f"{self.queued} prompts already waiting (serve.max_queue={self.max_queue})")
            self._tickets.append(ticket)
            self.queued += count
            self._dispatch()
        return ticket

    def release(self, count: int = 1) -> None:
        """Frees slots (thread-safe) and grants them to the oldest waiting prompts.

        Args:
            count: Slots to free.
        """
        with self._lock:
            self.active = max(0, self.active - count)
            self._dispatch()

    def leave(self, ticket: Ticket) -> None:
        """Takes a ticket out of the queue and frees its granted but unused slots.

        Args:
            ticket: The leaving request's ticket.
        """
        with self._lock:
            if ticket in self._tickets:
                self._tickets.remove(ticket)
                self.queued -= ticket.count - ticket.granted
            unused = ticket.granted - ticket.used
            ticket.used = ticket.granted
            self.active = max(0, self.active - unused)
            self._dispatch()

    def _dispatch(self) -> None:
        """Grants free slots in arrival order (called with the lock held)."""
        while self._tickets and self.active < self.limit:
            head = self._tickets[0]
            head._grant()
            self.active += 1
            self.queued -= 1
            if head.granted >= head.count:
                self._tickets.popleft()
