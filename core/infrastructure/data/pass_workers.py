"""The record pass on every core: one task per thousand records, handed to whichever worker is free.

``datasets.map(num_proc=n)`` cuts the records into n equal shards up front, so the whole pass
waits for the slowest shard: on this shared 2-core machine one worker of a 200k-record pass
finished 1.6 s before the other. Here each task (a spool batch, or a range of lines of a JSON
Lines file, :mod:`core.infrastructure.data.jsonl_ranges`: a third of a second of work) goes to a
forked worker as soon as one is free, so a core idles at most one task's time at the end. The
workers inherit the pass from the fork (a task pickles a file name and offsets, nothing else), and
each task writes its rows to its own Arrow file, read back memory-mapped.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pyarrow as pa

from core.domain.errors import FinetuneStudioError
from core.infrastructure.data.gc_pause import paused_gc
from core.infrastructure.data.jsonl_ranges import LineRange, range_records
from core.infrastructure.data.record_pass import PASS_SCHEMA, RecordPass, load_payload

SpoolBatch = tuple[str, int, pa.Schema]
"""A task's records as a spool batch: the spool file, the batch's byte offset, the spool's schema."""

_INHERITED: list[Any] = []
"""The pass and its batch size while a pool runs (set before the fork: the workers inherit them)."""


def stream_batches(path: Path | str) -> list[tuple[int, int]]:
    """Where every record batch of an Arrow stream file starts, and its rows (only the batches' headers are read).

    Args:
        path: The file.

    Returns:
        ``(byte offset, rows)`` of every batch, in order.
    """
    batches = []
    with pa.memory_map(str(path)) as source:
        reader = pa.ipc.open_stream(source)
        while True:
            offset = source.tell()
            try:
                batches.append((offset, reader.read_next_batch().num_rows))
            except StopIteration:
                return batches


def run_pass(
    inputs: list[SpoolBatch | LineRange], record_pass: RecordPass, stem: Path, batch_size: int, workers: int | None
) -> list[Path]:
    """Runs the pass over every task's records; one output file per task, in task order.

    Args:
        inputs: Each task's records: a spool batch or a range of lines.
        record_pass: The per-record work.
        stem: The output files' path without its ending (``<stem>-000000.arrow``, ...).
        batch_size: Records per call of the pass (each call becomes one record batch of the output).
        workers: Worker processes (None: this process alone).

    Returns:
        The output files (Arrow streams of :data:`PASS_SCHEMA`), in task order.
    """
    tasks = [(records, f"{stem}-{number:06d}.arrow") for number, records in enumerate(inputs)]
    if workers:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the workers are the parallelism
        pa.array([0])  # pyarrow imports pandas at its first conversion (0.13 s): once here, not once per worker
        _INHERITED[:] = [record_pass, batch_size]
        try:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
                done = list(pool.map(_inherited_task, tasks))
        except BrokenProcessPool:
            raise FinetuneStudioError(
                "prepare-data: a worker process of the record pass stopped before its work was done (killed, "
                "or out of memory?); nothing was written. Free memory, or lower the cores it may use "
                "(taskset -c 0 finetune-studio prepare-data ...), and run it again"
            ) from None
        finally:
            _INHERITED.clear()
    else:
        done = [_task(task, record_pass, batch_size) for task in tasks]
    return [Path(path) for path in done]


def _inherited_task(task: tuple[SpoolBatch | LineRange, str]) -> str:
    """A task in a worker: the pass and the batch size come from the fork."""
    record_pass, batch_size = _INHERITED
    return _task(task, record_pass, batch_size)


def _task(task: tuple[SpoolBatch | LineRange, str], record_pass: RecordPass, batch_size: int) -> str:
    """Runs the pass over one task's records and writes its rows to the task's own file."""
    records, target = task
    with paused_gc():  # the pass makes no reference cycles; the collector's passes were 4 % of a worker's time
        items = range_records(records) if isinstance(records, LineRange) else _spooled(*records)
        with pa.OSFile(target, "wb") as sink, pa.ipc.new_stream(sink, PASS_SCHEMA) as writer:
            for start in range(0, len(items), batch_size):
                writer.write_table(record_pass.table(items[start : start + batch_size]))
    return target


def _spooled(spool: str, offset: int, schema: pa.Schema) -> list[Any]:
    """The records of one spool batch."""
    with pa.memory_map(spool) as source:
        source.seek(offset)
        payloads = pa.ipc.read_record_batch(pa.ipc.read_message(source), schema).column(0).to_pylist()
    return [load_payload(payload) for payload in payloads]
