"""The API's OpenAPI schema (``GET /openapi.json``, behind the API key): response bodies and limits.

FastAPI derives the request bodies from :mod:`~core.infrastructure.serving.schemas`; this module
adds what it cannot know: the response bodies (:class:`ChatCompletion`, :class:`TextCompletion`,
the OpenAI error body of every 4xx/5xx), the bearer-token security scheme when a key is
configured, this server's ``max_tokens`` cap (``maximum``) and prompt count limit (``maxItems``). Validation errors are
answered with 400 (not FastAPI's 422), so the 422 entries are dropped.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from core.infrastructure.serving.schemas import ChatCompletionRequest, CompletionRequest

ERROR_STATUSES = {
    400: "Invalid request (wrong type, out of range, unknown field value, prompt too long)",
    401: "Missing or wrong API key",
    404: "Unknown model",
    408: "Request body not received in time",
    413: "Request body too large",
    429: "Server busy: the waiting queue is full or no slot freed in time (see Retry-After)",
    500: "Internal error",
    504: "Generation exceeded the request timeout",
}

# One server-sent event of a ``"stream": true`` response.
STREAM_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {
            "type": "string",
            "description": 'A JSON chunk (chat.completion.chunk or text_completion), an {"error": ...} object, '
            "or [DONE] at the end",
        }
    },
}


class ErrorDetail(BaseModel):
    """The ``error`` object of an OpenAI error body."""

    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(BaseModel):
    """``{"error": {"message", "type", "param", "code"}}``."""

    error: ErrorDetail


class Usage(BaseModel):
    """Token counts of a completion."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    """The generated message of a chat choice."""

    role: Literal["assistant"]
    content: str


class ChatChoice(BaseModel):
    """One choice of a chat completion."""

    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]


class ChatCompletion(BaseModel):
    """``POST /v1/chat/completions`` without streaming."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class TextChoice(BaseModel):
    """One choice (one prompt) of a text completion."""

    index: int
    text: str
    logprobs: None
    finish_reason: Literal["stop", "length"]


class TextCompletion(BaseModel):
    """``POST /v1/completions`` without streaming."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[TextChoice]
    usage: Usage


class ModelCard(BaseModel):
    """One entry of ``GET /v1/models``."""

    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    """``GET /v1/models``."""

    object: Literal["list"]
    data: list[ModelCard]


def documented_responses(success: type[BaseModel] | None, *statuses: int, streams: bool = False) -> dict[int, Any]:
    """The ``responses`` argument of a route: its success body and its OpenAI error bodies.

    Args:
        success: Model of the 200 body (None: undocumented JSON).
        *statuses: Error statuses the route can answer.
        streams: Whether 200 can also be a ``text/event-stream`` (``"stream": true``).

    Returns:
        ``{status: {"model": ..., "description": ...}}``.
    """
    responses: dict[int, Any] = {}
    if success is not None:
        responses[200] = {"model": success, "description": "Successful response"}
        if streams:
            responses[200]["content"] = {"text/event-stream": {"schema": STREAM_EVENT}}
    for status in statuses:
        responses[status] = {"model": ErrorBody, "description": ERROR_STATUSES[status]}
    return responses


def _advertise_limits(schema: dict[str, Any], max_tokens_cap: int, max_prompts: int) -> None:
    """Adds the server's ``max_tokens`` cap and prompt count limit to the request schemas."""
    components = schema["components"]["schemas"]
    for name in ("ChatCompletionRequest", "CompletionRequest"):
        properties = components.get(name, {}).get("properties", {})
        for field in ("max_tokens", "max_completion_tokens"):
            for branch in properties.get(field, {}).get("anyOf", []):
                if branch.get("type") == "integer":
                    branch["maximum"] = max_tokens_cap
    # FastAPI's OpenAPI model stores bounds as floats (the seed's 2**63 - 1 became 2.0**63): the
    # request models' own JSON schemas carry them exact.
    for model in (ChatCompletionRequest, CompletionRequest):
        exact = model.model_json_schema()["properties"]
        for field, property_schema in components.get(model.__name__, {}).get("properties", {}).items():
            branches = property_schema.get("anyOf", [property_schema])
            exact_branches = exact.get(field, {}).get("anyOf", [exact.get(field, {})])
            for branch, exact_branch in zip(branches, exact_branches, strict=False):
                for bound in ("minimum", "maximum"):
                    if branch.get("type") == "integer" and bound in exact_branch:
                        branch[bound] = exact_branch[bound]
    prompt = components.get("CompletionRequest", {}).get("properties", {}).get("prompt", {})
    for branch in prompt.get("anyOf", []):
        if branch.get("type") == "array":
            branch["maxItems"] = max_prompts


def install_openapi(app: FastAPI, max_tokens_cap: int, max_prompts: int, requires_key: bool) -> None:
    """Replaces ``app.openapi`` with the completed schema (built once, on the first request).

    Args:
        app: The application.
        max_tokens_cap: ``serve.max_tokens_cap``, advertised as the ``maximum`` of ``max_tokens``.
        max_prompts: Most prompts one request may have, advertised as ``maxItems`` of ``prompt``.
        requires_key: Whether the routes (all but ``/health``) need ``Authorization: Bearer <key>``.
    """

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=__doc__, routes=app.routes)
        components = schema.setdefault("components", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            components.get("schemas", {}).pop(unused, None)
        if requires_key:
            components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            schema["security"] = [{"bearer": []}]
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
                if path == "/health":
                    operation["security"] = []
        _advertise_limits(schema, max_tokens_cap, max_prompts)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
