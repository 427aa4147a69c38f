"""JSON files element by element: a damaged array keeps every element the parser can reach.

A JSON array is decoded one element at a time. Where an element is malformed (a syntax error, or a
file cut off mid-record) that element becomes a record with a ``malformed_json`` problem and
reading goes on at the next line that opens an element at the first element's indentation (a
pretty-printed array); in a minified array, or when no element follows, the rest of the file is that
one damaged record. Every element is thus counted exactly once (read = kept + skipped).

Sources are ``file:line`` of the line an element starts on; when several elements share a line
(a minified array) they are told apart as ``file:line [element N]`` (N counts from 1).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from core.infrastructure.data.problems import MALFORMED_JSON, Problem


@dataclass
class Element:
    """One top-level value of a JSON file (or the damage where one should have been).

    Attributes:
        value: The decoded value (None when ``error`` is set).
        first_line: Line the element starts on.
        last_line: Line it ends on.
        error: Why it could not be decoded, or None.
    """

    value: Any
    first_line: int
    last_line: int
    error: str | None = None


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


def json_error(error: json.JSONDecodeError) -> str:
    """Formats a decoder error as ``message (column C)``."""
    return f"{error.msg} (column {error.colno})"


def looks_like_json_lines(text: str) -> bool:
    """True when text holds several top-level JSON values one after another (JSON Lines saved as ``.json``).

    Args:
        text: The file's text.

    Returns:
        Whether the first value decodes and is followed, on a later line, by another value.
    """
    index = _skip_whitespace(text, 0)
    if index >= len(text) or text[index] == "[":
        return False
    try:
        _, end = json.JSONDecoder().raw_decode(text, index)
    except json.JSONDecodeError:
        return False
    following = _skip_whitespace(text, end)
    return following < len(text) and "\n" in text[end:following] and text[following] in "{["


def starts_as_array(text: str) -> bool:
    """True when the first non-blank character is ``[`` (a JSON array, whatever the file is called)."""
    index = _skip_whitespace(text, 0)
    return index < len(text) and text[index] == "["


def _single_value(text: str, index: int, decoder: json.JSONDecoder, lines: _LineCounter) -> Iterator[Element]:
    """The one value of a file that is not an array, then any extra data after it as a damage."""
    try:
        value, end = decoder.raw_decode(text, index)
    except json.JSONDecodeError as error:
        yield Element(None, error.lineno, error.lineno, f"malformed JSON: {json_error(error)}")
        return
    yield Element(value, lines.line_at(index), lines.line_at(end))
    trailing = _skip_whitespace(text, end)
    if trailing < len(text):
        yield Element(
            None, lines.line_at(trailing), lines.line_at(trailing), "malformed JSON: extra data after the value"
        )


def json_elements(text: str) -> Iterator[Element]:
    """Yields the elements of a JSON array (or the single value of a non-array file), salvaging damage.

    Args:
        text: The file's text (empty or blank text yields nothing).

    Yields:
        Elements in file order.
    """
    lines = _LineCounter(text)
    decoder = json.JSONDecoder()
    index = _skip_whitespace(text, 0)
    if index >= len(text):
        return
    if text[index] != "[":
        yield from _single_value(text, index, decoder, lines)
        return
    opening = index
    index = _skip_whitespace(text, index + 1)
    if index < len(text) and text[index] == "]":
        return
    next_start = _element_starts(text, opening, index)
    while True:
        if index >= len(text):
            yield Element(None, lines.line_at(index), lines.line_at(index), "truncated: the array is never closed")
            return
        try:
            value, end = decoder.raw_decode(text, index)
        except json.JSONDecodeError as error:
            resume = next_start(index)
            first = lines.line_at(index)
            if resume is None:
                truncated = _skip_whitespace(text, error.pos) >= len(text) or not text.rstrip().endswith("]")
                detail = "truncated: the file ends inside this element" if truncated else json_error(error)
                yield Element(None, first, lines.line_at(len(text)), f"malformed JSON: {detail}")
                return
            yield Element(None, first, lines.line_at(resume), f"malformed JSON: {json_error(error)}")
            index = resume
            continue
        yield Element(value, lines.line_at(index), lines.line_at(end))
        index = _skip_whitespace(text, end)
        if index < len(text) and text[index] == ",":
            index = _skip_whitespace(text, index + 1)
            continue
        if index < len(text) and text[index] == "]":
            trailing = _skip_whitespace(text, index + 1)
            if trailing < len(text):
                line = lines.line_at(trailing)
                yield Element(None, line, line, "malformed JSON: extra data after the array")
            return
        if index >= len(text):
            yield Element(None, lines.line_at(index), lines.line_at(index), "truncated: the array is never closed")
            return
        resume = next_start(index)
        line = lines.line_at(index)
        yield Element(None, line, line, "malformed JSON: expecting ',' between elements")
        if resume is None:
            return
        index = resume


def _element_starts(text: str, opening: int, first: int):
    """Returns a finder of the next element start after a damage, for arrays indented one element per line."""
    line_start = text.rfind("\n", 0, first) + 1
    if line_start <= opening:  # the first element shares the line of '[': minified, no safe resynchronisation
        return lambda start: None
    indent = text[line_start:first]
    # JSON strings cannot hold a raw newline, so a line opening with the first element's indentation
    # and a bracket is the start of a top-level element.
    pattern = re.compile(r"\n" + re.escape(indent) + r"(?=[\[{])")

    def next_start(start: int) -> int | None:
        match = pattern.search(text, start + 1)
        return match.end() if match else None

    return next_start


def element_sources(elements: list[Element], display: str) -> list[str]:
    """``file:line`` per element, with ``[element N]`` where several elements start on one line.

    Args:
        elements: The elements of one file.
        display: The file name shown.

    Returns:
        One source per element.
    """
    per_line: dict[int, int] = {}
    for element in elements:
        per_line[element.first_line] = per_line.get(element.first_line, 0) + 1
    return [
        f"{display}:{element.first_line}" + (f" [element {number}]" if per_line[element.first_line] > 1 else "")
        for number, element in enumerate(elements, 1)
    ]


def damage_problem(source: str, element: Element) -> Problem:
    """The problem of a damaged element."""
    return Problem(source, "record", element.error or "malformed JSON", MALFORMED_JSON)
