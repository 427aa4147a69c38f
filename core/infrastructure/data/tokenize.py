"""Tokenization with loss masks: the model learns assistant turns (and EOS), never the prompt.

Rendering goes through the tokenizer's chat template, the same one inference and the API use,
so the token ids at serving time equal the training prompt's ids. Assistant spans are found by
rendering growing prefixes of the conversation: the tokens added by an assistant turn, up to and
including the template's end-of-turn token, are the trained ones. A template that renders contents
verbatim gets the same spans from one render (:mod:`core.infrastructure.data.verbatim`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from transformers import PreTrainedTokenizerBase

from core.domain.records import Conversation
from core.infrastructure.data.byte_offsets import byte_lengths, fast_ids_with_byte_ends
from core.infrastructure.data.prefix_ids import prefix_ids
from core.infrastructure.data.token_offsets import TokenOffsets, answer_token_ranges
from core.infrastructure.data.tool_rendering import template_messages, template_tools
from core.infrastructure.data.verbatim import locate_verbatim, render_text, template_profile

IGNORE_INDEX = -100
"""Label value that the loss ignores."""


@dataclass
class TokenizedExample:
    """One tokenized conversation.

    Attributes:
        input_ids: Token ids of the whole conversation.
        labels: Same length; ``IGNORE_INDEX`` on tokens that are not trained.
        truncated: True when the conversation was cut to ``max_length``.
        trained_tokens: Number of tokens with a label.
    """

    input_ids: list[int]
    labels: list[int]
    truncated: bool = False
    trained_tokens: int = field(default=0)


def _encode(tokenizer: PreTrainedTokenizerBase, text: str) -> TokenOffsets:
    """Token ids of a text with every token's character span (no special tokens added)."""
    backend = _plain_backend(tokenizer)
    table = byte_lengths(tokenizer, backend) if backend is not None else None
    fast = fast_ids_with_byte_ends(backend, table, text, prefix_ids(tokenizer, backend)) if table is not None else None
    if fast is not None:  # byte-level BPE: spans from the ids, without the tokenizer tracking offsets
        return TokenOffsets(fast[0], byte_ends=fast[1], text=text)
    if backend is not None:  # the Rust tokenizer itself: what ``tokenizer(text)`` calls, without its wrapping
        encoding = backend.encode(text, add_special_tokens=False)
        return TokenOffsets(encoding.ids, encoding=encoding)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return TokenOffsets(list(encoded["input_ids"]), [tuple(span) for span in encoded["offset_mapping"]])


def _plain_backend(tokenizer: PreTrainedTokenizerBase) -> Any:
    """A fast tokenizer's backend when ``tokenizer(text)`` would call it unchanged (no truncation, no padding)."""
    backend = getattr(tokenizer, "_tokenizer", None)
    if backend is None or not getattr(tokenizer, "is_fast", False):
        return None
    if backend.truncation is not None or backend.padding is not None:
        return None
    if backend.encode_special_tokens != bool(getattr(tokenizer, "split_special_tokens", False)):
        return None
    return backend


def render_prompt_ids(tokenizer: PreTrainedTokenizerBase, messages: list[dict]) -> list[int]:
    """Token ids of a prompt ready for generation (the serving path).

    Args:
        tokenizer: Tokenizer carrying the run's chat template.
        messages: ``[{"role": ..., "content": ...}, ...]`` ending with a user turn.

    Returns:
        Token ids including the assistant header.
    """
    return _encode(tokenizer, render_text(tokenizer, messages, add_generation_prompt=True)).ids


