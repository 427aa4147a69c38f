"""Converters from every supported instruction format into :class:`Conversation`, and format detection.

Formats:

- ``alpaca``: ``instruction``, optional ``input``, ``output``, optional ``system`` and ``history``
  (``[[user, assistant], ...]`` earlier turns).
- ``dolly``: ``instruction``, optional ``context``, ``response``, optional ``category``.
- ``sharegpt``: ``conversations`` (or ``messages``) of ``{"from", "value"}`` turns with
  human/gpt/system roles and the variants seen in the wild (user, assistant, bot, chatgpt, model, ...).
- ``openai``: ``messages`` of ``{"role", "content"}``.
- ``oasst``: OpenAssistant message trees (see :mod:`core.infrastructure.data.oasst`).
- ``custom``: columns named by ``data.field_mapping`` (instruction, input, output, system), or
  conversations under other names (``messages``, ``role``, ``content``, role names).

Every record may also carry ``checks`` (a list of ``{"kind", "value"}``), ``references`` (further
acceptable answers, used by the evaluation's ROUGE, BLEU and exact match) and a ``split`` field;
other scalar fields are kept as metadata. Problems are reported as ``file:line: field: problem``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.domain.errors import ConfigError
from core.domain.records import Conversation
from core.infrastructure.data.problems import WRONG_TYPE
from core.infrastructure.data.record_checks import ProblemCollector, finish_conversation, type_name
from core.infrastructure.data.turn_lists import convert_turns

FORMATS = ("alpaca", "dolly", "sharegpt", "openai", "oasst", "custom")
"""Format names accepted by ``data.format`` and ``--format``."""

HUB_FORMATS = {
    "tatsu-lab/alpaca": "alpaca",
    "yahma/alpaca-cleaned": "alpaca",
    "databricks/databricks-dolly-15k": "dolly",
    "openassistant/oasst1": "oasst",
    "openassistant/oasst2": "oasst",
}
"""Known Hub dataset ids (lower-case) and their formats."""

ROLE_ALIASES = {
    "system": "system",
    "developer": "system",
    "human": "user",
    "user": "user",
    "prompter": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "bot": "assistant",
    "chatgpt": "assistant",
    "model": "assistant",
    "ai": "assistant",
    "gpt4": "assistant",
    "bard": "assistant",
}
"""Role names seen in ShareGPT-style data, mapped to system/user/assistant."""

CUSTOM_KEYS = ("instruction", "input", "output", "system")
"""Keys of ``data.field_mapping`` for the custom format's columns."""

CONVERSATION_KEYS = ("messages", "role", "content", "system", "user_role", "assistant_role", "system_role", "tool_role")
"""Keys of ``data.field_mapping`` for conversations under other names (LLaMA-Factory's ``columns`` and
``tags``): the list's key, the role and content keys of a turn, the system column, and role names."""


def _history_messages(data: dict[str, Any], collector: ProblemCollector) -> list[tuple[str, str, str]]:
    history = data.get("history")
    if history in (None, ""):
        return []
    turns: list[tuple[str, str, str]] = []
    if not isinstance(history, list):
        collector.add(
            "history", f"wrong type: expected a list of [prompt, answer] pairs, got {type_name(history)}", WRONG_TYPE
        )
        return turns
    for index, pair in enumerate(history):
        if not (isinstance(pair, list | tuple) and len(pair) == 2 and all(isinstance(text, str) for text in pair)):
            collector.add(f"history[{index}]", "wrong type: expected a [prompt, answer] pair of strings", WRONG_TYPE)
            continue
        turns.append(("user", pair[0], f"history[{index}][0]"))
        turns.append(("assistant", pair[1], f"history[{index}][1]"))
    return turns


def _join(first: str, second: str) -> str:
    return f"{first.strip()}\n\n{second.strip()}" if second.strip() else first


def convert_alpaca(data: dict[str, Any], source: str) -> Conversation:
    """Converts an Alpaca record (instruction, input, output, optional system and history).

    Args:
        data: The record.
        source: ``file:line``.

    Returns:
        The conversation.

    Raises:
        RecordProblems: With every problem of the record.
    """
    collector = ProblemCollector(source)
    instruction = collector.text(data, "instruction", required=True)
    extra = collector.text(data, "input", required=False)
    output = collector.text(data, "output", required=True)
    system = collector.text(data, "system", required=False)
    messages = [("system", system, "system")] if system else []
    messages += _history_messages(data, collector)
    if instruction is not None:
        messages.append(("user", _join(instruction, extra or ""), "instruction"))
    if output is not None:
        messages.append(("assistant", output, "output"))
    if instruction is None or output is None:
        collector.raise_if_any()
    return finish_conversation(collector, messages, data, {"instruction", "input", "output", "system", "history"})


def convert_dolly(data: dict[str, Any], source: str) -> Conversation:
    """Converts a Dolly record (instruction, context, response, category).

    Args:
        data: The record.
        source: ``file:line``.

    Returns:
        The conversation (``category`` is kept in the metadata).

    Raises:
        RecordProblems: With every problem of the record.
    """
    collector = ProblemCollector(source)
    instruction = collector.text(data, "instruction", required=True)
    context = collector.text(data, "context", required=False)
    response = collector.text(data, "response", required=True)
    if instruction is None or response is None:
        collector.raise_if_any()
    messages = [
        ("user", _join(instruction or "", context or ""), "instruction"),
        ("assistant", response or "", "response"),
    ]
    return finish_conversation(collector, messages, data, {"instruction", "context", "response"})


