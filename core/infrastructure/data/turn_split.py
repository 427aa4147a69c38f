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
from typing import Literal

from transformers import PreTrainedTokenizerBase

from core.domain.records import Conversation, Message
from core.infrastructure.data.tokenize import IGNORE_INDEX, TokenizedExample, tokenize_with_reason

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
    whole, reason = tokenize_with_reason(tokenizer, conversation, UNLIMITED, train_on_prompt)
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
        example, reason = tokenize_with_reason(tokenizer, conversation, max_length, train_on_prompt, "truncate")
        result.examples = [example] if example else []
        result.reason = reason
        result.assistant_turns_trained = min(meant, _answers_kept(example))
        return result
    return _split_turns(tokenizer, conversation, max_length, train_on_prompt, result)


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


def _length(tokenizer: PreTrainedTokenizerBase, conversation: Conversation, messages: list[Message]) -> int:
    rendered, _ = tokenize_with_reason(tokenizer, conversation.model_copy(update={"messages": messages}), UNLIMITED)
    return len(rendered.input_ids) if rendered else 0


def _split_turns(
    tokenizer: PreTrainedTokenizerBase,
    conversation: Conversation,
    max_length: int,
    train_on_prompt: bool,
    result: RecordSamples,
) -> RecordSamples:
    system, exchanges = _exchanges(conversation.messages)
    start = 0
    while start < len(exchanges):
        end = start
        while (
            end < len(exchanges)
            and _length(tokenizer, conversation, system + _flat(exchanges[start : end + 1])) <= max_length
        ):
            end += 1
        if end == start:  # one exchange longer than the window: its start is kept, counted as truncated
            messages, end = system + _flat(exchanges[start : start + 1]), start + 1
            truncation = "truncate"
        else:
            context = start
            while (
                context > 0
                and _length(tokenizer, conversation, system + _flat(exchanges[context - 1 : end])) <= max_length
            ):
                context -= 1
            messages = system + _context_only(_flat(exchanges[context:start])) + _flat(exchanges[start:end])
            truncation = "drop"
        sample = conversation.model_copy(update={"messages": messages})
        example, _reason = tokenize_with_reason(tokenizer, sample, max_length, train_on_prompt, truncation)
        trained_here = sum(
            1 for exchange in exchanges[start:end] for m in exchange if m.role == "assistant" and m.trained
        )
        if example is not None and trained_here:
            result.examples.append(example)
            result.assistant_turns_trained += trained_here
        start = end
    if not result.examples:
        result.reason = "empty_loss_mask"
    return result
