"""Pausing Python's cyclic garbage collector while many acyclic objects are made.

The collector runs a pass each time enough new container objects exist, and its full passes walk
every object alive. Loading a tokenizer (its JSON) and a prepare-data run's bookkeeping (one
outcome, one row, one key per record) make many objects that hold no reference cycles: in the
main process of a generated Alpaca 20k run the collector ran 390 times for 0.10-0.13 s, paused
226 times for 0.07 s (the rest while modules are imported). Plain reference counting still frees
everything; cycles made meanwhile are collected once the collector runs again.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pauses the cyclic garbage collector inside the block (it runs again afterwards, if it ran before)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
