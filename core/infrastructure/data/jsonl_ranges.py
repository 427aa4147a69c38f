"""One uncompressed JSON Lines file read by the record pass's workers themselves, a range of lines per task.

The spool (:meth:`~core.infrastructure.data.record_store.RecordStore.spool`) makes the main
process parse and pickle every record before any worker starts (1.25 s of 200k generated Alpaca
records, while the workers waited). For the common large input, one uncompressed JSON Lines file,
the main process only notes where every thousandth line starts (one read of the file, no
parsing), and each worker reads, decodes and parses its own lines with the stream's code
(:func:`~core.infrastructure.data.jsonl_stream.raw_line_record`): the same records, ``file:line``
sources and problems as reading the file as a stream.

The workers read through the main process's open file (inherited by the fork; positional reads, so
no shared offset): the file measured is the file read, even when it is replaced or removed during
the run. A read that fails anyway (an I/O error) gives an ``unreadable`` record, as the stream does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from core.infrastructure.data.jsonl_stream import raw_line_record
from core.infrastructure.data.problems import unreadable
from core.infrastructure.data.readers import (
    RawRecord,
    as_record,
    file_kind,
    list_data_files,
    problem_record,
    read_line_by_line,
    split_from_name,
)
from core.infrastructure.data.sources import InputSource


@dataclass(frozen=True)
class LineRange:
    """Lines of a JSON Lines file, as byte offsets.

    Attributes:
        path: The file's name, as sources name it.
        descriptor: The main process's open file (read by position; inherited by forked workers).
        start: Byte offset of the first line.
        end: Byte offset after the last line (its newline included).
        first_number: Line number of the first line (1-based, as in ``file:line``).
        lines: Lines in the range (blank ones included).
        split: Split named by the file name (``train.jsonl``), if any.
    """

    path: str
    descriptor: int
    start: int
    end: int
    first_number: int
    lines: int
    split: str | None


def streamed_jsonl_file(source: InputSource) -> Path | None:
    """The input's file when it is one uncompressed JSON Lines file read as a stream, else None.

    Args:
        source: A resolved input.

    Returns:
        The file (what :func:`~core.infrastructure.data.readers.iter_records` streams line by line).
    """
    if source.path is None or not source.path.exists():
        return None
    files = list_data_files(source.path)
    if len(files) != 1 or file_kind(files[0]) != "jsonl":
        return None
    try:
        return files[0] if read_line_by_line(files[0]) else None
    except OSError:  # unreadable: the stream reports it as the file's problem
        return None


def line_ranges(handle: BinaryIO, lines_per_range: int) -> list[LineRange]:
    """Cuts a file into ranges of ``lines_per_range`` lines (the last one shorter), reading it once.

    Args:
        handle: The file, opened for reading bytes by the caller, who keeps it open while the
            ranges are read.
        lines_per_range: Lines per range.

    Returns:
        The ranges, in order (none for an empty file).
    """
    path, descriptor = str(handle.name), handle.fileno()
    split = split_from_name(Path(path).name)
    ranges, start, position, number = [], 0, 0, 0
    handle.seek(0)
    for number, raw_line in enumerate(handle, 1):
        position += len(raw_line)
        if number % lines_per_range == 0:
            first = number - lines_per_range + 1
            ranges.append(LineRange(path, descriptor, start, position, first, lines_per_range, split))
            start = position
    if position > start:
        lines = number % lines_per_range
        ranges.append(LineRange(path, descriptor, start, position, number - lines + 1, lines, split))
    return ranges


def range_records(line_range: LineRange) -> list[RawRecord]:
    """The records of a range of lines, as the stream reads them (blank lines give none).

    Args:
        line_range: The lines.

    Returns:
        The records, in line order; one ``unreadable`` record when the lines cannot be read.
    """
    try:
        data = os.pread(line_range.descriptor, line_range.end - line_range.start, line_range.start)
    except OSError as error:
        source = f"{line_range.path}:{line_range.first_number}"
        problem = unreadable(source, error)
        return [RawRecord({}, source, split=line_range.split, problems=[problem])]
    raw_lines = data.split(b"\n")
    if data.endswith(b"\n"):
        raw_lines.pop()
    records = []
    for number, raw_line in enumerate(raw_lines, line_range.first_number):
        record = raw_line_record(raw_line, number, line_range.path, as_record, problem_record)
        if record is not None:
            record.split = line_range.split
            records.append(record)
    return records
