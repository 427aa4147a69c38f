"""Records on disk: a source's records are spooled into Arrow, processed in one pass on every core, read back as hashes.

Memory stays flat as the data grows: raw records stream from the reader into an Arrow file of
pickled records; :class:`~core.infrastructure.data.record_pass.RecordPass` runs over it with
``datasets.map`` (batched, ``num_proc`` = the cores this process may use), writing its table to
disk; the main process then holds one light :class:`Outcome` per record (source, reason,
problems, split) and the pass's numeric columns as arrays, never conversations or token ids.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset

from core.infrastructure.data.problems import Outcome
from core.infrastructure.data.record_pass import PASS_FEATURES, RecordPass, dump_payload, load_payload, problems_of

SPOOL_BATCH = 1000
"""Records per Arrow batch of the spool."""

PASS_BATCH = 1000
"""Records per batch of the pass."""

RECORDS_PER_WORKER = 2000
"""Fewer records than this per core are processed in this process (starting workers costs more)."""

_PAYLOAD_SCHEMA = pa.schema([("payload", pa.large_binary())])


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A valid record's place in the pass's table (what an :class:`Outcome` holds instead of its conversation).

    Attributes:
        row: Row of the record in the pass (every source's rows, in source order).
    """

    row: int


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """Hides ``datasets``' progress bars for the duration (the CLI logs its own summary)."""
    from datasets.utils.logging import disable_progress_bar, enable_progress_bar, is_progress_bar_enabled

    was_enabled = is_progress_bar_enabled()
    disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            enable_progress_bar()


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pauses the cyclic garbage collector while many acyclic objects are made (it runs again afterwards)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def available_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def worker_count(records: int) -> int | None:
    """Worker processes for a pass over ``records`` records (None: this process alone).

    Args:
        records: Records in the pass.

    Returns:
        Up to one worker per available core, each with at least :data:`RECORDS_PER_WORKER` records.
    """
    workers = min(available_cores(), records // RECORDS_PER_WORKER)
    return workers if workers > 1 else None


class RecordStore:
    """The pass tables of every source of one ``prepare-data`` run, in a work directory.

    Args:
        work_dir: A directory for the spool and pass files (removed by the caller).
    """

    def __init__(self, work_dir: Path) -> None:
        # Arrow's default allocator keeps what it freed; the chunks copied out of the pass files would
        # then add up over a run. The system allocator gives each chunk's memory back.
        pa.set_memory_pool(pa.system_memory_pool())
        self.work_dir = Path(work_dir)
        self.tables: list[Dataset] = []
        self._columns: dict[str, np.ndarray] = {}
        self._file_ranges: list[PassFile] | None = None

    def spool(self, items: Iterable[Any]) -> Path:
        """Writes records (raw records, or converted outcomes) to a new spool file, streaming.

        Args:
            items: The records, in order.

        Returns:
            The spool file.
        """
        path = self.work_dir / f"spool-{len(self.tables)}.arrow"
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, _PAYLOAD_SCHEMA) as writer:
            batch: list[bytes] = []
            for item in items:
                batch.append(dump_payload(item))
                if len(batch) == SPOOL_BATCH:
                    writer.write_batch(pa.record_batch([pa.array(batch, pa.large_binary())], schema=_PAYLOAD_SCHEMA))
                    batch = []
            if batch:
                writer.write_batch(pa.record_batch([pa.array(batch, pa.large_binary())], schema=_PAYLOAD_SCHEMA))
        return path

    def spooled(self, spool: Path) -> list[Any]:
        """Every record of a spool file, in memory (format detection's last resort, oasst trees).

        Args:
            spool: A file written by :meth:`spool`.

        Returns:
            The records, in order.
        """
        with pa.memory_map(str(spool)) as source:
            reader = pa.ipc.open_stream(source)
            return [load_payload(payload) for batch in reader for payload in batch.column(0).to_pylist()]

    def process(self, spool: Path, record_pass: RecordPass) -> list[Outcome]:
        """Runs the pass over a spool file and keeps its table; returns one light outcome per record.

        Args:
            spool: A file written by :meth:`spool`.
            record_pass: The per-record work.

        Returns:
            The outcomes in record order; a valid record's ``conversation`` is its :class:`StoredRecord`.
        """
        records = Dataset.from_file(str(spool))
        workers = worker_count(len(records))
        if workers:
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the workers are the parallelism
        index = len(self.tables)
        with quiet_datasets():
            table = records.map(
                record_pass,
                batched=True,
                batch_size=PASS_BATCH,
                num_proc=workers,
                features=PASS_FEATURES,
                remove_columns=["payload"],
                cache_file_name=str(self.work_dir / f"pass-{index}.arrow"),
                new_fingerprint=f"prepare-data-pass-{index}",
                load_from_cache_file=False,
            )
        offset = sum(len(earlier) for earlier in self.tables)
        self.tables.append(table)
        self._columns.clear()
        self._file_ranges = None
        return _light_outcomes(table, offset)

    def read_rows(self, rows: np.ndarray, columns: list[str]) -> pa.Table:
        """Some columns of some pass rows, in the order asked (a row may be asked more than once).

        Each pass file is memory-mapped only while its rows are copied out, so the pages read are
        released afterwards and the resident memory of the process does not grow with the data.

        Args:
            rows: Rows as :class:`StoredRecord` numbers them.
            columns: Column names of :data:`PASS_FEATURES`.

        Returns:
            A table with one row per requested row.
        """
        in_order = bool(np.all(rows[1:] >= rows[:-1]))  # a split of one source: concatenated, not taken
        order = None if in_order else np.argsort(rows, kind="stable")
        ordered = rows if order is None else rows[order]
        parts = []
        for pass_file in self._files():
            low, high = np.searchsorted(ordered, [pass_file.first, pass_file.first + pass_file.rows])
            if low < high:
                parts += _rows_of_file(pass_file, ordered[low:high], columns)
        gathered = pa.Table.from_batches(parts) if parts else PASS_FEATURES.arrow_schema.empty_table().select(columns)
        if order is None:  # one chunk, as a take gives: the splits are written one record batch per chunk of rows
            return gathered.combine_chunks()
        return gathered.take(pa.array(np.argsort(order, kind="stable")))

    def _files(self) -> list[PassFile]:
        """Every pass file with the rows it holds and where each of its batches starts.

        Built whole before it is kept, so threads reading rows at once never see part of it.
        """
        if self._file_ranges is None:
            files, start = [], 0
            for table in self.tables:
                for cache_file in table.cache_files:
                    files.append(_index_file(cache_file["filename"], start))
                    start += files[-1].rows
            self._file_ranges = files
        return self._file_ranges

    def column(self, name: str) -> np.ndarray:
        """A numeric column of the pass (hashes, lengths, counts) over every source, as one array.

        Args:
            name: A numeric column of :data:`PASS_FEATURES`.

        Returns:
            The values by row.
        """
        if name not in self._columns:
            parts = [table.data.column(name).to_numpy() for table in self.tables]
            self._columns[name] = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        return self._columns[name]

    def first_template_error(self) -> str | None:
        """The first chat-template failure of the pass (a template that is not prefix-stable), if any."""
        for table in self.tables:
            errors = table.data.column("template_error").drop_null()
            if len(errors):
                return errors[0].as_py()
        return None


