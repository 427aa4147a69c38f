"""Readers for JSON, JSONL, CSV and Parquet files (or directories of them) that remember where each record came from.

Every record carries its ``file:line`` source: the line of a JSONL record, the line where a JSON
array element starts, the line where a CSV row starts, or the 1-based row of a Parquet file.
Undecodable bytes and malformed JSON become problems attached to the record (or, when a whole
JSON file cannot be parsed, to one placeholder record), never exceptions, so strict mode can list
every problem and lenient mode can count every skipped record.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from core.domain.errors import DataValidationError
from core.infrastructure.data.compression import COMPRESSION_SUFFIXES, compression_of, data_suffix, read_file_bytes
from core.infrastructure.data.json_arrays import (
    damage_problem,
    element_sources,
    json_elements,
    json_error,
    looks_like_json_lines,
    starts_as_array,
)
from core.infrastructure.data.jsonl_stream import first_line_text, line_record, stream_jsonl
from core.infrastructure.data.problems import MALFORMED_JSON, NOT_UTF8, UNREADABLE, WRONG_TYPE, Problem, unreadable

SUPPORTED_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
"""File types the readers understand (``.ndjson`` is read as JSONL)."""

SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "eval": "validation",
    "test": "test",
    "testing": "test",
}
"""Names of splits found in file names or ``split`` fields, mapped to train/validation/test."""

JSON_TEXT_COLUMNS = ("conversations", "messages", "checks")
"""CSV columns whose text is parsed as JSON when it looks like a list or an object."""


@dataclass
class RawRecord:
    """One record as read from a file, before format conversion.

    Attributes:
        data: The record's fields (empty when it could not be read).
        source: ``file:line`` of the record.
        split: Split named by the file name (``train.jsonl``), if any.
        problems: Problems found while reading (non-UTF-8 bytes, malformed JSON).
    """

    data: dict[str, Any]
    source: str
    split: str | None = None
    problems: list[Problem] = field(default_factory=list)


def split_from_name(name: str) -> str | None:
    """Returns the split a file name names (``train.jsonl``, ``demo_test.jsonl``), if any.

    Args:
        name: File name.

    Returns:
        ``train``, ``validation``, ``test`` or None.
    """
    stem = name.split(".")[0].lower()
    for token in reversed(re.split(r"[-_.\s]+", stem)):
        if token in SPLIT_ALIASES:
            return SPLIT_ALIASES[token]
    return None


def normalize_split(value: Any) -> str | None:
    """Maps a record's ``split`` field to train/validation/test (None when absent or unknown).

    Args:
        value: The field's value.

    Returns:
        The split name or None.
    """
    if isinstance(value, str):
        return SPLIT_ALIASES.get(value.strip().lower())
    return None


def list_data_files(path: Path) -> list[Path]:
    """Lists the data files of a file or directory, in a stable order.

    Args:
        path: A file or a directory.

    Returns:
        The supported files (a single file is returned as is).
    """
    path = Path(path)
    if path.is_file():
        return [path]
    files = [
        candidate
        for candidate in sorted(path.rglob("*"))
        if candidate.is_file()
        and not any(part.startswith(".") for part in candidate.relative_to(path).parts)
        and file_kind(candidate) is not None
    ]
    return files


def file_kind(path: Path) -> str | None:
    """How a data file is read, from its name: ``jsonl`` (also ``.ndjson``), ``json``, ``csv``, ``parquet``, or None."""
    suffix = data_suffix(path)
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in SUPPORTED_SUFFIXES:
        return suffix[1:]
    return None


def read_records(path: Path | str) -> list[RawRecord]:
    """Reads every record of a file or of all supported files under a directory (see :func:`iter_records`).

    Args:
        path: A file or a directory.

    Returns:
        The records in file order.
    """
    return list(iter_records(path))


def iter_records(path: Path | str) -> Iterator[RawRecord]:
    """Yields every record of a file or of all supported files under a directory, file by file.

    Args:
        path: A ``.jsonl``, ``.json``, ``.csv`` or ``.parquet`` file (the first three also
            compressed: ``.gz``, ``.bz2``, ``.xz``, ``.zst``), or a directory of them.

    Yields:
        The records in file order; unreadable ones carry their problems.

    Raises:
        DataValidationError: If the path does not exist, is not a supported file, or holds no
            supported file or no record at all (an empty file).
    """
    path = Path(path)
    if not path.exists():
        raise DataValidationError([f"{path}: record: no such file or directory"])
    files = list_data_files(path)
    if not files:
        raise DataValidationError([f"{path}: record: no {', '.join(SUPPORTED_SUFFIXES)} files found (also compressed)"])
    for file in files:
        kind = file_kind(file)
        if kind is None:
            raise DataValidationError(
                [
                    f"{file}: record: unsupported file type {''.join(file.suffixes) or '(no suffix)'}; use one of "
                    f"{', '.join(SUPPORTED_SUFFIXES)}, optionally compressed ({', '.join(COMPRESSION_SUFFIXES)})"
                ]
            )
        split = split_from_name(file.name)
        reader = {"jsonl": _read_jsonl, "json": _read_json, "csv": _read_csv, "parquet": _read_parquet}[kind]
        count = 0
        try:
            for record in reader(file):
                record.split = split
                count += 1
                yield record
        except OSError as error:
            problem = unreadable(f"{file}:1", error)
            count += 1
            yield RawRecord({}, f"{file}:1", split=split, problems=[problem])
        if not count:
            if path.is_file():
                raise DataValidationError([f"{file}:1: record: the file is empty (no records)"])
            logger.warning("{}: empty file (no records); nothing read from it", file)


def _decode_lines(data: bytes, display: str) -> tuple[str, dict[int, Problem]]:
    """Decodes bytes as UTF-8, replacing bad bytes; returns the text and a problem per bad line."""
    bad: dict[int, Problem] = {}
    for number, raw_line in enumerate(data.split(b"\n"), 1):
        try:
            raw_line.decode("utf-8")
        except UnicodeDecodeError as error:
            bad[number] = Problem(
                f"{display}:{number}",
                "record",
                f"not valid UTF-8 (byte 0x{raw_line[error.start]:02x} at column {error.start + 1})",
                NOT_UTF8,
            )
    text = data.decode("utf-8", errors="replace")
    return text.removeprefix("\ufeff"), bad


def _read_jsonl(path: Path) -> Iterator[RawRecord]:
    """Reads one JSON object per line; a JSON array saved as ``.jsonl`` is read as an array.

    An uncompressed file of JSON lines is read line by line (memory does not grow with the file).
    """
    if read_line_by_line(path):
        yield from stream_jsonl(path, as_record, problem_record)
        return
    text, bad_lines, damage = _file_text(path)
    records = _array_records if starts_as_array(text) and not _first_line_is_complete(text) else _jsonl_records
    yield from _with_damage(records(text, bad_lines, str(path)), damage, str(path), text)


def read_line_by_line(path: Path) -> bool:
    """True for a JSON Lines file read as a stream of lines: uncompressed, and not a JSON array saved as ``.jsonl``.

    Args:
        path: A ``jsonl`` file (:func:`file_kind`).

    Returns:
        Whether its lines are read one by one (else the whole text is read and repaired).

    Raises:
        OSError: If the file cannot be read.
    """
    return compression_of(path) is None and not first_line_text(path).startswith("[")


def _first_line_is_complete(text: str) -> bool:
    try:
        json.loads(text.lstrip().split("\n", 1)[0])
    except json.JSONDecodeError:
        return False
    return True


def _jsonl_records(text: str, bad_lines: dict[int, Problem], display: str) -> Iterator[RawRecord]:
    for number, line in enumerate(text.split("\n"), 1):
        source = f"{display}:{number}"
        if number in bad_lines:
            yield RawRecord({}, source, problems=[bad_lines[number]])
            continue
        record = line_record(line, source, as_record, problem_record)
        if record is not None:
            yield record


def problem_record(source: str, problem: Problem) -> RawRecord:
    """The record of a source that could not be read: no fields, one problem."""
    return RawRecord({}, source, problems=[problem])


def _file_text(path: Path) -> tuple[str, dict[int, Problem], str | None]:
    """The file's text (decompressed), a problem per line that is not UTF-8, and any decompression damage."""
    content = read_file_bytes(path)
    text, bad_lines = _decode_lines(content.data, str(path))
    return text, bad_lines, content.damage


