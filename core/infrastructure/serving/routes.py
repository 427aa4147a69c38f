"""The API's routes as module-level functions on one router; each reads the server's state from the app.

``/health``, ``/v1/models``, ``/v1/chat/completions`` and ``/v1/completions``. What they share --
the model pool, admission, batching and the preparation thread pool -- is one
:class:`ServingState` on ``app.state.serving`` (built by :func:`core.infrastructure.serving.app.create_app`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Request
from jinja2 import TemplateError

from core.domain.serve_settings import ServeSettings
from core.infrastructure.inference.predictor import Predictor, SamplingOptions
from core.infrastructure.serving.admission import AdmissionQueue
from core.infrastructure.serving.batcher import Batchers
from core.infrastructure.serving.generation import Generations
from core.infrastructure.serving.guard import ApiError
from core.infrastructure.serving.model_pool import InvalidModelNameError, ModelPool, UnknownModelError
from core.infrastructure.serving.openapi import ChatCompletion, ModelList, TextCompletion, documented_responses
from core.infrastructure.serving.schemas import ChatCompletionRequest, CompletionRequest
from core.infrastructure.serving.streaming import StreamFormat, openai_reason, usage

GENERATION_ERRORS = (400, 401, 404, 408, 413, 429, 500, 504)

router = APIRouter()


@dataclass
class ServingState:
    """What every route shares.

    Attributes:
        serve: The ``serve`` settings (limits).
        pool: The models that can be served.
        batchers: One batching worker per model.
        generations: Admission plus batched generation.
        executor: Threads for loading models and tokenizing (off the event loop).
    """

    serve: ServeSettings
    pool: ModelPool
    batchers: Batchers
    generations: Generations
    executor: ThreadPoolExecutor

    @property
    def admission(self) -> AdmissionQueue:
        """The admission queue (slots and waiting room)."""
        return self.generations.admission


def serving_state(request: Request) -> ServingState:
    """The dependency that hands a route the server's state."""
    return request.app.state.serving


async def in_thread(state: ServingState, function: Callable[..., Any], *arguments: Any) -> Any:
    """Runs blocking work (model loading, tokenizing) on the preparation threads."""
    return await asyncio.get_running_loop().run_in_executor(state.executor, function, *arguments)


async def predictor_for(state: ServingState, name: str) -> Predictor:
    """The loaded model of a name, or a 400/404 OpenAI error."""
    try:
        return await in_thread(state, state.pool.predictor, name)
    except InvalidModelNameError as error:
        raise ApiError(400, str(error), code="invalid_model", param="model") from None
    except UnknownModelError:
        raise ApiError(
            404, f"model {name!r} not found; GET /v1/models lists the available models", code="model_not_found"
        ) from None


def sampling(serve: ServeSettings, body: ChatCompletionRequest | CompletionRequest) -> SamplingOptions:
    """The decoding options of a request, ``max_tokens`` checked against ``serve.max_tokens_cap``."""
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


def check_prompt(serve: ServeSettings, prompt_ids: list[int], param: str) -> None:
    """Refuses a prompt longer than ``serve.max_prompt_tokens`` with a 400 naming the limit."""
    if len(prompt_ids) > serve.max_prompt_tokens:
        raise ApiError(
            400,
            f"prompt has {len(prompt_ids)} tokens, more than this server's limit of {serve.max_prompt_tokens} "
            "(serve.max_prompt_tokens)",
            param=param,
            code="context_length_exceeded",
        )


async def prepared(
    state: ServingState, name: str, encode: Callable[[Predictor], list[list[int]]], param: str
) -> tuple[Predictor, list[list[int]]]:
    """Loads the model and tokenizes the prompts (before queueing, so bad requests fail at once)."""
    predictor = await predictor_for(state, name)
    try:
        prompt_ids = await in_thread(state, encode, predictor)
    except (TemplateError, ValueError) as error:
        raise ApiError(400, f"could not encode the prompt: {error}", param=param, code="invalid_prompt") from None
    for ids in prompt_ids:
        check_prompt(state.serve, ids, param)
    return predictor, prompt_ids


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


@router.get("/health")
async def health(state: ServingState = Depends(serving_state)) -> dict[str, Any]:
    """Liveness plus the load: generations running and queued, batching, loaded models."""
    admission = state.admission
    return {
        "status": "ok",
        "active_generations": admission.active,
        "max_concurrency": admission.limit,
        "queued_prompts": admission.queued,
        "max_queue": admission.max_queue,
        "max_batch_size": state.batchers.max_batch_size,
        "batching": state.batchers.log.summary(),
        "loaded_models": state.pool.cache.loaded_names(),
    }


@router.get("/v1/models", responses=documented_responses(ModelList, 401, 500))
async def list_models(state: ServingState = Depends(serving_state)) -> dict[str, Any]:
    """The servable models: runs, registered models and the base model."""
    entries = await in_thread(state, state.pool.entries)
    data = [
        {"id": entry.name, "object": "model", "created": entry.created, "owned_by": f"finetune-studio:{entry.kind}"}
        for entry in entries.values()
    ]
    return {"object": "list", "data": data}


@router.post("/v1/chat/completions", responses=documented_responses(ChatCompletion, *GENERATION_ERRORS, streams=True))
async def chat_completions(body: ChatCompletionRequest, state: ServingState = Depends(serving_state)) -> Any:
    """A chat answer, rendered with the model's own chat template (streamed as SSE when asked)."""
    options = sampling(state.serve, body)
    messages = [message.as_template_message() for message in body.messages]
    predictor, prompt_ids = await prepared(
        state, body.model, lambda predictor: [predictor.render(messages)], param="messages"
    )
    identifier, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        layout = StreamFormat(identifier, created, body.model, "chat", include_usage)
        return await state.generations.stream(body.model, predictor, prompt_ids[0], options, layout)
    completion = (await state.generations.complete(body.model, predictor, prompt_ids, options))[0]
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": completion.text},
        "finish_reason": openai_reason(completion.finish_reason),
    }
    return {
        "id": identifier,
        "object": "chat.completion",
        "created": created,
        "model": body.model,
        "choices": [choice],
        "usage": usage(completion.prompt_tokens, completion.completion_tokens),
    }


@router.post("/v1/completions", responses=documented_responses(TextCompletion, *GENERATION_ERRORS, streams=True))
async def completions(body: CompletionRequest, state: ServingState = Depends(serving_state)) -> Any:
    """Text completions of one or several raw prompts (one prompt when streamed)."""
    options = sampling(state.serve, body)
    prompts = body.prompts()
    if body.stream and len(prompts) != 1:
        raise ApiError(400, "streaming supports a single prompt", param="prompt", code="stream_needs_one_prompt")
    state.generations.check_prompt_count(len(prompts))
    predictor, prompt_ids = await prepared(
        state,
        body.model,
        lambda predictor: [start_tokens(predictor, predictor.encode(prompt)) for prompt in prompts],
        param="prompt",
    )
    identifier, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        layout = StreamFormat(identifier, created, body.model, "text", include_usage)
        return await state.generations.stream(body.model, predictor, prompt_ids[0], options, layout)
    results = await state.generations.complete(body.model, predictor, prompt_ids, options)
    choices = [
        {"index": index, "text": result.text, "logprobs": None, "finish_reason": openai_reason(result.finish_reason)}
        for index, result in enumerate(results)
    ]
    return {
        "id": identifier,
        "object": "text_completion",
        "created": created,
        "model": body.model,
        "choices": choices,
        "usage": usage(sum(r.prompt_tokens for r in results), sum(r.completion_tokens for r in results)),
    }
