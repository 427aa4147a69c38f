"""OpenAssistant (oasst1/oasst2) message trees rebuilt into conversations.

The input is flat: one row per message with ``message_id``, ``parent_id`` (null for the root
prompt), ``role`` (``prompter`` or ``assistant``), ``text``, optional ``rank`` (0 is best among
siblings), ``lang`` and ``deleted``. Each tree becomes one conversation: starting at the root,
the best-ranked reply is followed at every turn (lowest rank; unranked replies come last, ties
keep file order). A trailing prompter turn without an answer is dropped.

Counting: each tree is one record (kept, or skipped by ``language_filter`` / ``no_answer``);
each invalid row (missing field, unknown role, unknown parent, ...) is one skipped record too.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from core.domain.records import Conversation, Message
from core.infrastructure.data.problems import (
    BROKEN_ORDER,
    EMPTY_PROMPT,
    EMPTY_RESPONSE,
    LANGUAGE_FILTER,
    MISSING_FIELD,
    UNKNOWN_ROLE,
    WRONG_TYPE,
    Outcome,
    Problem,
)
from core.infrastructure.data.readers import RawRecord

NO_ANSWER = "no_answer"
"""Skip reason of a tree whose root prompt has no assistant reply."""

_ROLES = {"prompter": "user", "assistant": "assistant"}


def _row_problems(data: dict[str, Any], source: str) -> list[Problem]:
    problems = []
    for key in ("message_id", "text", "role"):
        if key not in data or data[key] is None:
            problems.append(Problem(source, key, "missing field", MISSING_FIELD))
        elif not isinstance(data[key], str):
            problems.append(
                Problem(source, key, f"wrong type: expected a string, got {type(data[key]).__name__}", WRONG_TYPE)
            )
    if "parent_id" not in data:
        problems.append(Problem(source, "parent_id", "missing field", MISSING_FIELD))
    elif data["parent_id"] is not None and not isinstance(data["parent_id"], str):
        problems.append(Problem(source, "parent_id", "wrong type: expected a string or null", WRONG_TYPE))
    rank = data.get("rank")
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int | float)):
        problems.append(Problem(source, "rank", "wrong type: expected a number or null", WRONG_TYPE))
    if problems:
        return problems
    if data["role"] not in _ROLES:
        problems.append(
            Problem(source, "role", f"unknown role {data['role']!r} (expected prompter or assistant)", UNKNOWN_ROLE)
        )
    if not data["text"].strip():
        if data["role"] == "assistant":
            problems.append(Problem(source, "text", "empty or whitespace-only response", EMPTY_RESPONSE))
        else:
            problems.append(Problem(source, "text", "empty or whitespace-only prompt", EMPTY_PROMPT))
    return problems


def _article(role: str) -> str:
    return f"an {role}" if role[:1] in "aeiou" else f"a {role}"


def _rank_key(item: tuple[int, dict[str, Any], str]) -> tuple[bool, float, int]:
    order, data, _source = item
    rank = data.get("rank")
    return (rank is None, float(rank) if rank is not None else 0.0, order)


def convert_oasst(records: list[RawRecord], language: str | None) -> list[Outcome]:
    """Rebuilds conversations from OpenAssistant message rows.

    Args:
        records: Raw rows (already read; rows with read problems are passed through as skipped).
        language: Keep only trees whose root prompt has this ``lang`` (None keeps all).

    Returns:
        One outcome per tree and one per invalid row.
    """
    outcomes: list[Outcome] = []
    valid: list[tuple[int, dict[str, Any], str]] = []
    for order, record in enumerate(records):
        if record.problems:
            outcomes.append(Outcome(record.source, problems=record.problems, reason=record.problems[0].reason))
            continue
        if record.data.get("deleted") is True:
            continue
        problems = _row_problems(record.data, record.source)
        if problems:
            outcomes.append(Outcome(record.source, problems=problems, reason=problems[0].reason))
        else:
            valid.append((order, record.data, record.source))
    known = {data["message_id"] for _order, data, _source in valid}
    children: dict[str, list[tuple[int, dict[str, Any], str]]] = defaultdict(list)
    roots = []
    for item in valid:
        _order, data, source = item
        parent = data["parent_id"]
        if parent is None:
            if data["role"] != "prompter":
                problem = Problem(
                    source,
                    "role",
                    "broken conversation order: a message tree must start with a prompter message",
                    BROKEN_ORDER,
                )
                outcomes.append(Outcome(source, problems=[problem], reason=BROKEN_ORDER))
            else:
                roots.append(item)
        elif parent not in known:
            problem = Problem(
                source, "parent_id", f"broken conversation order: unknown parent message {parent!r}", BROKEN_ORDER
            )
            outcomes.append(Outcome(source, problems=[problem], reason=BROKEN_ORDER))
        else:
            children[parent].append(item)
    for _order, data, _source in valid:
        for _child_order, child, child_source in children.get(data["message_id"], []):
            if child["role"] == data["role"]:
                problem = Problem(
                    child_source,
                    "role",
                    f"broken conversation order: {_article(child['role'])} message replies to {_article(data['role'])} message",
                    BROKEN_ORDER,
                )
                outcomes.append(Outcome(child_source, problems=[problem], reason=BROKEN_ORDER))
    for root in roots:
        outcomes.append(_thread(root, children, language))
    return outcomes


def _thread(
    root: tuple[int, dict[str, Any], str],
    children: dict[str, list[tuple[int, dict[str, Any], str]]],
    language: str | None,
) -> Outcome:
    _order, root_data, source = root
    if language is not None and root_data.get("lang") not in (None, language):
        return Outcome(source, reason=LANGUAGE_FILTER)
    path = [root_data]
    current = root_data
    while True:
        replies = [item for item in children.get(current["message_id"], []) if item[1]["role"] != current["role"]]
        if not replies:
            break
        current = min(replies, key=_rank_key)[1]
        path.append(current)
    while path and path[-1]["role"] != "assistant":
        path.pop()
    if not path:
        return Outcome(source, reason=NO_ANSWER)
    messages = [Message(role=_ROLES[data["role"]], content=data["text"].strip()) for data in path]  # type: ignore[arg-type]
    metadata = {key: root_data[key] for key in ("lang", "message_tree_id") if isinstance(root_data.get(key), str)}
    return Outcome(source, conversation=Conversation(messages=messages, source=source, metadata=metadata))