def assistant_spans(
    tokenizer: PreTrainedTokenizerBase,
    messages: list[dict],
    source: str = "",
    tools: list | None = None,
    trained: list[bool] | None = None,
) -> tuple[str, list[tuple[int, int]]]:
    """Renders a conversation and locates each assistant answer as a character span.

    A span runs from the end of the generation prompt to the end of the turn's end-of-turn
    token (EOS) when the template emits one, else to the end of the answer's text (what the
    template adds after the answer, such as a newline, is not trained).

    Args:
        tokenizer: Tokenizer with the chat template.
        messages: The conversation as role/content mappings.
        source: ``file:line`` for error messages.
        tools: The ``tools=`` argument of the template, if any.
        trained: Per assistant turn, in order, whether it is trained (default: all).

    Returns:
        The rendered text and the list of ``(start, end)`` character spans of trained text.

    Raises:
        ValueError: If the template renders earlier turns differently once later turns are added.
    """
    full_text = render_text(tokenizer, messages, add_generation_prompt=False, tools=tools)
    eos_text = tokenizer.eos_token or ""
    spans = []
    assistant_turns = [index for index, message in enumerate(messages) if message["role"] == "assistant"]
    for number, index in enumerate(assistant_turns):
        if trained is not None and not trained[number]:
            continue
        prompt_text = render_text(tokenizer, messages[:index], add_generation_prompt=True, tools=tools)
        turn_text = (  # the last message's turn is the whole conversation, rendered above
            full_text
            if index == len(messages) - 1
            else render_text(tokenizer, messages[: index + 1], add_generation_prompt=False, tools=tools)
        )
        if not (turn_text.startswith(prompt_text) and full_text.startswith(turn_text)):
            raise ValueError(f"{source}: the chat template is not prefix-stable; cannot locate the assistant turn")
        content = messages[index]["content"]
        found = turn_text.find(content, len(prompt_text)) if content else -1
        end = found + len(content) if found >= 0 else len(turn_text)
        eos_at = turn_text.find(eos_text, end if found >= 0 else len(prompt_text)) if eos_text else -1
        if eos_at >= 0:
            end = eos_at + len(eos_text)
        spans.append((len(prompt_text), end))
    return full_text, spans


def tokenize_conversation(
    tokenizer: PreTrainedTokenizerBase,
    conversation: Conversation,
    max_length: int,
    train_on_prompt: bool = False,
    truncation: Literal["truncate", "drop"] = "truncate",
) -> TokenizedExample | None:
    """Tokenizes a conversation and builds labels that train only the assistant turns.

    Every assistant turn is trained (multi-turn data learns each answer), including the
    template's end-of-turn token, which is EOS for chat models, so a model whose pad token
    equals EOS still learns to stop. When the template does not emit EOS after an answer,
    EOS is appended and trained.

    Args:
        tokenizer: Tokenizer with the chat template to train with.
        conversation: The conversation.
        max_length: Longest sequence kept.
        train_on_prompt: Also train on system and user tokens.
        truncation: ``truncate`` keeps the end of the prompt and the start of the answer;
            ``drop`` returns None for conversations that do not fit.

    Returns:
        The tokenized example, or None when dropped (too long, or nothing left to train).
    """
    return tokenize_with_reason(tokenizer, conversation, max_length, train_on_prompt, truncation)[0]


def tokenize_with_reason(
    tokenizer: PreTrainedTokenizerBase,
    conversation: Conversation,
    max_length: int,
    train_on_prompt: bool = False,
    truncation: Literal["truncate", "drop"] = "truncate",
) -> tuple[TokenizedExample | None, str | None]:
    """Like :func:`tokenize_conversation`, and says why an example was left out.

    Args:
        tokenizer: Tokenizer with the chat template to train with.
        conversation: The conversation.
        max_length: Longest sequence kept.
        train_on_prompt: Also train on system and user tokens.
        truncation: ``truncate`` or ``drop``.

    Returns:
        ``(example, None)``, or ``(None, "too_long")`` when dropped by the truncation policy, or
        ``(None, "empty_loss_mask")`` when no token is left to train.
    """
    encoded = encode_conversation(tokenizer, conversation, train_on_prompt)
    return finish_example(encoded.input_ids, encoded.labels, encoded.first_answer, max_length, truncation)


@dataclass
class EncodedConversation:
    """A whole conversation tokenized with its labels, before any cut.

    Attributes:
        text: The rendered text.
        input_ids: Its token ids (with an appended EOS when the template closes answers without it).
        tokens: The ids of ``text`` with every token's character span (read when first asked).
        labels: Labels of ``input_ids``.
        answers: Token ranges ``[first, last)`` of the trained answers.
        starts: Where each template message's content starts in ``text`` when the conversation was
            located verbatim (:mod:`core.infrastructure.data.verbatim`), else None.
    """

    text: str
    input_ids: list[int]
    tokens: TokenOffsets
    labels: list[int]
    answers: list[tuple[int, int]]
    starts: list[int] | None = None

    @property
    def first_answer(self) -> int:
        """Token position of the first trained answer (0 when none)."""
        return self.answers[0][0] if self.answers else 0

    @property
    def offsets(self) -> list[tuple[int, int]]:
        """Character span of every token of ``text``."""
        return self.tokens.offsets


