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

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from jinja2 import TemplateError
from loguru import logger
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.domain.config import Settings
from core.infrastructure.inference.predictor import Predictor, SamplingOptions
from core.infrastructure.serving.batcher import Batchers
from core.infrastructure.serving.generation import Generations
from core.infrastructure.serving.guard import ApiError, GuardMiddleware, error_response
from core.infrastructure.serving.model_pool import InvalidModelNameError, ModelPool, UnknownModelError
from core.infrastructure.serving.openapi import (
    ChatCompletion,
    ModelList,
    TextCompletion,
    documented_responses,
    install_openapi,
)
from core.infrastructure.serving.schemas import ChatCompletionRequest, CompletionRequest
from core.infrastructure.serving.streaming import StreamFormat, openai_reason, usage

GENERATION_ERRORS = (400, 401, 404, 408, 413, 429, 500, 504)


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


def start_tokens(predictor: Predictor, ids: list[int]) -> list[int]:
    """A prompt's ids, or the start of a document (BOS, else EOS) for an empty prompt, as OpenAI does.

    Args:
        predictor: The model.
        ids: The encoded prompt.

    Returns:
        Non-empty prompt ids.
    """
    if ids:
        return ids
    tokenizer = predictor.tokenizer
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    return [int(start)]


def create_app(settings: Settings, pool: ModelPool | None = None, api_key: str | None = None) -> FastAPI:
    """Builds the API application.

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
    pool = pool or ModelPool(settings)
    batchers = Batchers(serve.max_batch_size, serve.batch_wait_ms / 1000.0)
    generations = Generations(serve, batchers)
    admission = generations.admission
    executor = ThreadPoolExecutor(max_workers=min(32, serve.max_concurrency + 4), thread_name_prefix="api-prepare")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        batchers.close()
        executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="Finetune Studio API", docs_url=None, redoc_url=None, lifespan=lifespan)
    install_openapi(app, serve.max_tokens_cap, admission.capacity, requires_key=api_key is not None)
    app.state.pool = pool
    app.state.admission = admission
    app.state.generations = generations
    app.state.batchers = batchers
    app.add_middleware(
        GuardMiddleware,
        api_key=api_key,
        max_request_bytes=serve.max_request_bytes,
        body_timeout_s=serve.body_timeout_s,
    )

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError) -> JSONResponse:
        return error.response()

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = validation_problems(error)
        message = "; ".join(f"{field}: {problem}" for field, problem in problems)
        return error_response(400, message, "invalid_request_error", "invalid_request", param=problems[0][0])

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return error_response(error.status_code, str(error.detail), "invalid_request_error", headers=error.headers)

    @app.exception_handler(Exception)
    async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
        logger.opt(exception=error).error("Unexpected error answering {} {}", request.method, request.url.path)
        return error_response(500, "internal server error", "server_error", "internal_error")

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

    def check_prompt(prompt_ids: list[int], param: str) -> None:
        if len(prompt_ids) > serve.max_prompt_tokens:
            raise ApiError(
                400,
                f"prompt has {len(prompt_ids)} tokens, more than this server's limit of {serve.max_prompt_tokens} "
                "(serve.max_prompt_tokens)",
                param=param,
                code="context_length_exceeded",
            )

    async def prepared(
        name: str, encode: Callable[[Predictor], list[list[int]]], param: str
    ) -> tuple[Predictor, list[list[int]]]:
        """Loads the model and tokenizes the prompts (before queueing, so bad requests fail at once)."""
        predictor = await predictor_for(name)
        try:
            prompt_ids = await in_thread(encode, predictor)
        except (TemplateError, ValueError) as error:
            raise ApiError(400, f"could not encode the prompt: {error}", param=param, code="invalid_prompt") from None
        for ids in prompt_ids:
            check_prompt(ids, param)
        return predictor, prompt_ids

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "active_generations": admission.active,
            "max_concurrency": admission.limit,
            "queued_prompts": admission.queued,
            "max_queue": admission.max_queue,
            "max_batch_size": batchers.max_batch_size,
            "batching": batchers.log.summary(),
            "loaded_models": pool.cache.loaded_names(),
        }

    @app.get("/v1/models", responses=documented_responses(ModelList, 401, 500))
    async def list_models() -> dict[str, Any]:
        entries = await in_thread(pool.entries)
        data = [
            {"id": entry.name, "object": "model", "created": entry.created, "owned_by": f"finetune-studio:{entry.kind}"}
            for entry in entries.values()
        ]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions", responses=documented_responses(ChatCompletion, *GENERATION_ERRORS, streams=True))
    async def chat_completions(body: ChatCompletionRequest) -> Any:
        options = sampling(body)
        messages = [message.as_template_message() for message in body.messages]
        predictor, prompt_ids = await prepared(
            body.model, lambda predictor: [predictor.render(messages)], param="messages"
        )
        identifier, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            layout = StreamFormat(identifier, created, body.model, "chat", include_usage)
            return await generations.stream(body.model, predictor, prompt_ids[0], options, layout)
        completion = (await generations.complete(body.model, predictor, prompt_ids, options))[0]
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

    @app.post("/v1/completions", responses=documented_responses(TextCompletion, *GENERATION_ERRORS, streams=True))
    async def completions(body: CompletionRequest) -> Any:
        options = sampling(body)
        prompts = body.prompts()
        if body.stream and len(prompts) != 1:
            raise ApiError(400, "streaming supports a single prompt", param="prompt", code="stream_needs_one_prompt")
        generations.check_prompt_count(len(prompts))
        predictor, prompt_ids = await prepared(
            body.model,
            lambda predictor: [start_tokens(predictor, predictor.encode(prompt)) for prompt in prompts],
            param="prompt",
        )
        identifier, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            layout = StreamFormat(identifier, created, body.model, "text", include_usage)
            return await generations.stream(body.model, predictor, prompt_ids[0], options, layout)
        results = await generations.complete(body.model, predictor, prompt_ids, options)
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
