"""Errors in the OpenAI format, the API key and body size guard, and the concurrency limiter."""

from __future__ import annotations

import hmac
import threading

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PUBLIC_PATHS = frozenset({"/health"})


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
    status: int, message: str, error_type: str, code: str | None = None, param: str | None = None
) -> JSONResponse:
    """An OpenAI-style error body: ``{"error": {"message", "type", "param", "code"}}``.

    Args:
        status: HTTP status.
        message: Message.
        error_type: Error type.
        code: Code.
        param: Parameter.

    Returns:
        The response.
    """
    headers = {"Retry-After": "1"} if status == 429 else ({"WWW-Authenticate": "Bearer"} if status == 401 else None)
    body = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


class GuardMiddleware:
    """Request size limit and API key check, before routing (pure ASGI, so streams are untouched).

    Args:
        app: The wrapped application.
        api_key: Required key, or None to allow every client (loopback only).
        max_request_bytes: Largest accepted body.
    """

    def __init__(self, app: ASGIApp, api_key: str | None, max_request_bytes: int) -> None:
        self.app = app
        self.api_key = api_key
        self.max_request_bytes = max_request_bytes

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
        while more:
            message = await receive()
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


class ConcurrencyLimiter:
    """Counts running generations; refuses (instead of queueing) beyond the limit.

    Args:
        limit: Generations allowed at once.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self._lock = threading.Lock()

    def try_acquire(self) -> bool:
        """Takes a slot if one is free."""
        with self._lock:
            if self.active >= self.limit:
                return False
            self.active += 1
            return True

    def release(self) -> None:
        """Frees a slot."""
        with self._lock:
            self.active = max(0, self.active - 1)