def encode_conversation(
    tokenizer: PreTrainedTokenizerBase, conversation: Conversation, train_on_prompt: bool = False
) -> EncodedConversation:
    """Renders and tokenizes a whole conversation with its labels (one render when located verbatim).

    Args:
        tokenizer: Tokenizer with the chat template to train with.
        conversation: The conversation.
        train_on_prompt: Also train on system and user tokens.

    Returns:
        The encoded conversation.

    Raises:
        ValueError: If the template renders earlier turns differently once later turns are added.
    """
    template = tokenizer.chat_template
    messages = template_messages(conversation.messages, template, conversation.tools)
    trained = [message.trained for message in conversation.messages if message.role == "assistant"]
    tools = template_tools(template, conversation.tools)
    profile = None if tools or any("tool_calls" in message for message in messages) else template_profile(tokenizer)
    located = locate_verbatim(tokenizer, profile, messages, trained) if profile else None
    if located is not None:
        full_text, spans = located.text, located.spans
    else:
        full_text, spans = assistant_spans(tokenizer, messages, conversation.source, tools, trained)
        spans = [span for span in spans if span[1] > span[0]]  # a template may render no text for an answer
    tokens = _encode(tokenizer, full_text)
    input_ids = tokens.ids
    # located verbatim: ranges from the span ends (the full offsets only when that cannot settle them)
    answers = tokens.answer_ranges(spans) if located is not None else answer_token_ranges(tokens.offsets, spans)
    labels = list(input_ids) if train_on_prompt else [IGNORE_INDEX] * len(input_ids)
    for first, last in answers:
        labels[first:last] = input_ids[first:last]
    if located is None:  # located verbatim, every answer's span ends with EOS
        input_ids, labels = _with_final_eos(tokenizer, full_text, spans, tokens, input_ids, labels)
    starts = located.starts if located is not None else None
    return EncodedConversation(full_text, input_ids, tokens, labels, answers, starts)


def finish_example(
    input_ids: list[int],
    labels: list[int],
    first_answer: int,
    max_length: int,
    truncation: Literal["truncate", "drop"] = "truncate",
) -> tuple[TokenizedExample | None, str | None]:
    """Applies the truncation policy to a tokenized sample and counts its trained tokens.

    Args:
        input_ids: The sample's token ids.
        labels: Its labels.
        first_answer: Token position of its first trained answer (where ``truncate`` keeps the window).
        max_length: Longest sequence kept.
        truncation: ``truncate`` or ``drop``.

    Returns:
        ``(example, None)``, ``(None, "too_long")`` or ``(None, "empty_loss_mask")``.
    """
    truncated = len(input_ids) > max_length
    if truncated:
        if truncation == "drop":
            return None, "too_long"
        input_ids, labels = _window(input_ids, labels, first_answer, max_length)
    trained_tokens = len(labels) - labels.count(IGNORE_INDEX)
    if trained_tokens == 0:
        return None, "empty_loss_mask"
    example = TokenizedExample(input_ids=input_ids, labels=labels, truncated=truncated, trained_tokens=trained_tokens)
    return example, None


def _with_final_eos(
    tokenizer: PreTrainedTokenizerBase,
    full_text: str,
    spans: list[tuple[int, int]],
    tokens: TokenOffsets,
    input_ids: list[int],
    labels: list[int],
) -> tuple[list[int], list[int]]:
    """Appends a trained EOS after the last answer when the template closes answers without it."""
    if not spans or full_text.endswith(tokenizer.eos_token or "\0", 0, spans[-1][1]):
        return input_ids, labels
    eos_id = tokenizer.eos_token_id
    if eos_id is None:
        return input_ids, labels
    cut = max(position + 1 for position, (start, _end) in enumerate(tokens.offsets) if start < spans[-1][1])
    return [*input_ids[:cut], eos_id], [*labels[:cut], eos_id]


def _window(input_ids: list[int], labels: list[int], first_answer: int, max_length: int) -> tuple[list[int], list[int]]:
    """Keeps the end of the prompt and the start of the answer (up to half the window for the answer)."""
    kept_answer = min(len(input_ids) - first_answer, max_length // 2)
    window_start = max(0, first_answer + kept_answer - max_length)
    return input_ids[window_start : window_start + max_length], labels[window_start : window_start + max_length]
