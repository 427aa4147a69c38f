"""Turn-split windows cut out of the whole conversation's tokens, instead of rendering every window.

When each exchange of a conversation located verbatim (:mod:`core.infrastructure.data.verbatim`)
opens with the template's user header at an added token (``<|im_start|>``), the tokenizer splits
the text there, so the tokens of a window (the system part, then some exchanges) are the whole
conversation's tokens of those parts. Their lengths and samples are then slices, with no render.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.infrastructure.data.tokenize import IGNORE_INDEX, EncodedConversation
from core.infrastructure.data.verbatim import template_profile


@dataclass(frozen=True)
class TokenLayout:
    """Where the exchanges of an encoded conversation start in its tokens.

    Attributes:
        encoded: The whole conversation.
        bounds: Token position where each exchange starts, then the number of tokens; the tokens
            before the first exchange are the system part every window starts with.
        trained: Per exchange, how many of its assistant turns are trained.
    """

    encoded: EncodedConversation
    bounds: list[int]
    trained: list[int]

    def length(self, first: int, end: int) -> int:
        """Token length of the window of exchanges ``[first, end)`` after the system part.

        Returns 0 for a window that trains nothing, as the exact way counts it (see
        :func:`core.infrastructure.data.turn_split._length`).
        """
        if not any(self.trained[first:end]):
            return 0
        return self.bounds[0] + self.bounds[end] - self.bounds[first]

    def sample(self, context: int, start: int, end: int, train_on_prompt: bool) -> tuple[list[int], list[int], int]:
        """Token ids, labels and first answer of the sample: exchanges ``[context, start)`` as context, then ``[start, end)``.

        Args:
            context: First exchange of untrained context.
            start: First trained exchange.
            end: Exchange after the last one.
            train_on_prompt: Prompt tokens are trained (the context's answers are then as well).

        Returns:
            ``(input_ids, labels, first_answer)``.
        """
        ids, labels, bounds = self.encoded.input_ids, self.encoded.labels, self.bounds
        head, low, middle, high = bounds[0], bounds[context], bounds[start], bounds[end]
        context_labels = labels[low:middle] if train_on_prompt else [IGNORE_INDEX] * (middle - low)
        sample_ids = ids[:head] + ids[low:high]
        sample_labels = labels[:head] + context_labels + labels[middle:high]
        answers = [first for first, _last in self.encoded.answers if middle <= first < high]
        return sample_ids, sample_labels, head + answers[0] - low if answers else 0


def token_layout(
    tokenizer: Any, encoded: EncodedConversation, exchange_starts: list[int], trained: list[int], messages: list[Any]
) -> TokenLayout | None:
    """The token layout of a conversation, or None when its windows must be rendered.

    Args:
        tokenizer: Tokenizer with the chat template.
        encoded: The whole conversation, located verbatim (``encoded.starts`` set).
        exchange_starts: Index of each exchange's first message.
        trained: Per exchange, how many assistant turns are trained.
        messages: The conversation's messages (one template message each: no tools).

    Returns:
        The layout, or None.
    """
    profile = template_profile(tokenizer)
    if encoded.starts is None or profile is None or not profile.user_header:
        return None
    if len(encoded.input_ids) != len(encoded.tokens.ids):  # an EOS was appended after the text
        return None
    header, text = profile.user_header, encoded.text
    boundaries = []
    for index in exchange_starts:
        content_start = encoded.starts[index]
        boundary = content_start - len(header)
        if messages[index].role != "user" or content_start < 0 or boundary < 0 or not text.startswith(header, boundary):
            return None
        boundaries.append(boundary)
    added = set(tokenizer.get_added_vocab().values())
    bounds: list[int] = []
    for position in encoded.tokens.tokens_starting_at(boundaries):
        if position is None or encoded.input_ids[position] not in added or (bounds and position <= bounds[-1]):
            return None
        bounds.append(position)
    return TokenLayout(encoded, [*bounds, len(encoded.input_ids)], trained)
