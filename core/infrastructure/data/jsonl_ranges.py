"""One uncompressed JSON Lines file read by the record pass's workers themselves, a range of lines per task.

The spool (:meth:`~core.infrastructure.data.record_store.RecordStore.spool`) makes the main
process parse and pickle every record before any worker starts (1.25 s of 200k generated Alpaca
records, while the workers waited). For the common large input, one uncompressed JSON Lines file,
the main process only notes where every thousandth line starts (one read of the file, no
parsing), and each worker reads, decodes and parses its own lines with the stream's code
(:func:`~core.infrastructure.data.jsonl_stream.raw_line_record`): the same records, ``file:line``
sources and problems as reading the file as a stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.infrastructure.data.compression import compression_of
from core.infrastructure.data.jsonl_stream import first_line_text, raw_line_record
from core.infrastructure.data.readers import (
    RawRecord,
    as_record,
    file_kind,
    list_data_files,
    problem_record,
    split_from_name,
)
from core.infrastructure.data.sources import InputSource


@dataclass(frozen=True)
class LineRange:
    """Lines of a JSON Lines file, as byte offsets.

    Attributes:
        path: The file.
        start: Byte offset of the first line.
        end: Byte offset after the last line (its newline included).
        first_number: Line number of the first line (1-based, as in ``file:line``).
        lines: Lines in the range (blank ones included).
        split: Split named by the file name (``train.jsonl``), if any.
    """

    path: str
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
    path = files[0]
    if compression_of(path) is not None or first_line_text(path).startswith("["):
        return None
    return path


def line_ranges(path: Path, lines_per_range: int) -> list[LineRange]:
    """Cuts a file into ranges of ``lines_per_range`` lines (the last one shorter), reading it once.

    Args:
        path: The file.
        lines_per_range: Lines per range.

    Returns:
        The ranges, in order (none for an empty file).
    """
    split = split_from_name(path.name)
    ranges, start, position, number = [], 0, 0, 0
    with path.open("rb") as handle:
        for number, raw_line in enumerate(handle, 1):
            position += len(raw_line)
            if number % lines_per_range == 0:
                ranges.append(
                    LineRange(str(path), start, position, number - lines_per_range + 1, lines_per_range, split)
                )
                start = position
    if position > start:
        lines = number % lines_per_range
        ranges.append(LineRange(str(path), start, position, number - lines + 1, lines, split))
    return ranges


def range_records(line_range: LineRange) -> list[RawRecord]:
    """The records of a range of lines, as the stream reads them (blank lines give none).

    Args:
        line_range: The lines.

    Returns:
        The records, in line order.
    """
    with open(line_range.path, "rb") as handle:
        handle.seek(line_range.start)
        data = handle.read(line_range.end - line_range.start)
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