@dataclass(frozen=True)
class PassFile:
    """One pass file and the place of its record batches.

    Attributes:
        path: The Arrow stream file.
        first: Its first row (as :class:`StoredRecord` numbers rows).
        schema: Its schema.
        batches: ``(byte offset, first row in the file, rows)`` of every record batch.
    """

    path: str
    first: int
    schema: pa.Schema
    batches: list[tuple[int, int, int]]

    @property
    def rows(self) -> int:
        """Rows in the file."""
        return self.batches[-1][1] + self.batches[-1][2] if self.batches else 0


def _index_file(path: str, first: int) -> PassFile:
    """Reads where every record batch of a pass file starts (only the batches' headers are read)."""
    batches, start = [], 0
    with pa.memory_map(path) as source:
        reader = pa.ipc.open_stream(source)
        while True:
            offset = source.tell()
            try:
                count = reader.read_next_batch().num_rows
            except StopIteration:
                break
            batches.append((offset, start, count))
            start += count
    return PassFile(path, first, reader.schema, batches)


def _rows_of_file(pass_file: PassFile, rows: np.ndarray, columns: list[str]) -> list[pa.RecordBatch]:
    """Copies sorted rows out of one pass file, batch by batch.

    Each batch is memory-mapped on its own and unmapped once its rows are copied, so the pages read
    are released at once: rows spread over the whole file (a held-out split) never make the whole
    file resident (a take over a whole column would copy it all).
    """
    parts = []
    for offset, start, count in pass_file.batches:
        low, high = np.searchsorted(rows, [pass_file.first + start, pass_file.first + start + count])
        if low == high:
            continue
        with pa.memory_map(pass_file.path) as source:
            source.seek(offset)
            batch = pa.ipc.read_record_batch(pa.ipc.read_message(source), pass_file.schema)
            parts.append(batch.select(columns).take(pa.array(rows[low:high] - pass_file.first - start)))
            del batch
    return parts


def _light_outcomes(table: Dataset, offset: int) -> list[Outcome]:
    """One outcome per pass row without its conversation: source, reason, problems, split, row.

    Read column by column (the problems of skipped rows only), with the cyclic garbage collector
    paused: the objects made hold no cycles, and the collector's passes over the growing list took
    most of the time (200k records: 0.45-0.67 s with them, 0.18-0.21 s without).
    """
    with paused_gc():
        return _outcomes_of(table.data, offset)


def _outcomes_of(data: pa.Table, offset: int) -> list[Outcome]:
    """The outcomes of one pass table's rows (see :func:`_light_outcomes`)."""
    valid = pc.is_valid(data.column("conversation")).to_numpy(zero_copy_only=False)
    sources, splits = data.column("source").to_pylist(), data.column("split").to_pylist()
    skipped = np.flatnonzero(~valid)
    details = zip(
        data.column("reason").take(skipped).to_pylist(), data.column("problems").take(skipped).to_pylist(), strict=True
    )
    skipped_outcomes = {
        int(row): Outcome(sources[row], problems=problems_of(problems), reason=reason, split=splits[row])
        for row, (reason, problems) in zip(skipped, details, strict=True)
    }
    return [
        skipped_outcomes[row] if row in skipped_outcomes else Outcome(source, StoredRecord(offset + row), split=split)
        for row, (source, split) in enumerate(zip(sources, splits, strict=True))
    ]
