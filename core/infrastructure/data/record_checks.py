"""Checks shared by every format's converter: field types, content, turn order, checks and metadata.

A converter collects every problem of a record in a :class:`ProblemCollector` and ends with
:func:`finish_conversation`, which validates content and the order of turns
``[system] user assistant (user assistant)*`` -- where an assistant turn that calls tools is
followed by one or more ``tool`` results and then the assistant again.
"""

from __future__ import annotations

from typing import Any

from core.domain.records import Conversation, Message
from core.infrastructure.data.problems import (
    BROKEN_ORDER,
    EMPTY_PROMPT,
    EMPTY_RESPONSE,
    MISSING_FIELD,
    WRONG_TYPE,
    Problem,
    RecordProblems,
)

_RESERVED = {"checks", "split"}


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


def _metadata(data: dict[str, Any], used: set[str]) -> dict[str, Any]:
    return {
        key: value
        for key, value in data.items()
        if key not in used and key not in _RESERVED and isinstance(value, str | int | float | bool)
    }


def finish_conversation(
    collector: ProblemCollector,
    messages: list[tuple[str, str, str]],
    data: dict[str, Any],
    used: set[str],
) -> Conversation:
    """Validates content and order, then builds the conversation.

    Args:
        collector: Problems found so far.
        messages: ``(role, content, field)`` triples, field naming the input location.
        data: The raw record (for checks and metadata).
        used: Keys consumed by the format.
    """
    checked: list[Message] = []
    roles: list[tuple[str, str]] = []
    for role, content, field in messages:
        stripped = content.strip()
        if not stripped:
            if role == "system":
                continue
            if role == "assistant":
                collector.add(field, "empty or whitespace-only response", EMPTY_RESPONSE)
            else:
                collector.add(field, "empty or whitespace-only prompt", EMPTY_PROMPT)
        checked.append(Message(role=role, content=stripped))  # type: ignore[arg-type]
        roles.append((role, field))
    check_order(roles, collector)
    checks = _checks(data, collector)
    collector.raise_if_any()
    return Conversation(messages=checked, source=collector.source, checks=checks, metadata=_metadata(data, used))


def check_order(roles: list[tuple[str, str]], collector: ProblemCollector) -> None:
    """Reports the first break of the order [system] user assistant (user assistant)*."""
    expected = "user"
    for index, (role, field) in enumerate(roles):
        if role == "system":
            if index != 0:
                collector.add(
                    field,
                    f"broken conversation order: system message at turn {index + 1} (only the first turn may be one)",
                    BROKEN_ORDER,
                )
                return
            continue
        if role != expected:
            collector.add(
                field,
                f"broken conversation order: turn {index + 1} is {role} but {expected} was expected",
                BROKEN_ORDER,
            )
            return
        expected = "assistant" if role == "user" else "user"
    if not any(role != "system" for role, _field in roles):
        field = roles[0][1] if roles else "messages"
        collector.add(
            field, "broken conversation order: the conversation has no user and assistant turns", BROKEN_ORDER
        )
    elif expected != "user":
        collector.add(
            roles[-1][1],
            "broken conversation order: the conversation ends with a user turn instead of an assistant answer",
            BROKEN_ORDER,
        )
