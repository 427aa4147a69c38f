"""Reading an uncompressed JSON Lines file one line at a time, so memory does not grow with the file.

The records, their ``file:line`` sources and their problems are exactly those of reading the whole
text (:func:`core.infrastructure.data.readers.read_records`): a line that is not UTF-8 becomes a
``not_utf8`` problem, a line that is not JSON a ``malformed_json`` problem, blank lines are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from core.infrastructure.data.json_arrays import json_error
from core.infrastructure.data.problems import MALFORMED_JSON, NOT_UTF8, Problem


def first_line_text(path: Path) -> str:
    """The file's first non-blank line (decoded leniently, without a byte order mark), or ``""``.

    Args:
        path: The file.

    Returns:
        The line's text.
    """
    with Path(path).open("rb") as handle:
        for raw_line in handle:
            text = raw_line.decode("utf-8", errors="replace").removeprefix("\ufeff").strip()
            if text:
                return text
    return ""


def stream_jsonl(path: Path, as_record: Callable[[Any, str], Any], problem_record: Callable[..., Any]) -> Iterator[Any]:
    """Yields one record per non-blank line of an uncompressed JSON Lines file.

    Args:
        path: The file.
        as_record: Builds a record from a parsed value and its source (a non-object is a problem).
        problem_record: Builds a record of a source that carries one problem.

    Yields:
        Records in line order.
    """
    display = str(path)
    with Path(path).open("rb") as handle:
        for number, raw_line in enumerate(handle, 1):
            record = raw_line_record(raw_line.removesuffix(b"\n"), number, display, as_record, problem_record)
            if record is not None:
                yield record


def raw_line_record(
    raw_line: bytes, number: int, display: str, as_record: Callable[[Any, str], Any], problem_record: Callable[..., Any]
) -> Any | None:
    """The record of one line's bytes (without its newline): decoded, parsed, or a problem; None for a blank line.

    Args:
        raw_line: The line's bytes.
        number: Its line number (1-based; the first line may start with a byte order mark).
        display: The file's name in ``file:line``.
        as_record: Builds a record from a parsed value and its source.
        problem_record: Builds a record of a source that carries one problem.

    Returns:
        The record, or None.
    """
    source = f"{display}:{number}"
    try:
        line = raw_line.decode("utf-8")
    except UnicodeDecodeError as error:
        message = f"not valid UTF-8 (byte 0x{raw_line[error.start]:02x} at column {error.start + 1})"
        return problem_record(source, Problem(source, "record", message, NOT_UTF8))
    if number == 1:
        line = line.removeprefix("\ufeff")
    return line_record(line, source, as_record, problem_record)


def line_record(
    line: str, source: str, as_record: Callable[[Any, str], Any], problem_record: Callable[..., Any]
) -> Any | None:
    """The record of one JSON line: its object, a ``malformed_json`` problem, or None for a blank line.

    Args:
        line: The line's text.
        source: Its ``file:line``.
        as_record: Builds a record from a parsed value and its source.
        problem_record: Builds a record of a source that carries one problem.

    Returns:
        The record, or None.
    """
    if not line.strip():
        return None
    try:
        value = json.loads(line)
    except json.JSONDecodeError as error:
        return problem_record(source, Problem(source, "record", f"malformed JSON: {json_error(error)}", MALFORMED_JSON))
    return as_record(value, source)
