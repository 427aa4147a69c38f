"""The OpenAI-compatible FastAPI application: ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``, ``/health``.

Security and limits (all from ``settings.serve``):

* API key: ``Authorization: Bearer <key>``, compared in constant time (``hmac.compare_digest``);
  every route except ``/health`` (``/openapi.json`` included) answers 401 without it.
* Request size: bodies over ``max_request_bytes`` get 413 before any parsing; a body that does not
  arrive within ``body_timeout_s`` gets 408.
* Every client error is a 4xx with an OpenAI error body (validation errors are 400, not 422), and
  an unexpected failure a 500 with the same body.
* ``max_tokens`` above ``max_tokens_cap`` and prompts over ``max_prompt_tokens`` get 400 with a
  message naming the limit.
* Admission: ``max_concurrency`` prompts generate at once (each prompt of a multi-prompt request
  counts); up to ``max_queue`` more wait first come, first served, each request at most
  ``queue_timeout_s`` for its first slot. Only beyond that a request gets 429 (``Retry-After``).
* Timeout: a generation running longer than ``request_timeout_s`` is cancelled (its row stops at
  the next token) and answered with 504 (or an error event in a stream).
* Model names are matched exactly against the listing; names that look like paths get 400.

Generation is batched: every admitted prompt (streaming or not) becomes a row queued on its
model's :class:`~core.infrastructure.serving.batcher.ModelBatcher`, whose single worker thread
decodes compatible rows together (``max_batch_size``, ``batch_wait_ms``); the event loop only
waits for results, so it keeps serving ``/health`` and other requests. ``app.state.batchers.log``
records batch sizes (also summarised by ``/health``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from loguru import logger
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.domain.config import Settings
from core.infrastructure.serving.batcher import Batchers
from core.infrastructure.serving.generation import Generations
from core.infrastructure.serving.guard import ApiError, GuardMiddleware, error_response
from core.infrastructure.serving.model_pool import ModelPool
from core.infrastructure.serving.openapi import install_openapi
from core.infrastructure.serving.routes import GENERATION_ERRORS, ServingState, router, start_tokens

__all__ = ["GENERATION_ERRORS", "create_app", "start_tokens", "validation_problems"]


def validation_problems(error: RequestValidationError) -> list[tuple[str, str]]:
    """Each invalid field (dotted path) with its problem; the input itself is not echoed.

    Union members that pydantic names in the location (``list[ContentPart]``) are left out, and a
    problem reported once per member is listed once.

    Args:
        error: FastAPI's validation error.

    Returns:
        ``[(field path, problem), ...]``, in order.
    """
    problems: list[tuple[str, str]] = []
    for problem in error.errors():
        location = problem["loc"][1:] if problem["loc"][:1] == ("body",) else problem["loc"]
        if problem["type"] == "json_invalid":
            entry = ("body", f"not valid JSON (at character {location[0] if location else 0})")
        else:
            field = ".".join(str(part) for part in location if "[" not in str(part)) or "body"
            entry = (field, problem["msg"])
        if entry not in problems:
            problems.append(entry)
    return problems


async def _api_error(request: Request, error: ApiError) -> JSONResponse:
    return error.response()


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    problems = validation_problems(error)
    message = "; ".join(f"{field}: {problem}" for field, problem in problems)
    return error_response(400, message, "invalid_request_error", "invalid_request", param=problems[0][0])


async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    return error_response(error.status_code, str(error.detail), "invalid_request_error", headers=error.headers)


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    logger.opt(exception=error).error("Unexpected error answering {} {}", request.method, request.url.path)
    return error_response(500, "internal server error", "server_error", "internal_error")


def create_app(settings: Settings, pool: ModelPool | None = None, api_key: str | None = None) -> FastAPI:
    """Builds the API application: the shared state, the guard, the error handlers and the routes.

    Args:
        settings: Settings (``serve`` limits, paths).
        pool: Models to serve (default: runs, registry and base model from ``settings``).
        api_key: Required API key (default: ``settings.serve.api_key``); None disables the check.

    Returns:
        The FastAPI application; ``app.state.pool``, ``app.state.admission``, ``app.state.generations``
        and ``app.state.batchers`` expose the pool, the admission queue, the runner and the batch workers.
    """
    serve = settings.serve
    if api_key is None and serve.api_key is not None:
        api_key = serve.api_key.get_secret_value()
    batchers = Batchers(serve.max_batch_size, serve.batch_wait_ms / 1000.0)
    state = ServingState(
        serve=serve,
        pool=pool or ModelPool(settings),
        batchers=batchers,
        generations=Generations(serve, batchers),
        executor=ThreadPoolExecutor(max_workers=min(32, serve.max_concurrency + 4), thread_name_prefix="api-prepare"),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        state.batchers.close()
        state.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="Finetune Studio API", docs_url=None, redoc_url=None, lifespan=lifespan)
    install_openapi(app, serve.max_tokens_cap, state.admission.capacity, requires_key=api_key is not None)
    app.state.serving = state
    app.state.pool, app.state.admission = state.pool, state.admission
    app.state.generations, app.state.batchers = state.generations, state.batchers
    app.add_middleware(
        GuardMiddleware, api_key=api_key, max_request_bytes=serve.max_request_bytes, body_timeout_s=serve.body_timeout_s
    )
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    app.include_router(router)
    return app