def _with_damage(records: Iterator[RawRecord], damage: str | None, display: str, text: str) -> Iterator[RawRecord]:
    """Adds what a damaged compressed stream lost: to the last record when it is itself cut, else as one record."""
    last = None
    for record in records:
        if last is not None:
            yield last
        last = record
    if damage is not None:
        if last is not None and last.problems:
            last.problems.append(Problem(last.source, "record", damage, UNREADABLE))
        else:
            if last is not None:
                yield last
            source = f"{display}:{text.count(chr(10)) + 1}"
            last = RawRecord({}, source, problems=[Problem(source, "record", damage, UNREADABLE)])
    if last is not None:
        yield last


def as_record(value: Any, source: str) -> RawRecord:
    """The record of a parsed JSON value: its fields, or a ``wrong_type`` problem for a value that is not an object."""
    if isinstance(value, dict):
        return RawRecord(value, source)
    return RawRecord(
        {},
        source,
        problems=[
            Problem(source, "record", f"wrong type: expected a JSON object, got {_type_name(value)}", WRONG_TYPE)
        ],
    )


def _type_name(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _read_json(path: Path) -> Iterator[RawRecord]:
    """Reads a JSON array of objects (or one object); JSON Lines saved as ``.json`` is read as such."""
    text, bad_lines, damage = _file_text(path)
    records = _jsonl_records if looks_like_json_lines(text) else _array_records
    yield from _with_damage(records(text, bad_lines, str(path)), damage, str(path), text)


def _array_records(text: str, bad_lines: dict[int, Problem], display: str) -> Iterator[RawRecord]:
    elements = list(json_elements(text))
    sources = element_sources(elements, display)
    for element, source in zip(elements, sources, strict=True):
        problems = [
            problem for number, problem in bad_lines.items() if element.first_line <= number <= element.last_line
        ]
        if element.error is not None:
            yield RawRecord({}, source, problems=[*problems, damage_problem(source, element)])
        elif problems:
            yield RawRecord({}, source, problems=problems)
        else:
            yield as_record(element.value, source)


def _read_csv(path: Path) -> Iterator[RawRecord]:
    text, bad_lines, damage = _file_text(path)
    yield from _with_damage(_csv_records(text, bad_lines, str(path)), damage, str(path), text)


def _csv_records(text: str, bad_lines: dict[int, Problem], display: str) -> Iterator[RawRecord]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    previous_end = 0
    for row in reader:
        first_line, previous_end = previous_end + 1, reader.line_num
        if not row or (len(row) == 1 and not row[0].strip() and header is not None):
            continue
        if header is None:
            header = [name.strip() for name in row]
            continue
        source = f"{display}:{first_line}"
        problems = [problem for number, problem in bad_lines.items() if first_line <= number <= previous_end]
        if problems:
            yield RawRecord({}, source, problems=problems)
            continue
        if len(row) > len(header):
            yield RawRecord(
                {},
                source,
                problems=[
                    Problem(source, "record", f"wrong type: expected {len(header)} columns, got {len(row)}", WRONG_TYPE)
                ],
            )
            continue
        data: dict[str, Any] = dict(zip(header, row, strict=False))
        for column in JSON_TEXT_COLUMNS:
            value = data.get(column)
            if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
                try:
                    data[column] = json.loads(value)
                except json.JSONDecodeError as error:
                    yield RawRecord(
                        {},
                        source,
                        problems=[Problem(source, column, f"malformed JSON: {json_error(error)}", MALFORMED_JSON)],
                    )
                    break
        else:
            yield RawRecord(data, source)


def _read_parquet(path: Path) -> Iterator[RawRecord]:
    import pyarrow.parquet as parquet

    display = str(path)
    try:
        rows = parquet.read_table(path).to_pylist()
    except Exception as error:  # pyarrow raises several types for corrupt files
        yield RawRecord(
            {}, f"{display}:1", problems=[Problem(f"{display}:1", "record", f"unreadable Parquet: {error}", UNREADABLE)]
        )
        return
    for number, row in enumerate(rows, 1):
        yield RawRecord(row, f"{display}:{number}")
