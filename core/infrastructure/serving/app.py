"""The OpenAI-compatible FastAPI application: ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``, ``/health``.

Security and limits (all from ``settings.serve``):

* API key: ``Authorization: Bearer <key>``, compared in constant time (``hmac.compare_digest``);
  every route except ``/health`` answers 401 without it.
* Request size: bodies over ``max_request_bytes`` get 413 before any parsing.
* ``max_tokens`` above ``max_tokens_cap`` and prompts over ``max_prompt_tokens`` get 400 with a
  message naming the limit.
* Concurrency: at most ``max_concurrency`` generations at once; further requests get 429 at once
  (no queueing, so a saturated server stays responsive and clients can back off).
* Timeout: a generation running longer than ``request_timeout_s`` is cancelled (stopping criteria
  checked every token) and answered with 504 (or an error event in a stream).
* Model names are matched exactly against the listing; names that look like paths get 400.

Generation runs in a thread pool, so the event loop keeps serving ``/health`` and other requests.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from loguru import logger
from sse_starlette.sse import EventSourceResponse
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.domain.config import Settings
from core.infrastructure.inference.predictor import Completion, Predictor, SamplingOptions
from core.infrastructure.serving.model_pool import InvalidModelNameError, ModelPool, UnknownModelError
from core.infrastructure.serving.schemas import ChatCompletionRequest, CompletionRequest

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


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def create_app(settings: Settings, pool: ModelPool | None = None, api_key: str | None = None) -> FastAPI:
    """Builds the API application.

    Args:
        settings: Settings (``serve`` limits, paths).
        pool: Models to serve (default: runs, registry and base model from ``settings``).
        api_key: Required API key (default: ``settings.serve.api_key``); None disables the check.

    Returns:
        The FastAPI application; ``app.state.pool`` and ``app.state.limiter`` expose the pool and limiter.
    """
    serve = settings.serve
    if api_key is None and serve.api_key is not None:
        api_key = serve.api_key.get_secret_value()
    pool = pool or ModelPool(settings)
    limiter = ConcurrencyLimiter(serve.max_concurrency)
    executor = ThreadPoolExecutor(max_workers=serve.max_concurrency * 2 + 2, thread_name_prefix="api-generate")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="Finetune Studio API", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.pool = pool
    app.state.limiter = limiter
    app.add_middleware(GuardMiddleware, api_key=api_key, max_request_bytes=serve.max_request_bytes)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError) -> JSONResponse:
        return error.response()

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc'][1:]) or 'body'}: {problem['msg']}"
            for problem in error.errors()
        )
        return error_response(400, problems, "invalid_request_error", "invalid_request")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return error_response(error.status_code, str(error.detail), "invalid_request_error")

    async def in_thread(function: Callable[..., Any], *arguments: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(executor, function, *arguments)

    async def predictor_for(name: str) -> Predictor:
        try:
            return await in_thread(pool.predictor, name)
        except InvalidModelNameError as error:
            raise ApiError(400, str(error), code="invalid_model", param="model") from None
        except UnknownModelError:
            raise ApiError(
                404, f"model {name!r} not found; GET /v1/models lists the available models", code="model_not_found"
            ) from None

    def sampling(body: ChatCompletionRequest | CompletionRequest) -> SamplingOptions:
        requested = body.requested_tokens()
        if requested is not None and requested > serve.max_tokens_cap:
            raise ApiError(
                400,
                f"max_tokens={requested} exceeds this server's cap of {serve.max_tokens_cap} (serve.max_tokens_cap)",
                param="max_tokens",
                code="max_tokens_exceeded",
            )
        return SamplingOptions(
            max_new_tokens=requested or serve.max_tokens_cap,
            temperature=body.temperature,
            top_p=body.top_p,
            seed=body.seed,
            stop=body.stop_strings(),
        )

    def check_prompt(prompt_ids: list[int]) -> None:
        if len(prompt_ids) > serve.max_prompt_tokens:
            raise ApiError(
                400,
                f"prompt has {len(prompt_ids)} tokens, more than this server's limit of {serve.max_prompt_tokens} "
                "(serve.max_prompt_tokens)",
                param="messages",
                code="context_length_exceeded",
            )

    def acquire_slot() -> None:
        if not limiter.try_acquire():
            raise ApiError(
                429,
                f"server busy: {serve.max_concurrency} generations already running; retry shortly",
                "rate_limit_error",
                "too_many_requests",
            )

    async def run_with_timeout(function: Callable[[threading.Event], Any]) -> Any:
        """Runs a generation in the pool; the slot is freed when the thread really ends."""
        cancel = threading.Event()
        future = asyncio.get_running_loop().run_in_executor(executor, function, cancel)
        future.add_done_callback(lambda _: limiter.release())
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout=serve.request_timeout_s)
        except TimeoutError:
            cancel.set()
            raise ApiError(
                504,
                f"generation exceeded the request timeout of {serve.request_timeout_s:g} s (serve.request_timeout_s)",
                "timeout_error",
                "timeout",
            ) from None
        except asyncio.CancelledError:
            cancel.set()
            raise

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "active_generations": limiter.active,
            "max_concurrency": limiter.limit,
            "loaded_models": pool.cache.loaded_names(),
        }

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        entries = await in_thread(pool.entries)
        data = [
            {"id": entry.name, "object": "model", "created": entry.created, "owned_by": f"finetune-studio:{entry.kind}"}
            for entry in entries.values()
        ]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest) -> Any:
        options = sampling(body)
        messages = [message.as_template_message() for message in body.messages]
        acquire_slot()
        try:
            predictor = await predictor_for(body.model)
            prompt_ids = await in_thread(predictor.render, messages)
            check_prompt(prompt_ids)
        except BaseException:
            limiter.release()
            raise
        identifier, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return _guarded(
                lambda: _event_stream(
                    predictor, prompt_ids, options, identifier, created, body.model, "chat", include_usage
                )
            )
        completion: Completion = await run_with_timeout(
            lambda cancel: predictor.complete_ids([prompt_ids], options, cancel_event=cancel)[0]
        )
        return {
            "id": identifier,
            "object": "chat.completion",
            "created": created,
            "model": body.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": completion.text},
                    "finish_reason": _openai_reason(completion.finish_reason),
                }
            ],
            "usage": _usage(completion.prompt_tokens, completion.completion_tokens),
        }

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest) -> Any:
        options = sampling(body)
        prompts = body.prompts()
        if body.stream and len(prompts) != 1:
            raise ApiError(400, "streaming supports a single prompt", param="prompt")
        acquire_slot()
        try:
            predictor = await predictor_for(body.model)
            prompt_ids = [await in_thread(predictor.encode, prompt) for prompt in prompts]
            for ids in prompt_ids:
                check_prompt(ids)
        except BaseException:
            limiter.release()
            raise
        identifier, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return _guarded(
                lambda: _event_stream(
                    predictor, prompt_ids[0], options, identifier, created, body.model, "text", include_usage
                )
            )
        results: list[Completion] = await run_with_timeout(
            lambda cancel: predictor.complete_ids(prompt_ids, options, cancel_event=cancel)
        )
        return {
            "id": identifier,
            "object": "text_completion",
            "created": created,
            "model": body.model,
            "choices": [
                {
                    "index": index,
                    "text": result.text,
                    "logprobs": None,
                    "finish_reason": _openai_reason(result.finish_reason),
                }
                for index, result in enumerate(results)
            ],
            "usage": _usage(sum(r.prompt_tokens for r in results), sum(r.completion_tokens for r in results)),
        }

    def _guarded(start: Callable[[], EventSourceResponse]) -> EventSourceResponse:
        try:
            return start()
        except BaseException:
            limiter.release()
            raise

    def _event_stream(
        predictor: Predictor,
        prompt_ids: list[int],
        options: SamplingOptions,
        identifier: str,
        created: int,
        model: str,
        style: str,
        include_usage: bool,
    ) -> EventSourceResponse:
        cancel = threading.Event()
        deadline = time.monotonic() + serve.request_timeout_s
        finished = object()

        def chunk(text: str | None, finish_reason: str | None, first: bool = False) -> str:
            if style == "chat":
                delta: dict[str, Any] = {"role": "assistant", "content": text or ""} if first else {}
                if text and not first:
                    delta = {"content": text}
                choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish_reason}
                kind = "chat.completion.chunk"
            else:
                choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish_reason}
                kind = "text_completion"
            return json.dumps(
                {"id": identifier, "object": kind, "created": created, "model": model, "choices": [choice]}
            )

        stream = predictor.stream_ids(prompt_ids, options, cancel, timeout_s=serve.request_timeout_s)
        released = threading.Event()

        def finish_sync() -> None:
            cancel.set()
            try:
                stream.close()
            except ValueError:  # still being iterated in another thread: wait for generation to end
                stream.join()
            if not released.is_set():
                released.set()
                limiter.release()

        async def cleanup() -> None:
            if not released.is_set():
                await asyncio.get_running_loop().run_in_executor(None, finish_sync)

        async def events() -> AsyncIterator[dict[str, str]]:
            try:
                if style == "chat":
                    yield {"data": chunk("", None, first=True)}
                while True:
                    piece = await in_thread(next, stream, finished)
                    if piece is finished:
                        break
                    if time.monotonic() > deadline:
                        cancel.set()
                        message = f"generation exceeded the request timeout of {serve.request_timeout_s:g} s"
                        yield {"data": json.dumps({"error": {"message": message, "type": "timeout_error"}})}
                        return
                    yield {"data": chunk(piece, None)}
                yield {"data": chunk(None, _openai_reason(stream.finish_reason or "stop"))}
                if include_usage:
                    usage = _usage(stream.prompt_tokens, stream.completion_tokens)
                    kind = "chat.completion.chunk" if style == "chat" else "text_completion"
                    yield {
                        "data": json.dumps(
                            {
                                "id": identifier,
                                "object": kind,
                                "created": created,
                                "model": model,
                                "choices": [],
                                "usage": usage,
                            }
                        )
                    }
                yield {"data": "[DONE]"}
            except Exception as error:  # reported to the client as an error event
                logger.exception("Streaming generation failed")
                yield {"data": json.dumps({"error": {"message": str(error), "type": "server_error"}})}
            finally:
                await cleanup()

        return EventSourceResponse(events(), ping=15, background=BackgroundTask(cleanup))

    return app


def _openai_reason(reason: str) -> str:
    return {"cancelled": "length"}.get(reason, reason)
