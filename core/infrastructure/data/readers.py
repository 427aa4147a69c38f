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

from core.infrastructure.data.problems import MALFORMED_JSON, NOT_UTF8, UNREADABLE, WRONG_TYPE, Problem

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
        and _kind(candidate) is not None
    ]
    return files


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in SUPPORTED_SUFFIXES:
        return suffix[1:]
    return None


def read_records(path: Path | str) -> list[RawRecord]:
    """Reads every record of a file or of all supported files under a directory.

    Args:
        path: A ``.jsonl``, ``.json``, ``.csv`` or ``.parquet`` file, or a directory.

    Returns:
        The records in file order; unreadable ones carry their problems.

    Raises:
        FileNotFoundError: If the path does not exist or holds no supported file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    files = list_data_files(path)
    if not files:
        raise FileNotFoundError(f"{path}: no {', '.join(SUPPORTED_SUFFIXES)} files found")
    records: list[RawRecord] = []
    for file in files:
        kind = _kind(file)
        if kind is None:
            raise FileNotFoundError(f"{file}: unsupported file type; use one of {', '.join(SUPPORTED_SUFFIXES)}")
        split = split_from_name(file.name)
        reader = {"jsonl": _read_jsonl, "json": _read_json, "csv": _read_csv, "parquet": _read_parquet}[kind]
        for record in reader(file):
            record.split = split
            records.append(record)
    return records


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
    display = str(path)
    text, bad_lines = _decode_lines(path.read_bytes(), display)
    for number, line in enumerate(text.split("\n"), 1):
        source = f"{display}:{number}"
        if number in bad_lines:
            yield RawRecord({}, source, problems=[bad_lines[number]])
            continue
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            yield RawRecord(
                {},
                source,
                problems=[Problem(source, "record", f"malformed JSON: {_json_error(error)}", MALFORMED_JSON)],
            )
            continue
        yield _as_record(value, source)


def _json_error(error: json.JSONDecodeError) -> str:
    return f"{error.msg} (column {error.colno})"


def _as_record(value: Any, source: str) -> RawRecord:
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


class _LineCounter:
    """Maps character offsets to 1-based line numbers for offsets visited in increasing order."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.offset = 0
        self.line = 1

    def line_at(self, offset: int) -> int:
        if offset < self.offset:
            return self.text.count("\n", 0, offset) + 1
        self.line += self.text.count("\n", self.offset, offset)
        self.offset = offset
        return self.line


def _skip_whitespace(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t\r\n":
        index += 1
    return index


def _read_json(path: Path) -> Iterator[RawRecord]:
    """Reads a JSON array of objects (or one object); each element's source is the line it starts on."""
    display = str(path)
    text, bad_lines = _decode_lines(path.read_bytes(), display)
    lines = _LineCounter(text)
    decoder = json.JSONDecoder()
    elements: list[tuple[Any, int, int]] = []  # value, first line, last line
    try:
        index = _skip_whitespace(text, 0)
        if index >= len(text):
            return
        if text[index] != "[":
            value, end = decoder.raw_decode(text, index)
            trailing = _skip_whitespace(text, end)
            if trailing < len(text):
                raise json.JSONDecodeError("Extra data", text, trailing)
            elements.append((value, lines.line_at(index), lines.line_at(end)))
        else:
            index = _skip_whitespace(text, index + 1)
            if index < len(text) and text[index] == "]":
                index += 1
            else:
                while True:
                    value, end = decoder.raw_decode(text, index)
                    elements.append((value, lines.line_at(index), lines.line_at(end)))
                    index = _skip_whitespace(text, end)
                    if index < len(text) and text[index] == ",":
                        index = _skip_whitespace(text, index + 1)
                        continue
                    if index < len(text) and text[index] == "]":
                        index += 1
                        break
                    raise json.JSONDecodeError("Expecting ',' delimiter", text, index)
            trailing = _skip_whitespace(text, index)
            if trailing < len(text):
                raise json.JSONDecodeError("Extra data", text, trailing)
    except json.JSONDecodeError as error:
        source = f"{display}:{error.lineno}"
        problems = [
            *bad_lines.values(),
            Problem(source, "record", f"malformed JSON: {_json_error(error)}", MALFORMED_JSON),
        ]
        yield RawRecord({}, problems[0].source, problems=problems)
        return
    for value, first_line, last_line in elements:
        source = f"{display}:{first_line}"
        problems = [problem for number, problem in bad_lines.items() if first_line <= number <= last_line]
        if problems:
            yield RawRecord({}, source, problems=problems)
        else:
            yield _as_record(value, source)


def _read_csv(path: Path) -> Iterator[RawRecord]:
    display = str(path)
    text, bad_lines = _decode_lines(path.read_bytes(), display)
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
                        problems=[Problem(source, column, f"malformed JSON: {_json_error(error)}", MALFORMED_JSON)],
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


def read_bytes_digest(path: Path | str, hasher: Any) -> None:
    """Feeds the names and bytes of every data file under ``path`` into a hashlib object.

    Args:
        path: File or directory.
        hasher: A ``hashlib`` hash object.
    """
    path = Path(path)
    for file in list_data_files(path):
        hasher.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        with file.open("rb") as handle:
            for chunk in iter(lambda handle=handle: handle.read(1 << 20), b""):
                hasher.update(chunk)
