"""Reads the output excerpts of README.md and Quickstart.md so tests can hold commands to them.

An excerpt is a fenced ``text`` block; :func:`shape` turns one of its lines into a pattern that
matches the same line with other figures (numbers, quoted strings, the prepared directory), so a
test proves the docs show what the command prints, not that two runs produce equal numbers.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
_QUOTED = re.compile(r"'[^']*'")
_LEVEL = re.compile(r"(DEBUG|INFO|SUCCESS|WARNING|ERROR)\s+")


def text_block_after(document: str, marker: str) -> list[str]:
    """Lines of the first fenced ``text`` block after the first line containing ``marker``.

    Args:
        document: File name in the repository root (``Quickstart.md``).
        marker: Text of a line before the block (a command or a sentence).

    Returns:
        The block's non-empty lines.

    Raises:
        AssertionError: If the marker or the block is missing (the docs changed shape).
    """
    lines = (REPO_ROOT / document).read_text(encoding="utf-8").splitlines()
    start = next((number for number, line in enumerate(lines) if marker in line), None)
    assert start is not None, f"{document}: no line contains {marker!r}"
    opening = next(number for number in range(start, len(lines)) if lines[number].strip() == "```text")
    closing = next(number for number in range(opening + 1, len(lines)) if lines[number].strip() == "```")
    return [line for line in lines[opening + 1 : closing] if line.strip()]


def shape(line: str) -> re.Pattern[str]:
    """A pattern matching ``line`` with any numbers, quoted strings and prepared directories.

    Args:
        line: One excerpt line, e.g. ``Prepared data/prepared/e4d8...: read 3000, kept 3000 ...``.

    Returns:
        The compiled pattern (use ``search`` on a command's output).
    """
    line = line.strip()
    pattern = []
    level = _LEVEL.match(line)
    if level:  # the docs leave out the time and the module: "SUCCESS Training completed: ..."
        pattern.append(re.escape(level.group(1)) + r"\s+\S+ ")
        line = line[level.end() :]
    pieces = re.split(r"(data/prepared/[0-9a-f]+|runs/[\w.-]+|'[^']*'|\d[\d,]*(?:\.\d+)?)", line)
    for piece in pieces:
        if piece.startswith("data/prepared/"):
            pattern.append(r"\S*prepared/[0-9a-f]+")
        elif piece.startswith("runs/"):
            pattern.append(r"\S*runs/[\w.-]+")
        elif _QUOTED.fullmatch(piece):
            pattern.append(r"'.*'")
        elif _NUMBER.fullmatch(piece):
            pattern.append(r"-?[\d,]+(?:\.\d+)?")
        else:
            pattern.append(re.escape(piece))
    return re.compile("".join(pattern))


def assert_printed(excerpt: list[str], output: str, where: str) -> None:
    """Asserts every excerpt line, in shape, occurs in a command's output.

    Args:
        excerpt: Lines of a docs excerpt.
        output: What the command printed (stdout and/or stderr).
        where: Names the excerpt in the failure message.
    """
    for line in excerpt:
        assert shape(line).search(output), (
            f"{where}: the docs show\n  {line}\nbut the command printed:\n{output[-3000:]}"
        )
