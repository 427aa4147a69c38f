"""Tokenization with loss masks: the model learns assistant turns (and EOS), never the prompt.

Rendering goes through the tokenizer's chat template, the same one inference and the API use,
so the token ids at serving time equal the training prompt's ids. Assistant spans are found by
rendering growing prefixes of the conversation: the tokens added by an assistant turn, up to and
including the template's end-of-turn token, are the trained ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from transformers import PreTrainedTokenizerBase

from core.domain.records import Conversation
from core.infrastructure.data.tool_rendering import template_messages, template_tools

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


def _render_text(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict], add_generation_prompt: bool, tools: list | None = None
) -> str:
    extra = {"tools": tools} if tools else {}
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt, **extra)


def _encode(tokenizer: PreTrainedTokenizerBase, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return list(encoded["input_ids"]), [tuple(span) for span in encoded["offset_mapping"]]


def render_prompt_ids(tokenizer: PreTrainedTokenizerBase, messages: list[dict]) -> list[int]:
    """Token ids of a prompt ready for generation (the serving path).

    Args:
        tokenizer: Tokenizer carrying the run's chat template.
        messages: ``[{"role": ..., "content": ...}, ...]`` ending with a user turn.

    Returns:
        Token ids including the assistant header.
    """
    return _encode(tokenizer, _render_text(tokenizer, messages, add_generation_prompt=True))[0]


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
    full_text = _render_text(tokenizer, messages, add_generation_prompt=False, tools=tools)
    eos_text = tokenizer.eos_token or ""
    spans = []
    assistant_turns = [index for index, message in enumerate(messages) if message["role"] == "assistant"]
    for number, index in enumerate(assistant_turns):
        if trained is not None and not trained[number]:
            continue
        prompt_text = _render_text(tokenizer, messages[:index], add_generation_prompt=True, tools=tools)
        turn_text = _render_text(tokenizer, messages[: index + 1], add_generation_prompt=False, tools=tools)
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
    template = tokenizer.chat_template
    messages = template_messages(conversation.messages, template, conversation.tools)
    trained = [message.trained for message in conversation.messages if message.role == "assistant"]
    tools = template_tools(template, conversation.tools)
    full_text, spans = assistant_spans(tokenizer, messages, conversation.source, tools, trained)
    spans = [span for span in spans if span[1] > span[0]]  # a template may render no text for an answer
    input_ids, offsets = _encode(tokenizer, full_text)
    labels = [IGNORE_INDEX] * len(input_ids)
    answer_start: int | None = None
    span_index = 0
    for position, (start, end) in enumerate(offsets):
        while span_index < len(spans) and start >= spans[span_index][1]:
            span_index += 1
        # a token overlapping the answer is trained, also one that straddles the generation prompt's end
        # (e.g. " Hello" after a template's "assistant:"), so no answer character goes untrained
        in_answer = (
            span_index < len(spans) and start < spans[span_index][1] and max(end, start + 1) > spans[span_index][0]
        )
        if in_answer and answer_start is None:
            answer_start = position
        if in_answer or train_on_prompt:
            labels[position] = input_ids[position]
    eos_id = tokenizer.eos_token_id
    if eos_id is not None and spans and not full_text[: spans[-1][1]].endswith(tokenizer.eos_token or "\0"):
        # the template closes answers without EOS: append it so the model learns to stop
        cut = max(position + 1 for position, (start, _end) in enumerate(offsets) if start < spans[-1][1])
        input_ids = [*input_ids[:cut], eos_id]
        labels = [*labels[:cut], eos_id]
    truncated = len(input_ids) > max_length
    if truncated:
        if truncation == "drop":
            return None, "too_long"
        # keep the end of the prompt and the start of the answer (up to half the window for the answer)
        first = answer_start if answer_start is not None else 0
        kept_answer = min(len(input_ids) - first, max_length // 2)
        window_start = max(0, first + kept_answer - max_length)
        input_ids = input_ids[window_start : window_start + max_length]
        labels = labels[window_start : window_start + max_length]
    trained = sum(1 for label in labels if label != IGNORE_INDEX)
    if trained == 0:
        return None, "empty_loss_mask"
    return TokenizedExample(input_ids=input_ids, labels=labels, truncated=truncated, trained_tokens=trained), None
