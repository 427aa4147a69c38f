"""A conversation longer than ``max_seq_length`` becomes several samples cut at turn boundaries; no answer is lost.

``data.truncation``:

* ``split_turns`` (default): the conversation's exchanges (the turns up to and including an
  assistant answer) are grouped greedily into samples that fit; each sample starts with the system
  prompt and as many earlier exchanges as still fit, as untrained context, so every assistant turn
  is trained exactly once. An exchange longer than the window on its own is truncated
  (``keep_first``) and counted.
* ``keep_first`` (``truncate`` is its old name): one sample, the window around the first answer;
  later answers that fall outside are lost (counted).
* ``drop``: a conversation that does not fit is skipped (counted as ``too_long``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from transformers import PreTrainedTokenizerBase

from core.domain.records import Conversation, Message
from core.infrastructure.data.token_windows import TokenLayout, token_layout
from core.infrastructure.data.tokenize import (
    IGNORE_INDEX,
    EncodedConversation,
    TokenizedExample,
    encode_conversation,
    finish_example,
    tokenize_with_reason,
)
from core.infrastructure.data.tokenizer_cache import TemplateKey, template_key

Truncation = Literal["split_turns", "keep_first", "truncate", "drop"]
UNLIMITED = 1 << 30


@dataclass
class RecordSamples:
    """What one conversation became.

    Attributes:
        examples: Its training samples (empty when it was left out).
        reason: Why it was left out (``too_long``, ``empty_loss_mask``), or None.
        length: Token length of the whole conversation, before any cut.
        assistant_turns: Assistant turns meant to be trained.
        assistant_turns_trained: Those that some sample trains.
        cut: True when the conversation did not fit in one window.
    """

    examples: list[TokenizedExample] = field(default_factory=list)
    reason: str | None = None
    length: int = 0
    assistant_turns: int = 0
    assistant_turns_trained: int = 0
    cut: bool = False


def _exchanges(messages: list[Message]) -> tuple[list[Message], list[list[Message]]]:
    """The leading system turn (if any) and the exchanges: turns up to and including each assistant answer."""
    system = messages[:1] if messages and messages[0].role == "system" else []
    exchanges: list[list[Message]] = [[]]
    for message in messages[len(system) :]:
        exchanges[-1].append(message)
        if message.role == "assistant":
            exchanges.append([])
    if not exchanges[-1]:
        exchanges.pop()
    return system, exchanges


def _context_only(messages: list[Message]) -> list[Message]:
    return [
        message.model_copy(update={"trained": False}) if message.role == "assistant" else message
        for message in messages
    ]


def tokenize_record(
    tokenizer: PreTrainedTokenizerBase,
    conversation: Conversation,
    max_length: int,
    train_on_prompt: bool = False,
    truncation: Truncation = "split_turns",
) -> RecordSamples:
    """Tokenizes one conversation into its training samples under ``data.truncation``.

    Args:
        tokenizer: Tokenizer with the chat template to train with.
        conversation: The conversation.
        max_length: ``data.max_seq_length``.
        train_on_prompt: Also train on prompt tokens.
        truncation: ``split_turns``, ``keep_first`` (``truncate``) or ``drop``.

    Returns:
        The samples and the counts the report needs.
    """
    meant = sum(1 for message in conversation.messages if message.role == "assistant" and message.trained)
    encoded = encode_conversation(tokenizer, conversation, train_on_prompt)
    whole, reason = finish_example(encoded.input_ids, encoded.labels, encoded.first_answer, UNLIMITED)
    result = RecordSamples(length=len(whole.input_ids) if whole else 0, assistant_turns=meant)
    if whole is None:
        result.reason = reason
        return result
    if result.length <= max_length:
        result.examples, result.assistant_turns_trained = [whole], meant
        return result
    result.cut = True
    if truncation == "drop":
        result.reason = "too_long"
        return result
    if truncation in ("keep_first", "truncate"):
        example, reason = finish_example(encoded.input_ids, encoded.labels, encoded.first_answer, max_length)
        result.examples = [example] if example else []
        result.reason = reason
        result.assistant_turns_trained = min(meant, _answers_kept(example))
        return result
    system, exchanges = _exchanges(conversation.messages)
    layout = _layout(tokenizer, conversation, encoded, system, exchanges)
    if layout is None:
        return _split_turns(
            _RenderedWindows(tokenizer, conversation, system, exchanges), max_length, train_on_prompt, result
        )
    return _split_turns(_SlicedWindows(layout, exchanges), max_length, train_on_prompt, result)


def _answers_kept(example: TokenizedExample | None) -> int:
    """Answers a window trains: its runs of labelled tokens (untrained prompt tokens separate two answers)."""
    if example is None:
        return 0
    runs, inside = 0, False
    for label in example.labels:
        trained = label != IGNORE_INDEX
        runs += trained and not inside
        inside = trained
    return runs


def _flat(exchanges: list[list[Message]]) -> list[Message]:
    return [message for exchange in exchanges for message in exchange]


def _trained_answers(exchange: list[Message]) -> int:
    """Assistant turns of an exchange that are trained."""
    return sum(1 for message in exchange if message.role == "assistant" and message.trained)


def _layout(
    tokenizer: PreTrainedTokenizerBase,
    conversation: Conversation,
    encoded: EncodedConversation,
    system: list[Message],
    exchanges: list[list[Message]],
    probed: bool = True,
) -> TokenLayout | None:
    """The whole conversation's token layout when its windows can be sliced (no tools, a probed template)."""
    messages = conversation.messages
    if conversation.tools or any(message.role == "tool" or message.tool_calls for message in messages):
        return None
    if len(exchanges) < 2 or (probed and not _slicing_agrees(tokenizer)):
        return None
    starts = [len(system)]
    for exchange in exchanges[:-1]:
        starts.append(starts[-1] + len(exchange))
    return token_layout(tokenizer, encoded, starts, [_trained_answers(exchange) for exchange in exchanges], messages)