def convert_sharegpt(data: dict[str, Any], source: str) -> Conversation:
    """Converts a ShareGPT record: ``conversations`` (or ``messages``) of from/value turns.

    Role names are matched case-insensitively against :data:`ROLE_ALIASES`; ``role``/``content``
    keys are accepted too, and a top-level ``system`` field becomes the system prompt.

    Args:
        data: The record.
        source: ``file:line``.

    Returns:
        The conversation.

    Raises:
        RecordProblems: With every problem of the record.
    """
    return convert_turns(
        data, source, ("conversations", "messages"), ("from", "role"), ("value", "content", "text"), ROLE_ALIASES
    )


def convert_openai(data: dict[str, Any], source: str) -> Conversation:
    """Converts an OpenAI chat record: ``messages`` of role/content (system, developer, user, assistant).

    Args:
        data: The record.
        source: ``file:line``.

    Returns:
        The conversation.

    Raises:
        RecordProblems: With every problem of the record.
    """
    roles = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
    return convert_turns(data, source, ("messages", "conversations"), ("role",), ("content",), roles)


def custom_converter(field_mapping: dict[str, str]) -> Callable[[dict[str, Any], str], Conversation]:
    """Builds the converter of the custom format from ``data.field_mapping``.

    Args:
        field_mapping: Maps ``instruction``, ``output`` (required), ``input`` and ``system``
            (optional) to the file's column names; or, with a ``messages`` key, names the keys of
            a conversation (see :data:`CONVERSATION_KEYS`).

    Returns:
        A converter taking (record, source).

    Raises:
        ConfigError: If the mapping lacks instruction/output or names unknown keys.
    """
    if "messages" in field_mapping:
        return _conversation_converter(field_mapping)
    unknown = sorted(set(field_mapping) - set(CUSTOM_KEYS))
    if unknown:
        raise ConfigError(f"data.field_mapping: unknown keys {unknown}; allowed keys: {', '.join(CUSTOM_KEYS)}")
    missing = [key for key in ("instruction", "output") if key not in field_mapping]
    if missing:
        raise ConfigError(
            f"data.field_mapping: the custom format needs {' and '.join(missing)} "
            '(e.g. data.field_mapping=\'{"instruction": "question", "output": "answer"}\')'
        )

    def convert(data: dict[str, Any], source: str) -> Conversation:
        collector = ProblemCollector(source)
        instruction = collector.text(data, field_mapping["instruction"], required=True)
        extra = collector.text(data, field_mapping["input"], required=False) if "input" in field_mapping else ""
        output = collector.text(data, field_mapping["output"], required=True)
        system = collector.text(data, field_mapping["system"], required=False) if "system" in field_mapping else ""
        if instruction is None or output is None:
            collector.raise_if_any()
        messages = [("system", system, field_mapping.get("system", "system"))] if system else []
        messages.append(("user", _join(instruction or "", extra or ""), field_mapping["instruction"]))
        messages.append(("assistant", output or "", field_mapping["output"]))
        return finish_conversation(collector, messages, data, set(field_mapping.values()))

    return convert


def _conversation_converter(field_mapping: dict[str, str]) -> Callable[[dict[str, Any], str], Conversation]:
    """Conversations under other names: ``{"messages": "dialog", "role": "speaker", "content": "text", ...}``."""
    unknown = sorted(set(field_mapping) - set(CONVERSATION_KEYS))
    if unknown:
        raise ConfigError(
            f"data.field_mapping: unknown keys {unknown} for a conversation mapping; allowed keys: "
            f"{', '.join(CONVERSATION_KEYS)}"
        )
    roles = {**ROLE_ALIASES}
    for role in ("user", "assistant", "system", "tool"):
        if f"{role}_role" in field_mapping:
            roles[field_mapping[f"{role}_role"].strip().lower()] = role
    list_key = field_mapping["messages"]
    role_key, content_key = field_mapping.get("role", "role"), field_mapping.get("content", "content")

    def convert(data: dict[str, Any], source: str) -> Conversation:
        return convert_turns(
            data, source, (list_key,), (role_key,), (content_key,), roles, field_mapping.get("system", "system")
        )

    return convert


def record_converter(
    data_format: str, field_mapping: dict[str, str] | None = None
) -> Callable[[dict[str, Any], str], Conversation]:
    """Returns the per-record converter of a flat format (every format but ``oasst``).

    Args:
        data_format: alpaca, dolly, sharegpt, openai or custom.
        field_mapping: Column mapping for ``custom`` (a conversation mapping also applies to
            ``sharegpt`` and ``openai``).

    Returns:
        A function ``(record, source) -> Conversation`` raising :class:`RecordProblems`.

    Raises:
        ConfigError: For an unknown format or an invalid custom mapping.
    """
    converters = {
        "alpaca": convert_alpaca,
        "dolly": convert_dolly,
        "sharegpt": convert_sharegpt,
        "openai": convert_openai,
    }
    if data_format == "custom" or (data_format in ("sharegpt", "openai") and "messages" in (field_mapping or {})):
        return custom_converter(field_mapping or {})
    if data_format not in converters:
        raise ConfigError(f"data.format: unknown format {data_format!r}; allowed values: {', '.join(FORMATS)}")
    return converters[data_format]
