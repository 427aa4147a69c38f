r"""Conversations as chat-template messages, tool calls included, for templates with and without tool support.

A template that handles tools (its source mentions ``tool_calls``, as Qwen2.5, Llama 3.1, Mistral
and Hermes templates do) gets the calls as structured ``tool_calls`` and the results as ``tool``
turns, and the offered schemas through ``tools=``. Any other template (SmolLM2's, for one) gets the
documented fallback, the Hermes convention in plain text that every model can learn:

* an assistant call: ``<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`` after its text;
* tool results: a user turn ``<tool_response>\n...\n</tool_response>`` (consecutive results in one);
* the offered tools: appended to the system prompt inside ``<tools>...</tools>``.

Either way the assistant turns, calls included, are what is trained; tool results never are.
"""

from __future__ import annotations

import json
from typing import Any

from core.domain.records import Message

TOOLS_PREAMBLE = (
    'You can call these tools. To call one, answer with <tool_call>{"name": ..., "arguments": ...}</tool_call>.'
)


def supports_tools(chat_template: str | None) -> bool:
    """True when a chat template renders structured tool calls itself.

    Args:
        chat_template: The template's source.

    Returns:
        Whether it mentions ``tool_calls``.
    """
    return bool(chat_template) and "tool_calls" in chat_template


def _call_text(message: Message) -> str:
    if not message.tool_calls:  # most answers: no join to build
        return message.content
    calls = "\n".join(
        f"<tool_call>\n{json.dumps({'name': call.name, 'arguments': call.arguments}, ensure_ascii=False)}\n</tool_call>"
        for call in message.tool_calls
    )
    return "\n".join(part for part in (message.content, calls) if part)


def template_messages(
    messages: list[Message], chat_template: str | None, tools: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The messages to give ``apply_chat_template``.

    Args:
        messages: A conversation's messages.
        chat_template: The template they will be rendered with.
        tools: Tool schemas the conversation offers (rendered into the system prompt by the fallback).

    Returns:
        Role/content mappings (with ``tool_calls`` for a template that supports them), one per
        message except that consecutive tool results share one turn in the fallback.
    """
    if supports_tools(chat_template):
        rendered = []
        for message in messages:
            entry: dict[str, Any] = {"role": message.role, "content": message.content}
            if message.tool_calls:
                entry["tool_calls"] = [
                    {"type": "function", "function": {"name": call.name, "arguments": call.arguments}}
                    for call in message.tool_calls
                ]
            rendered.append(entry)
        return rendered
    rendered = []
    for message in messages:
        if message.role == "tool":
            result = f"<tool_response>\n{message.content}\n</tool_response>"
            if rendered and rendered[-1].get("tool_results"):
                rendered[-1]["content"] += "\n" + result
            else:
                rendered.append({"role": "user", "content": result, "tool_results": True})
        elif message.role == "assistant":
            rendered.append({"role": "assistant", "content": _call_text(message)})
        else:
            rendered.append({"role": message.role, "content": message.content})
    if tools:
        listing = f"{TOOLS_PREAMBLE}\n<tools>\n{json.dumps(tools, ensure_ascii=False)}\n</tools>"
        if rendered and rendered[0]["role"] == "system":
            rendered[0]["content"] = f"{rendered[0]['content']}\n\n{listing}"
        else:
            rendered.insert(0, {"role": "system", "content": listing})
    if not any("tool_results" in entry for entry in rendered):
        return rendered
    return [{key: value for key, value in entry.items() if key != "tool_results"} for entry in rendered]


def template_tools(chat_template: str | None, tools: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The ``tools=`` argument of ``apply_chat_template``: the schemas for a tool-aware template, else None."""
    if not tools or not supports_tools(chat_template):
        return None
    return [{"type": "function", "function": tool} for tool in tools]
