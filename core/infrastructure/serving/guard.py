"""Errors in the OpenAI format, and the guard in front of every route: API key, body size, body read timeout."""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Mapping

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PUBLIC_PATHS = frozenset({"/health"})
# Headers that go with an error status: when to retry, how to authenticate, that the connection ends.
STATUS_HEADERS = {429: {"Retry-After": "1"}, 401: {"WWW-Authenticate": "Bearer"}, 408: {"Connection": "close"}}


class ApiError(Exception):
    """An error answered in the OpenAI error format.

    Args:
        status: HTTP status.
        message: Human-readable message.
        error_type: OpenAI error type.
        code: Machine-readable code.
        param: The offending parameter.
    """

    def __init__(
        self,
        status: int,
        message: str,
        error_type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.error_type, self.code, self.param = status, message, error_type, code, param

    def response(self) -> JSONResponse:
        """The JSON response."""
        return error_response(self.status, self.message, self.error_type, self.code, self.param)


def error_response(
    status: int,
    message: str,
    error_type: str,
    code: str | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """An OpenAI-style error body: ``{"error": {"message", "type", "param", "code"}}``.

    Args:
        status: HTTP status.
        message: Message.
        error_type: Error type.
        code: Code.
        param: Parameter.
        headers: Extra headers (such as ``Allow`` of a 405), besides those of :data:`STATUS_HEADERS`.

    Returns:
        The response.
    """
    headers = {**STATUS_HEADERS.get(status, {}), **(headers or {})}
    # A message may quote client input; lone surrogates (``"\\ud800"``) cannot be encoded as UTF-8.
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    body = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


class GuardMiddleware:
    """API key check, request size limit and body read timeout, before routing (pure ASGI, streams untouched).

    The body is read in full before the route runs: a body over ``max_request_bytes`` gets 413, and
    a client that has not sent all of it within ``body_timeout_s`` (a ``Content-Length`` larger than
    what arrives) gets 408 and the connection is closed.

    Args:
        app: The wrapped application.
        api_key: Required key, or None to allow every client (loopback only).
        max_request_bytes: Largest accepted body.
        body_timeout_s: Longest time to receive the whole body.
    """

    def __init__(self, app: ASGIApp, api_key: str | None, max_request_bytes: int, body_timeout_s: float) -> None:
        self.app = app
        self.api_key = api_key
        self.max_request_bytes = max_request_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Checks the key and the body size, then forwards the buffered request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        if scope["path"] not in PUBLIC_PATHS and self.api_key is not None:
            supplied = headers.get("authorization", "")
            token = supplied[7:].strip() if supplied.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(token.encode("utf-8"), self.api_key.encode("utf-8")):
                await error_response(401, "invalid or missing API key", "authentication_error", "invalid_api_key")(
                    scope, receive, send
                )
                return
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_request_bytes:
            await self._too_large(scope, receive, send)
            return
        body = bytearray()
        more = True
        deadline = time.monotonic() + self.body_timeout_s
        while more:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                await error_response(
                    408,
                    f"request body not received within {self.body_timeout_s:g} s (serve.body_timeout_s)",
                    "invalid_request_error",
                    "request_timeout",
                )(scope, receive, send)
                return
            if message["type"] == "http.disconnect":
                return
            body.extend(message.get("body", b""))
            more = message.get("more_body", False)
            if len(body) > self.max_request_bytes:
                await self._too_large(scope, receive, send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await error_response(
            413,
            f"request body exceeds {self.max_request_bytes} bytes (serve.max_request_bytes)",
            "invalid_request_error",
            "request_too_large",
        )(scope, receive, send)
