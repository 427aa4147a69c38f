"""Tool calling in the input: OpenAI ``tool_calls``/``tool`` turns and ShareGPT ``function_call``/``observation``.

* OpenAI: an assistant message's ``tool_calls`` (``[{"type": "function", "function": {"name",
  "arguments": "<JSON text>"}}]``), results as ``{"role": "tool", "content": ...}`` (``function``,
  the legacy name, too), offered tools in the record's ``tools``.
* ShareGPT as LLaMA-Factory and glaive-function-calling write it: a ``function_call`` turn whose
  value is the JSON call ``{"name", "arguments"}`` (or a list of them), an ``observation`` turn
  with the result, and a ``tools`` field holding the tool schemas as JSON text.

Calls become :class:`~core.domain.records.ToolCall` on the assistant turn (trained), results
``tool`` turns (never trained). How they are rendered is
:mod:`core.infrastructure.data.tool_rendering`'s concern.
"""

from __future__ import annotations

import json
from typing import Any

from core.domain.records import ToolCall
from core.infrastructure.data.problems import WRONG_TYPE
from core.infrastructure.data.record_checks import ProblemCollector, type_name

CALL_ROLES = {"function_call", "tool_call", "tool_calls"}
"""ShareGPT roles whose value is a call the assistant makes."""

RESULT_ROLES = {"observation", "tool", "function", "ipython", "tool_response"}
"""Roles (ShareGPT and OpenAI) of a tool's result."""


def _call(value: Any) -> ToolCall | None:
    if not isinstance(value, dict):
        return None
    function = value.get("function") if isinstance(value.get("function"), dict) else value
    name = function.get("name")
    if not isinstance(name, str) or not name.strip():
        return None
    arguments = function.get("arguments", function.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            parsed = json.loads(arguments)
        except json.JSONDecodeError:
            parsed = arguments
        arguments = parsed if isinstance(parsed, dict) else arguments
    if not isinstance(arguments, dict | str):
        return None
    return ToolCall(name=name.strip(), arguments=arguments)


def parse_calls(value: Any, collector: ProblemCollector, field: str) -> list[ToolCall]:
    """Reads the calls of a ShareGPT ``function_call`` value or an OpenAI ``tool_calls`` list.

    Args:
        value: JSON text or decoded JSON: one call or a list of calls.
        collector: Where problems go.
        field: The input location, for messages.

    Returns:
        The calls (empty after a problem was recorded).
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            collector.add(
                field, f"wrong type: a tool call must be JSON with name and arguments ({error.msg})", WRONG_TYPE
            )
            return []
    items = value if isinstance(value, list) else [value]
    calls = [_call(item) for item in items]
    if not items or any(call is None for call in calls):
        collector.add(
            field,
            f"wrong type: expected tool calls with a name and arguments, got {type_name(value)}",
            WRONG_TYPE,
        )
        return []
    return calls  # type: ignore[return-value]


def tools_of(data: dict[str, Any], collector: ProblemCollector) -> list[dict[str, Any]]:
    """The tool schemas a record offers (``tools``, a list or its JSON text), as plain function schemas.

    Args:
        data: The raw record.
        collector: Where problems go.

    Returns:
        The schemas (``{"name", "description", "parameters"}``); empty when there are none.
    """
    tools = data.get("tools")
    if tools in (None, "", []):
        return []
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except json.JSONDecodeError as error:
            collector.add("tools", f"wrong type: tools must be a JSON list of tool schemas ({error.msg})", WRONG_TYPE)
            return []
    tools = tools if isinstance(tools, list) else [tools]
    schemas = []
    for index, tool in enumerate(tools):
        schema = tool.get("function") if isinstance(tool, dict) and isinstance(tool.get("function"), dict) else tool
        if not isinstance(schema, dict) or not isinstance(schema.get("name"), str):
            collector.add(f"tools[{index}]", "wrong type: expected a tool schema with a name", WRONG_TYPE)
            continue
        schemas.append(schema)
    return schemas
