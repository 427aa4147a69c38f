"""The OpenAI-compatible FastAPI application: ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``, ``/health``.

Security and limits (all from ``settings.serve``):

* API key: ``Authorization: Bearer <key>``, compared in constant time (``hmac.compare_digest``);
  every route except ``/health`` answers 401 without it.
* Request size: bodies over ``max_request_bytes`` get 413 before any parsing.
* ``max_tokens`` above ``max_tokens_cap`` and prompts over ``max_prompt_tokens`` get 400 with a
  message naming the limit.
* Concurrency: at most ``max_concurrency`` requests generating or waiting to at once; further
  requests get 429 at once (no unbounded queue, so a saturated server stays responsive).
* Timeout: a generation running longer than ``request_timeout_s`` is cancelled (its row stops at
  the next token) and answered with 504 (or an error event in a stream).
* Model names are matched exactly against the listing; names that look like paths get 400.

Generation is batched: every request (streaming or not) becomes rows queued on its model's
:class:`~core.infrastructure.serving.batcher.ModelBatcher`, whose single worker thread decodes
compatible rows together (``max_batch_size``, ``batch_wait_ms``); the event loop only waits for
results, so it keeps serving ``/health`` and other requests. ``app.state.batchers.log`` records
batch sizes (also summarised by ``/health``).
"""

from __future__ import annotations

import asyncio
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
from sse_starlette.sse import EventSourceResponse
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.domain.config import Settings
from core.infrastructure.inference.predictor import Completion, Predictor, SamplingOptions
from core.infrastructure.serving.batcher import Batchers
from core.infrastructure.serving.guard import ApiError, ConcurrencyLimiter, GuardMiddleware, error_response
from core.infrastructure.serving.model_pool import InvalidModelNameError, ModelPool, UnknownModelError
from core.infrastructure.serving.rows import Countdown, Row, RowChannel
from core.infrastructure.serving.schemas import ChatCompletionRequest, CompletionRequest
from core.infrastructure.serving.streaming import IncrementalText, StreamFormat, openai_reason, stream_events, usage


def create_app(settings: Settings, pool: ModelPool | None = None, api_key: str | None = None) -> FastAPI:
    """Builds the API application.

    Args:
        settings: Settings (``serve`` limits, paths).
        pool: Models to serve (default: runs, registry and base model from ``settings``).
        api_key: Required API key (default: ``settings.serve.api_key``); None disables the check.

    Returns:
        The FastAPI application; ``app.state.pool``, ``app.state.limiter`` and ``app.state.batchers``
        expose the pool, the limiter and the batch workers.
    """
    serve = settings.serve
    if api_key is None and serve.api_key is not None:
        api_key = serve.api_key.get_secret_value()
    pool = pool or ModelPool(settings)
    limiter = ConcurrencyLimiter(serve.max_concurrency)
    batchers = Batchers(serve.max_batch_size, serve.batch_wait_ms / 1000.0)
    executor = ThreadPoolExecutor(max_workers=min(32, serve.max_concurrency + 4), thread_name_prefix="api-prepare")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        batchers.close()
        executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="Finetune Studio API", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.pool = pool
    app.state.limiter = limiter
    app.state.batchers = batchers
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

    def submit(
        name: str, predictor: Predictor, prompts: list[list[int]], options: SamplingOptions, streaming: bool
    ) -> tuple[list[RowChannel], threading.Event]:
        """Queues one request's prompts on the model's batcher; the slot is freed when all rows end."""
        loop = asyncio.get_running_loop()
        cancel = threading.Event()
        if not prompts:  # ``"prompt": []``: nothing to generate
            limiter.release()
            return [], cancel
        release = Countdown(len(prompts), limiter.release)
        channels = [RowChannel(loop, streaming, release) for _ in prompts]
        try:
            batchers.for_predictor(predictor, name).submit(
                [Row(ids, options, cancel, channel) for ids, channel in zip(prompts, channels, strict=True)]
            )
        except BaseException:
            limiter.release()
            raise
        return channels, cancel

    async def collect(channels: list[RowChannel], cancel: threading.Event) -> list[Completion]:
        """Waits for every row's completion, cancelling the rows on timeout or disconnect."""
        try:
            return await asyncio.wait_for(
                asyncio.gather(*(channel.completion() for channel in channels)), timeout=serve.request_timeout_s
            )
        except TimeoutError:
            cancel.set()
            raise ApiError(
                504,
                f"generation exceeded the request timeout of {serve.request_timeout_s:g} s (serve.request_timeout_s)",
                "timeout_error",
                "timeout",
            ) from None
        except BaseException:
            cancel.set()
            raise

    def streamed(
        name: str, predictor: Predictor, prompt_ids: list[int], options: SamplingOptions, layout: StreamFormat
    ) -> EventSourceResponse:
        channels, cancel = submit(name, predictor, [prompt_ids], options, streaming=True)
        text = IncrementalText(predictor.tokenizer, options.stop)
        events = stream_events(channels[0], cancel, text, layout, serve.request_timeout_s)
        return EventSourceResponse(events, ping=15, background=BackgroundTask(cancel.set))

    async def prepared(name: str, encode: Callable[[Predictor], list[list[int]]]) -> tuple[Predictor, list[list[int]]]:
        """Takes a slot, loads the model and tokenizes the prompts (the slot is freed on failure)."""
        acquire_slot()
        try:
            predictor = await predictor_for(name)
            prompt_ids = await in_thread(encode, predictor)
            for ids in prompt_ids:
                check_prompt(ids)
        except BaseException:
            limiter.release()
            raise
        return predictor, prompt_ids

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "active_generations": limiter.active,
            "max_concurrency": limiter.limit,
            "max_batch_size": batchers.max_batch_size,
            "batching": batchers.log.summary(),
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
        predictor, prompt_ids = await prepared(body.model, lambda predictor: [predictor.render(messages)])
        identifier, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            layout = StreamFormat(identifier, created, body.model, "chat", include_usage)
            return streamed(body.model, predictor, prompt_ids[0], options, layout)
        channels, cancel = submit(body.model, predictor, prompt_ids, options, streaming=False)
        completion = (await collect(channels, cancel))[0]
        return {
            "id": identifier,
            "object": "chat.completion",
            "created": created,
            "model": body.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": completion.text},
                    "finish_reason": openai_reason(completion.finish_reason),
                }
            ],
            "usage": usage(completion.prompt_tokens, completion.completion_tokens),
        }

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest) -> Any:
        options = sampling(body)
        prompts = body.prompts()
        if body.stream and len(prompts) != 1:
            raise ApiError(400, "streaming supports a single prompt", param="prompt")
        predictor, prompt_ids = await prepared(
            body.model, lambda predictor: [predictor.encode(prompt) for prompt in prompts]
        )
        identifier, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            layout = StreamFormat(identifier, created, body.model, "text", include_usage)
            return streamed(body.model, predictor, prompt_ids[0], options, layout)
        channels, cancel = submit(body.model, predictor, prompt_ids, options, streaming=False)
        results = await collect(channels, cancel)
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
                    "finish_reason": openai_reason(result.finish_reason),
                }
                for index, result in enumerate(results)
            ],
            "usage": usage(sum(r.prompt_tokens for r in results), sum(r.completion_tokens for r in results)),
        }

    return app
