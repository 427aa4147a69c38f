"""Which tokens of a rendered conversation carry an answer: token ranges from character spans.

A token overlapping an answer's characters is trained. The rule is :func:`answer_token_ranges` on
the full list of token offsets. Building that list costs more than the rest of a record's label
work, so a byte-level BPE encoding computes its spans from the ids
(:mod:`core.infrastructure.data.byte_offsets`), and another fresh Rust encoding answers the common
case from its own offsets (``char_to_token`` at each span's ends and a look at the neighbouring
tokens); any case the look cannot settle takes the full list, so the ranges are always the rule's.
"""

from __future__ import annotations

import bisect
import operator
from collections.abc import Sequence
from typing import Any

from core.infrastructure.data.byte_offsets import byte_positions, char_offsets


class TokenOffsets:
    """Token ids of a text with their character spans, computed or read from the Rust encoding only when needed.

    Args:
        ids: The token ids.
        offsets: Every token's character span, when already known.
        encoding: The tokenizers ``Encoding`` the ids came from (its offsets are read lazily).
        byte_ends: Each token's end in the text's UTF-8 bytes (:mod:`core.infrastructure.data.byte_offsets`).
        text: The encoded text (with ``byte_ends``).
    """

    __slots__ = ("_byte_ends", "_encoding", "_offsets", "_text", "ids")

    def __init__(
        self,
        ids: list[int],
        offsets: list[tuple[int, int]] | None = None,
        encoding: Any = None,
        byte_ends: list[int] | None = None,
        text: str = "",
    ) -> None:
        self.ids = ids
        self._offsets = offsets
        self._encoding = encoding
        self._byte_ends = byte_ends
        self._text = text

    @property
    def offsets(self) -> list[tuple[int, int]]:
        """Every token's character span ``(start, end)``."""
        if self._offsets is None:
            if self._byte_ends is not None:
                self._offsets = char_offsets(self._text, self._byte_ends)
            else:
                self._offsets = self._encoding.offsets
        return self._offsets

    def answer_ranges(self, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """The token ranges ``[first, last)`` of the answers' character spans (:func:`answer_token_ranges`).

        Args:
            spans: Character spans of the trained answers, in order, each non-empty.

        Returns:
            Non-empty ranges of token positions.
        """
        if self._byte_ends is not None:  # contiguous tokens: each starts where the one before ends
            ends, text = self._byte_ends, self._text
            at = byte_positions(text, [position for span in spans for position in span])
            byte_spans = list(zip(at[::2], at[1::2], strict=True))
            return overlapping_ranges([0, *ends[:-1]] if ends else [], ends, byte_spans)
        if self._offsets is None and self._encoding is not None:
            ranges = _ranges_at_span_ends(self._encoding, len(self.ids), spans)
            if ranges is not None:
                return ranges
        return answer_token_ranges(self.offsets, spans)

    def tokens_starting_at(self, positions: list[int]) -> list[int | None]:
        """The token starting exactly at each character position and sharing no character with the one before.

        Args:
            positions: Character positions in the text.

        Returns:
            Per position, that token's index, or None when no token starts there so.
        """
        if self._byte_ends is not None:  # contiguous tokens: token k + 1 starts where token k ends
            ends, text = self._byte_ends, self._text
            found: list[int | None] = []
            for byte in byte_positions(text, positions):
                before = bisect.bisect_left(ends, byte)  # the token ending at the byte, if one does
                if byte == 0:
                    found.append(0 if ends else None)
                else:
                    found.append(before + 1 if before + 1 < len(ends) and ends[before] == byte else None)
            return found
        offsets = self.offsets
        starts = [start for start, _end in offsets]
        found = []
        for position in positions:
            token = bisect.bisect_left(starts, position)
            starts_here = token < len(starts) and starts[token] == position
            found.append(token if starts_here and not (token and offsets[token - 1][1] > position) else None)
        return found


def _ranges_at_span_ends(encoding: Any, count: int, spans: list[tuple[int, int]]) -> list[tuple[int, int]] | None:
    """:func:`answer_token_ranges` from the tokens at each span's ends, or None when a neighbour is unusual.

    With offsets in ascending order (what tokenizers produce) the first token of a span is the first
    one containing its first character, unless the token before it reaches the span (an empty
    offset counts one character wide): then None. The range ends before the first token starting
    at or after the span's end, found by stepping over the tokens that share the last character
    (the bytes of one character). Ranges that do not follow each other also give None.
    """
    ranges: list[tuple[int, int]] = []
    for span_start, span_end in spans:
        first = encoding.char_to_token(span_start)
        inside = encoding.char_to_token(span_end - 1)
        if first is None or inside is None or inside < first:
            return None
        before = encoding.token_to_chars(first - 1) if first else None
        if first and (before is None or max(before[1], before[0] + 1) > span_start):
            return None
        last = inside + 1
        while last < count:
            following = encoding.token_to_chars(last)
            if following is None:
                return None
            if following[0] >= span_end:
                break
            last += 1
        if ranges and first < ranges[-1][1]:
            return None
        ranges.append((first, last))
    return ranges


def answer_token_ranges(offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The token ranges ``[first, last)`` that overlap the answers' character spans, in order.

    A token overlapping an answer is trained, also one that straddles the generation prompt's end
    (e.g. " Hello" after a template's "assistant:"), so no answer character goes untrained; a token
    with an empty offset counts as one character wide.

    Args:
        offsets: Character span of every token.
        spans: Character spans of the trained answers, in order.

    Returns:
        Non-empty ranges of token positions.
    """
    starts, ends = tuple(zip(*offsets, strict=True)) or ((), ())
    reaches = ends if all(map(operator.gt, ends, starts)) else [max(end, start + 1) for start, end in offsets]
    if not (_ascending(starts) and _ascending(reaches)):  # offsets out of order: token by token
        return _ranges_token_by_token(offsets, spans)
    return overlapping_ranges(starts, reaches, spans)


def overlapping_ranges(
    starts: Sequence[int], reaches: Sequence[int], spans: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    """The rule on tokens in order: the tokens reaching past a span's start and starting before its end.

    Args:
        starts: Each token's start, ascending.
        reaches: Each token's end (at least one past its start), ascending.
        spans: The answers' spans, in the same unit (characters or bytes), in order.

    Returns:
        Non-empty ranges ``[first, last)`` of token positions.
    """
    ranges = [
        (bisect.bisect_right(reaches, span_start), bisect.bisect_left(starts, span_end))
        for span_start, span_end in spans
    ]
    return [(first, last) for first, last in ranges if first < last]


def _ascending(values: Sequence[int]) -> bool:
    """True when the values never decrease."""
    return all(map(operator.le, values, values[1:]))


def _ranges_token_by_token(offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """:func:`answer_token_ranges` one token at a time, comparing each token with the first span not yet passed."""
    ranges = []
    span_index = 0
    for position, (start, end) in enumerate(offsets):
        while span_index < len(spans) and start >= spans[span_index][1]:
            span_index += 1
        if span_index < len(spans) and start < spans[span_index][1] and max(end, start + 1) > spans[span_index][0]:
            ranges.append((position, position + 1))
    return ranges