_SLICING_AGREES: dict[TemplateKey, bool] = {}


def _slicing_agrees(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether sliced windows equal rendered ones on probe conversations (once per template)."""
    key = template_key(tokenizer)
    if key not in _SLICING_AGREES:
        try:
            _SLICING_AGREES[key] = all(_probe_agrees(tokenizer, probe) for probe in _probe_conversations())
        except ValueError:
            _SLICING_AGREES[key] = False
    return _SLICING_AGREES[key]


def _probe_conversations() -> list[Conversation]:
    """Four exchanges of growing answers (the second untrained), without and with a system prompt."""
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]
    turns = []
    for number in range(4):
        turns.append(Message(role="user", content=f"Question {number}: " + " ".join(words[number:])))
        turns.append(Message(role="assistant", content=" ".join(words[: 3 + 2 * number]) + ".", trained=number != 1))
    system = [Message(role="system", content="Answer briefly.")]
    return [Conversation(messages=turns, source="probe:1"), Conversation(messages=system + turns, source="probe:2")]


def _probe_agrees(tokenizer: PreTrainedTokenizerBase, conversation: Conversation) -> bool:
    """Both ways of splitting a probe conversation give the same samples at several window sizes."""
    system, exchanges = _exchanges(conversation.messages)
    for train_on_prompt in (False, True):
        encoded = encode_conversation(tokenizer, conversation, train_on_prompt)
        layout = _layout(tokenizer, conversation, encoded, system, exchanges, probed=False)
        if layout is None:
            return False
        for fraction in (0.2, 0.45, 0.7):
            max_length = int(len(encoded.input_ids) * fraction)
            outcomes = [
                _split_turns(windows, max_length, train_on_prompt, RecordSamples())
                for windows in (
                    _RenderedWindows(tokenizer, conversation, system, exchanges),
                    _SlicedWindows(layout, exchanges),
                )
            ]
            if outcomes[0] != outcomes[1]:
                return False
    return True


class _RenderedWindows:
    """Windows rendered and tokenized one by one (any template)."""

    def __init__(
        self, tokenizer: Any, conversation: Conversation, system: list[Message], exchanges: list[list[Message]]
    ) -> None:
        self.tokenizer, self.conversation, self.system, self.exchanges = tokenizer, conversation, system, exchanges

    def trained_in(self, start: int, end: int) -> int:
        """Trained assistant turns of exchanges ``[start, end)``."""
        return sum(_trained_answers(exchange) for exchange in self.exchanges[start:end])

    def length(self, first: int, end: int) -> int:
        """Token length of the system part and exchanges ``[first, end)`` (0 when nothing is trained)."""
        messages = self.system + _flat(self.exchanges[first:end])
        rendered, _ = tokenize_with_reason(
            self.tokenizer, self.conversation.model_copy(update={"messages": messages}), UNLIMITED
        )
        return len(rendered.input_ids) if rendered else 0

    def sample(
        self, context: int, start: int, end: int, max_length: int, train_on_prompt: bool, truncation: str
    ) -> TokenizedExample | None:
        """The sample of exchanges ``[start, end)`` after ``[context, start)`` as untrained context."""
        messages = self.system + _context_only(_flat(self.exchanges[context:start])) + _flat(self.exchanges[start:end])
        sample = self.conversation.model_copy(update={"messages": messages})
        return tokenize_with_reason(self.tokenizer, sample, max_length, train_on_prompt, truncation)[0]


class _SlicedWindows(_RenderedWindows):
    """Windows sliced out of the whole conversation's tokens (see :mod:`core.infrastructure.data.token_windows`)."""

    def __init__(self, layout: TokenLayout, exchanges: list[list[Message]]) -> None:
        self.layout, self.exchanges = layout, exchanges

    def length(self, first: int, end: int) -> int:
        """Token length of the system part and exchanges ``[first, end)`` (0 when nothing is trained)."""
        return self.layout.length(first, end)

    def sample(
        self, context: int, start: int, end: int, max_length: int, train_on_prompt: bool, truncation: str
    ) -> TokenizedExample | None:
        """The sample of exchanges ``[start, end)`` after ``[context, start)`` as untrained context."""
        input_ids, labels, first_answer = self.layout.sample(context, start, end, train_on_prompt)
        return finish_example(input_ids, labels, first_answer, max_length, truncation)[0]


def _split_turns(
    windows: _RenderedWindows, max_length: int, train_on_prompt: bool, result: RecordSamples
) -> RecordSamples:
    """Groups the exchanges greedily into samples that fit, each after as much earlier context as fits."""
    count = len(windows.exchanges)
    start = 0
    while start < count:
        end = start
        while end < count and windows.length(start, end + 1) <= max_length:
            end += 1
        if end == start:  # one exchange longer than the window: its start is kept, counted as truncated
            context, end, truncation = start, start + 1, "truncate"
        else:
            context, truncation = start, "drop"
            while context > 0 and windows.length(context - 1, end) <= max_length:
                context -= 1
        example = windows.sample(context, start, end, max_length, train_on_prompt, truncation)
        trained_here = windows.trained_in(start, end)
        if example is not None and trained_here:
            result.examples.append(example)
            result.assistant_turns_trained += trained_here
        start = end
    if not result.examples:
        result.reason = "empty_loss_mask"
    return result
