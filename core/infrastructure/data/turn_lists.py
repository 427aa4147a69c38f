"""Lists of turns into a :class:`Conversation`: ShareGPT, OpenAI messages and conversations under other names.

Each turn's role is read from the first role key it holds and matched case-insensitively against
the format's role names; its content from the first content key (a string, or OpenAI text parts).
A ShareGPT ``function_call`` turn joins the assistant answer before it as its tool calls. Every
problem of every turn is collected, then the conversation is checked as a whole
(:func:`~core.infrastructure.data.record_checks.finish_conversation`).
"""

from __future__ import annotations

from typing import Any

from core.domain.records import Conversation
from core.infrastructure.data.problems import MISSING_FIELD, UNKNOWN_ROLE, UNSUPPORTED_MEDIA, WRONG_TYPE
from core.infrastructure.data.record_checks import ProblemCollector, Turn, finish_conversation, type_name
from core.infrastructure.data.tool_turns import CALL_ROLES, RESULT_ROLES, parse_calls, tools_of


def _first_present(mapping: dict[str, Any], keys: tuple[str, ...], default: str | None) -> str | None:
    """The first of ``keys`` in ``mapping``, else ``default`` (a loop: a generator costs more, twice per turn)."""
    for key in keys:
        if key in mapping:
            return key
    return default


def _turn_list(
    data: dict[str, Any], collector: ProblemCollector, keys: tuple[str, ...]
) -> tuple[str, list[Any]] | None:
    key = _first_present(data, keys, None)
    if key is None:
        collector.add(keys[0], "missing field", MISSING_FIELD)
        return None
    turns = data[key]
    if not isinstance(turns, list):
        collector.add(key, f"wrong type: expected a list of turns, got {type_name(turns)}", WRONG_TYPE)
        return None
    return key, turns


def _content_text(value: Any, collector: ProblemCollector, field: str, may_be_empty: bool) -> str | None:
    """Content as text: a string, or OpenAI content parts (text parts joined; any other part is refused by name)."""
    if isinstance(value, str):
        return value
    if value is None and may_be_empty:
        return ""
    if isinstance(value, list) and value and all(isinstance(part, dict) for part in value):
        others = [
            (index, part.get("type")) for index, part in enumerate(value) if not isinstance(part.get("text"), str)
        ]
        for index, kind in others:
            collector.add(
                f"{field}[{index}]",
                f"text-only finetuning cannot use a content part of type {kind!r}; remove it",
                UNSUPPORTED_MEDIA,
            )
        return None if others else "".join(part["text"] for part in value)
    collector.add(field, f"wrong type: expected a string, got {type_name(value)}", WRONG_TYPE)
    return None


def convert_turns(
    data: dict[str, Any],
    source: str,
    list_keys: tuple[str, ...],
    role_keys: tuple[str, ...],
    content_keys: tuple[str, ...],
    roles: dict[str, str],
    system_key: str = "system",
) -> Conversation:
    """Converts a record holding a list of turns.

    Args:
        data: The record.
        source: ``file:line``.
        list_keys: Keys of the turn list, in order of preference.
        role_keys: Keys of a turn's role, in order of preference.
        content_keys: Keys of a turn's content, in order of preference.
        roles: Role names as written (lower-case) -> ``system``, ``user`` or ``assistant``.
        system_key: Top-level key of a system prompt.

    Returns:
        The conversation.

    Raises:
        RecordProblems: With every problem of the record.
    """
    collector = ProblemCollector(source)
    found = _turn_list(data, collector, list_keys)
    if found is None:
        collector.raise_if_any()
    key, turns = found  # type: ignore[misc]
    messages: list[Turn] = []
    system = data.get(system_key)
    if isinstance(system, str) and system.strip():
        messages.append(Turn("system", system, system_key))
    for index, turn in enumerate(turns):
        _add_turn(messages, turn, f"{key}[{index}]", collector, (role_keys, content_keys), roles)
    tools = tools_of(data, collector)
    if collector.problems:
        collector.raise_if_any()
    return finish_conversation(collector, messages, data, {key, system_key}, tools)


def _turn_role(
    turn: dict[str, Any], prefix: str, role_keys: tuple[str, ...], roles: dict[str, str], collector: ProblemCollector
) -> tuple[str, str] | None:
    """The turn's role as written (lower-cased) and as a conversation role, or None with the problem collected."""
    role_key = _first_present(turn, role_keys, role_keys[0])
    raw_role = turn.get(role_key)
    if role_key not in turn:
        collector.add(f"{prefix}.{role_key}", "missing field", MISSING_FIELD)
        return None
    if not isinstance(raw_role, str):
        collector.add(f"{prefix}.{role_key}", f"wrong type: expected a string, got {type_name(raw_role)}", WRONG_TYPE)
        return None
    name = raw_role.strip().lower()
    role = "tool" if name in RESULT_ROLES else "assistant" if name in CALL_ROLES else roles.get(name)
    if role is None:
        collector.add(f"{prefix}.{role_key}", f"unknown role {raw_role!r}", UNKNOWN_ROLE)
        return None
    return name, role


def _add_turn(
    messages: list[Turn],
    turn: Any,
    prefix: str,
    collector: ProblemCollector,
    keys: tuple[tuple[str, ...], tuple[str, ...]],
    roles: dict[str, str],
) -> None:
    """Appends one turn of a turn list to ``messages`` (a tool call joins the answer before it), or collects its problems."""
    role_keys, content_keys = keys
    if not isinstance(turn, dict):
        collector.add(prefix, f"wrong type: expected an object, got {type_name(turn)}", WRONG_TYPE)
        return
    named = _turn_role(turn, prefix, role_keys, roles, collector)
    if named is None:
        return
    name, role = named
    content_key = _first_present(turn, content_keys, content_keys[0])
    field = f"{prefix}.{content_key}"
    if name in CALL_ROLES:  # ShareGPT: the turn's value is the call
        calls = tuple(parse_calls(turn.get(content_key), collector, field))
        if messages and messages[-1].role == "assistant" and not messages[-1].calls:
            messages[-1] = messages[-1]._replace(calls=calls)  # text, then the call: one assistant turn
        else:
            messages.append(Turn("assistant", "", field, calls))
        return
    calls = tuple(parse_calls(turn["tool_calls"], collector, f"{prefix}.tool_calls")) if turn.get("tool_calls") else ()
    if content_key not in turn and not calls:
        collector.add(field, "missing field", MISSING_FIELD)
        return
    content = _content_text(turn.get(content_key), collector, field, may_be_empty=bool(calls))
    if content is None:
        return
    trained = turn.get("train", True) is not False and turn.get("weight", 1) != 0
    messages.append(Turn(role, content, field, calls, trained))
