"""Records on disk: a source's records are spooled into Arrow, processed in one pass on every core, read back as hashes.

Memory stays flat as the data grows: raw records stream from the reader into an Arrow file of
pickled records (or, for one uncompressed JSON Lines file, stay in it:
:mod:`core.infrastructure.data.jsonl_ranges`); :class:`~core.infrastructure.data.record_pass.RecordPass`
runs over them in tasks of a thousand records on a worker per core
(:mod:`core.infrastructure.data.pass_workers`), each task writing its rows to an Arrow file; the
main process then holds one light :class:`Outcome` per record (source, reason, problems, split)
and the pass's numeric columns as arrays, never conversations or token ids.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.infrastructure.data.gc_pause import paused_gc
from core.infrastructure.data.jsonl_ranges import LineRange
from core.infrastructure.data.pass_workers import run_pass, stream_batches
from core.infrastructure.data.problems import Outcome
from core.infrastructure.data.record_pass import (
    PASS_SCHEMA,
    RecordPass,
    dump_payload,
    load_payload,
    problems_of,
)

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
        self.tables: list[pa.Table] = []
        self._pass_files: list[list[Path]] = []
        self._spooled_counts: dict[Path, int] = {}
        self._columns: dict[str, np.ndarray] = {}
        self._batch_index: PassBatches | None = None
        self._discarded = 0  # pass files deleted so far (in row order)
        self._tables_dropped = False  # discard_before was called: no column can be read any more

    def spool(self, items: Iterable[Any]) -> Path:
        """Writes records (raw records, or converted outcomes) to a new spool file, streaming.

        Args:
            items: The records, in order.

        Returns:
            The spool file.
        """
        path = self.work_dir / f"spool-{len(self.tables)}.arrow"
        count = 0
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, _PAYLOAD_SCHEMA) as writer:
            batch: list[bytes] = []
            for item in items:
                count += 1
                batch.append(dump_payload(item))
                if len(batch) == SPOOL_BATCH:
                    writer.write_batch(pa.record_batch([pa.array(batch, pa.large_binary())], schema=_PAYLOAD_SCHEMA))
                    batch = []
            if batch:
                writer.write_batch(pa.record_batch([pa.array(batch, pa.large_binary())], schema=_PAYLOAD_SCHEMA))
        self._spooled_counts[path] = count
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
        inputs = [(str(spool), offset, _PAYLOAD_SCHEMA) for offset, _rows in stream_batches(spool)]
        return self._process(inputs, self._spooled_counts.get(spool, 0), record_pass)

    def process_lines(self, ranges: list[LineRange], record_pass: RecordPass) -> list[Outcome]:
        """Like :meth:`process`, for a JSON Lines file the workers read themselves (no spool).

        Args:
            ranges: The file's lines, a range per task (:func:`~core.infrastructure.data.jsonl_ranges.line_ranges`).
            record_pass: The per-record work.

        Returns:
            The outcomes in line order (blank lines have none).
        """
        return self._process(ranges, sum(line_range.lines for line_range in ranges), record_pass)

    def _process(self, inputs: list[Any], records: int, record_pass: RecordPass) -> list[Outcome]:
        index = len(self.tables)
        files = run_pass(inputs, record_pass, self.work_dir / f"pass-{index}", PASS_BATCH, worker_count(records))
        table = _mapped(files)
        offset = sum(len(earlier) for earlier in self.tables)
        self.tables.append(table)
        self._pass_files.append(files)
        self._columns.clear()
        self._batch_index = None
        return _light_outcomes(table, offset)

    def read_rows(self, rows: np.ndarray, columns: list[str]) -> pa.Table:
        """Some columns of some pass rows, in the order asked (a row may be asked more than once).

        Each pass file is memory-mapped only while its rows are copied out, so the pages read are
        released afterwards and the resident memory of the process does not grow with the data.

        Args:
            rows: Rows as :class:`StoredRecord` numbers them.
            columns: Column names of :data:`PASS_SCHEMA`.

        Returns:
            A table with one row per requested row.
        """
        in_order = bool(np.all(rows[1:] >= rows[:-1]))  # a split of one source: concatenated, not taken
        order = None if in_order else np.argsort(rows, kind="stable")
        ordered = rows if order is None else rows[order]
        batches = self._batches()
        owner = np.searchsorted(batches.firsts, ordered, side="right") - 1  # the batch holding each row
        bounds = [0, *(np.flatnonzero(owner[1:] != owner[:-1]) + 1).tolist(), len(ordered)]
        parts = [
            _rows_of_batch(batches.batches[owner[low]], ordered[low:high], columns)
            for low, high in itertools.pairwise(bounds)
            if high > low
        ]
        gathered = pa.Table.from_batches(parts) if parts else PASS_SCHEMA.empty_table().select(columns)
        if order is None:  # one chunk, as a take gives: the splits are written one record batch per chunk of rows
            return gathered.combine_chunks()
        return gathered.take(pa.array(np.argsort(order, kind="stable")))

    def _batches(self) -> PassBatches:
        """Every record batch of the pass files, with its first row.

        Built whole before it is kept, so threads reading rows at once never see part of it.
        """
        if self._batch_index is None:
            batches: list[PassBatch] = []
            for path in (path for paths in self._pass_files for path in paths):
                first = batches[-1].first + batches[-1].rows if batches else 0
                batches += _index_file(str(path), first)
            firsts = np.array([batch.first for batch in batches], dtype=np.int64)
            ends = {batch.path: batch.first + batch.rows for batch in batches}  # a file's batches are consecutive
            self._batch_index = PassBatches(batches, firsts, [(end, path) for path, end in ends.items()])
        return self._batch_index

    def discard_before(self, row: int) -> None:
        """Deletes the pass files whose rows all come before ``row`` (nothing will read them again).

        Their pages and disk space are freed while the splits are written. The store's mapped
        tables are dropped at the first call (they would keep the files' pages): columns read
        before stay, reading another one raises.

        Args:
            row: The first row still to be read.
        """
        self.tables, self._tables_dropped = [], True
        ends = self._batches().file_ends
        while self._discarded < len(ends) and ends[self._discarded][0] <= row:
            Path(ends[self._discarded][1]).unlink(missing_ok=True)
            self._discarded += 1

    def column(self, name: str) -> np.ndarray:
        """A numeric column of the pass (hashes, lengths, counts) over every source, as one array.

        Args:
            name: A numeric column of :data:`PASS_SCHEMA`.

        Returns:
            The values by row.
        """
        if name not in self._columns:
            if self._tables_dropped:
                raise RuntimeError(f"column {name!r} asked for after the pass files were discarded")
            parts = [table.column(name).to_numpy() for table in self.tables]
            self._columns[name] = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        return self._columns[name]

    def first_template_error(self) -> str | None:
        """The first chat-template failure of the pass (a template that is not prefix-stable), if any."""
        for table in self.tables:
            errors = table.column("template_error").drop_null()
            if len(errors):
                return errors[0].as_py()
        return None


@dataclass(frozen=True)
class PassBatch:
    """One record batch of a pass file.

    Attributes:
        path: The Arrow stream file.
        offset: Where the batch's message starts in it.
        first: The batch's first row (as :class:`StoredRecord` numbers rows).
        rows: Rows in the batch.
    """

    path: str
    offset: int
    first: int
    rows: int


@dataclass(frozen=True)
class PassBatches:
    """Every record batch of the pass, in row order.

    Attributes:
        batches: The batches.
        firsts: Their first rows, as an array (which batch holds a row: one ``searchsorted``).
        file_ends: Every pass file holding rows, in row order, with the row after its last one.
    """

    batches: list[PassBatch]
    firsts: np.ndarray
    file_ends: list[tuple[int, str]]


def _index_file(path: str, first: int) -> list[PassBatch]:
    """Every record batch of a pass file, numbering rows from ``first``."""
    batches = []
    for offset, rows in stream_batches(path):
        batches.append(PassBatch(path, offset, first, rows))
        first += rows
    return batches


def _rows_of_batch(batch: PassBatch, rows: np.ndarray, columns: list[str]) -> pa.RecordBatch:
    """Copies sorted rows out of one pass batch.

    The batch is memory-mapped on its own and unmapped once its rows are copied, so the pages read
    are released at once: rows spread over the whole pass (a held-out split) never make every file
    resident (a take over a whole column would copy it all).
    """
    with pa.memory_map(batch.path) as source:
        source.seek(batch.offset)
        mapped = pa.ipc.read_record_batch(pa.ipc.read_message(source), PASS_SCHEMA)
        return mapped.select(columns).take(pa.array(rows - batch.first))


def _light_outcomes(table: pa.Table, offset: int) -> list[Outcome]:
    """One outcome per pass row without its conversation: source, reason, problems, split, row.

    Read column by column (the problems of skipped rows only), with the cyclic garbage collector
    paused: the objects made hold no cycles, and the collector's passes over the growing list took
    most of the time (200k records: 0.45-0.67 s with them, 0.18-0.21 s without).
    """
    with paused_gc():
        return _outcomes_of(table, offset)


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


def _mapped(files: list[Path]) -> pa.Table:
    """The pass's rows from its files, memory-mapped (nothing is read until a column is)."""
    tables = []
    for path in files:
        with pa.memory_map(str(path)) as source:  # the file is closed; the mapping lives as long as the table
            tables.append(pa.ipc.open_stream(source).read_all())
    return pa.concat_tables(tables) if tables else PASS_SCHEMA.empty_table()
