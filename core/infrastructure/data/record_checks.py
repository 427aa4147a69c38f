"""Checks shared by every format's converter: field types, content, turn order, checks and metadata.

A converter collects every problem of a record in a :class:`ProblemCollector` and ends with
:func:`finish_conversation`, which validates content and the order of turns
``[system] user assistant (user assistant)*`` -- where an assistant turn that calls tools is
followed by one or more ``tool`` results and then the assistant again.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from core.domain.records import Conversation, Message, ToolCall
from core.infrastructure.data.problems import (
    BROKEN_ORDER,
    EMPTY_PROMPT,
    EMPTY_RESPONSE,
    MISSING_FIELD,
    WRONG_TYPE,
    Problem,
    RecordProblems,
)

_RESERVED = {"checks", "split", "references"}


def type_name(value: Any) -> str:
    """The JSON name of a value's type (object, array, string, number, boolean, null)."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


class ProblemCollector:
    """Accumulates the problems of one record."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []

    def add(self, field: str, message: str, reason: str) -> None:
        """Records one problem of ``field``."""
        self.problems.append(Problem(self.source, field, message, reason))

    def text(self, data: dict[str, Any], key: str, required: bool, label: str | None = None) -> str | None:
        """Reads a string field; a missing optional field (or null) is ''."""
        label = label or key
        if key not in data or (data[key] is None and not required):
            if required:
                self.add(label, "missing field", MISSING_FIELD)
                return None
            return ""
        value = data[key]
        if not isinstance(value, str):
            self.add(label, f"wrong type: expected a string, got {type_name(value)}", WRONG_TYPE)
            return None
        return value

    def raise_if_any(self) -> None:
        """Raises :class:`RecordProblems` with every problem collected, if any."""
        if self.problems:
            raise RecordProblems(self.problems)


def _checks(data: dict[str, Any], collector: ProblemCollector) -> list[dict[str, Any]]:
    checks = data.get("checks")
    if checks is None:
        return []
    if not isinstance(checks, list) or not all(isinstance(check, dict) and "kind" in check for check in checks):
        collector.add("checks", 'wrong type: expected a list of {"kind", "value"} objects', WRONG_TYPE)
        return []
    return checks


def _references(data: dict[str, Any], collector: ProblemCollector) -> list[str]:
    references = data.get("references")
    if references is None:
        return []
    if not isinstance(references, list) or not all(isinstance(text, str) and text.strip() for text in references):
        collector.add("references", "wrong type: expected a list of non-empty reference answers (strings)", WRONG_TYPE)
        return []
    return [text.strip() for text in references]


def _metadata(data: dict[str, Any], used: set[str]) -> dict[str, Any]:
    return {
        key: value
        for key, value in data.items()
        if key not in used and key not in _RESERVED and isinstance(value, str | int | float | bool)
    }


class Turn(NamedTuple):
    """One converted turn before validation.

    Attributes:
        role: ``system``, ``user``, ``assistant`` or ``tool``.
        content: Its text.
        field: The input location (``conversations[3].value``), for messages.
        calls: Tool calls of an assistant turn.
        trained: False for an assistant turn marked as context only.
    """

    role: str
    content: str
    field: str
    calls: tuple[ToolCall, ...] = ()
    trained: bool = True


def finish_conversation(
    collector: ProblemCollector,
    messages: list[tuple[str, str, str]] | list[Turn],
    data: dict[str, Any],
    used: set[str],
    tools: list[dict[str, Any]] | None = None,
) -> Conversation:
    """Validates content and order, then builds the conversation.

    Args:
        collector: Problems found so far.
        messages: :class:`Turn` values (or ``(role, content, field)`` triples).
        data: The raw record (for checks and metadata).
        used: Keys consumed by the format.
        tools: Tool schemas the record offers.
    """
    checked: list[Message] = []
    roles: list[tuple[str, str, bool]] = []
    for message in messages:
        turn = message if type(message) is Turn else Turn(*message)
        stripped = turn.content.strip()
        if not stripped and not turn.calls:
            if turn.role == "system":
                continue
            if turn.role == "assistant":
                collector.add(turn.field, "empty or whitespace-only response", EMPTY_RESPONSE)
            elif turn.role == "tool":
                collector.add(turn.field, "empty or whitespace-only tool result", EMPTY_PROMPT)
            else:
                collector.add(turn.field, "empty or whitespace-only prompt", EMPTY_PROMPT)
        checked.append(Message(role=turn.role, content=stripped, tool_calls=list(turn.calls), trained=turn.trained))  # type: ignore[arg-type]
        roles.append((turn.role, turn.field, bool(turn.calls)))
    check_order(roles, collector)
    checks = _checks(data, collector)
    references = _references(data, collector)
    collector.raise_if_any()
    return Conversation(
        messages=checked,
        source=collector.source,
        checks=checks,
        metadata=_metadata(data, used | {"tools"}),
        tools=tools or [],
        references=references,
    )


def check_order(roles: list[tuple[str, str, bool]], collector: ProblemCollector) -> None:
    """Reports the first break of the order [system] user assistant (user assistant)*.

    An assistant turn that calls tools is followed by their results (``tool`` turns) and then by
    the assistant again.
    """
    expected = ("user",)
    for index, (role, field, calls) in enumerate(roles):
        if role == "system":
            if index != 0:
                collector.add(
                    field,
                    f"broken conversation order: system message at turn {index + 1} (only the first turn may be one)",
                    BROKEN_ORDER,
                )
                return
            continue
        if role not in expected:
            wanted = " or ".join(expected)
            collector.add(
                field, f"broken conversation order: turn {index + 1} is {role} but {wanted} was expected", BROKEN_ORDER
            )
            return
        if role == "user":
            expected = ("assistant",)
        elif role == "assistant":
            expected = ("tool",) if calls else ("user",)
        else:
            expected = ("tool", "assistant")
    if not any(role != "system" for role, _field, _calls in roles):
        field = roles[0][1] if roles else "messages"
        collector.add(
            field, "broken conversation order: the conversation has no user and assistant turns", BROKEN_ORDER
        )
    elif expected == ("assistant",):
        collector.add(
            roles[-1][1],
            "broken conversation order: the conversation ends with a user turn instead of an assistant answer",
            BROKEN_ORDER,
        )
    elif expected != ("user",):
        collector.add(
            roles[-1][1],
            "broken conversation order: the conversation ends with a tool call or result instead of an assistant answer",
            BROKEN_ORDER,
        )
