"""Generation: batched (left padding) and streaming, greedy by default, stopping at EOS and stop strings.

Prompts are rendered with :func:`core.infrastructure.data.tokenize.render_prompt_ids`, the same
function training uses for its prompts, so the served token ids equal the trained ones.

Prefix Tuning adapters keep their prefix through :func:`~core.infrastructure.inference.generation.generate_ids`.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from core.infrastructure.data.tokenize import render_prompt_ids
from core.infrastructure.inference.generation import generate_ids
from core.infrastructure.inference.loading import LoadedModel
from core.infrastructure.inference.options import (
    CancelOnEvent,
    Completion,
    FinishReason,
    SamplingOptions,
    stop_string_criteria,
    trim_at_stop,
)
from core.infrastructure.inference.streams import TextStream
from core.infrastructure.models.loading import base_model_of


@dataclass
class Predictor:
    """Generates answers with a loaded model.

    Attributes:
        loaded: The model, tokenizer and chat template.
        eos_token_ids: Token ids that end an answer (generation config's EOS plus the tokenizer's).
    """

    loaded: LoadedModel
    eos_token_ids: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        ids: list[int] = []
        config_eos = getattr(self._generation_config(), "eos_token_id", None)
        for value in [config_eos, self.tokenizer.eos_token_id]:
            for item in value if isinstance(value, list | tuple) else [value]:
                if item is not None and int(item) not in ids:
                    ids.append(int(item))
        self.eos_token_ids = self.eos_token_ids or ids

    @property
    def tokenizer(self) -> Any:
        """The tokenizer (with the run's chat template)."""
        return self.loaded.tokenizer

    def _generation_config(self) -> Any:
        model = self.loaded.model
        base = base_model_of(model)
        return base.generation_config

    def render(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """Token ids of a chat prompt, rendered with the run's chat template.

        Args:
            messages: ``[{"role": ..., "content": ...}, ...]`` ending with a user turn.

        Returns:
            Prompt token ids, assistant header included.
        """
        return render_prompt_ids(self.tokenizer, [dict(message) for message in messages])

    def encode(self, text: str) -> list[int]:
        """Token ids of a raw text prompt (``/v1/completions``), with the tokenizer's special tokens.

        Args:
            text: The prompt.

        Returns:
            Token ids.
        """
        return list(self.tokenizer(text)["input_ids"])

    def generate(
        self,
        conversations: Sequence[Sequence[dict[str, str]]],
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: Sequence[str] = (),
        batch_size: int | None = None,
        do_sample: bool | None = None,
    ) -> list[str]:
        """Answers several conversations, batched with left padding.

        Args:
            conversations: One message list per prompt.
            max_new_tokens: Longest answer.
            temperature: 0 for greedy decoding.
            top_p: Nucleus sampling mass.
            seed: Sampling seed.
            stop: Stop strings.
            batch_size: Prompts per forward pass (default: all at once).
            do_sample: Force greedy or sampling.

        Returns:
            The answers, in input order.
        """
        options = SamplingOptions(max_new_tokens, temperature, top_p, seed, tuple(stop), do_sample)
        prompts = [self.render(messages) for messages in conversations]
        return [completion.text for completion in self.complete_batches(prompts, options, batch_size)]

    def complete_batches(
        self, prompts: Sequence[list[int]], options: SamplingOptions, batch_size: int | None = None
    ) -> list[Completion]:
        """Generates for many prompts in batches of similar length; results keep the input order.

        Args:
            prompts: Prompt token ids.
            options: Decoding options.
            batch_size: Prompts per batch (default: all at once).

        Returns:
            One completion per prompt.
        """
        size = batch_size or max(1, len(prompts))
        order = sorted(range(len(prompts)), key=lambda index: -len(prompts[index]))
        results: list[Completion | None] = [None] * len(prompts)
        for start in range(0, len(order), size):
            chunk = order[start : start + size]
            for index, completion in zip(chunk, self.complete_ids([prompts[i] for i in chunk], options), strict=True):
                results[index] = completion
        return [result for result in results if result is not None]

    def complete_ids(
        self,
        prompts: Sequence[list[int]],
        options: SamplingOptions,
        cancel_event: threading.Event | None = None,
        streamer: Any = None,
        stopping_criteria: Sequence[StoppingCriteria] = (),
    ) -> list[Completion]:
        """Generates for one batch of prompts (left padded), the core of every other method.

        Args:
            prompts: Prompt token ids (one list per prompt).
            options: Decoding options.
            cancel_event: When set, generation stops after the current token.
            streamer: A transformers streamer (batch of one).
            stopping_criteria: Extra per-row criteria, called once per generated token with the whole
                ``input_ids`` (the API server's batcher uses one to stop and finish each row on its own).

        Returns:
            One completion per prompt.
        """
        if not prompts:
            return []
        tokenizer = self.tokenizer
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_token_ids[0]
        longest = max(len(ids) for ids in prompts)
        input_ids = torch.tensor([[pad_id] * (longest - len(ids)) + list(ids) for ids in prompts])
        attention = torch.tensor([[0] * (longest - len(ids)) + [1] * len(ids) for ids in prompts])
        criteria = StoppingCriteriaList([CancelOnEvent(cancel_event)] if cancel_event is not None else [])
        criteria.extend(stopping_criteria)
        with self.loaded.activated() as module:
            generation_config = self._build_generation_config(options, pad_id)
            kwargs: dict[str, Any] = {
                "generation_config": generation_config,
                "stopping_criteria": criteria,
                "streamer": streamer,
            }
            stop = stop_string_criteria(tokenizer, options.stop)
            if stop is not None:
                criteria.append(stop)
            if options.sampling and options.seed is not None:
                torch.manual_seed(options.seed)
            device = _module_device(module)
            input_ids, attention = input_ids.to(device), attention.to(device)
            with torch.inference_mode():
                generated = generate_ids(module, input_ids, attention, **kwargs).tolist()
        cancelled = cancel_event is not None and cancel_event.is_set()
        return [
            self._completion(ids, len(prompt), options, cancelled)
            for ids, prompt in zip(generated, prompts, strict=True)
        ]

    def _build_generation_config(self, options: SamplingOptions, pad_id: int) -> Any:
        config = copy.deepcopy(self._generation_config())
        config.max_new_tokens = options.max_new_tokens
        config.max_length = None
        config.min_new_tokens = None
        config.min_length = 0
        config.eos_token_id = list(self.eos_token_ids)
        config.pad_token_id = pad_id
        config.use_cache = True
        config.num_return_sequences = 1
        config.num_beams = 1
        config.do_sample = options.sampling
        if options.sampling:
            config.temperature = options.temperature
            config.top_p = options.top_p
            config.top_k = None
        else:
            config.temperature = None
            config.top_p = None
            config.top_k = None
        return config

    def completion_from_ids(
        self, ids: list[int], prompt_tokens: int, options: SamplingOptions, cancelled: bool = False
    ) -> Completion:
        """The completion for one row of generated ids, exactly as :meth:`complete_ids` builds it.

        Args:
            ids: Generated token ids of one prompt (prompt excluded).
            prompt_tokens: Tokens in the prompt.
            options: The row's decoding options (its ``max_new_tokens`` and ``stop`` decide the finish reason).
            cancelled: Whether generation was cancelled.

        Returns:
            Text (cut at EOS, padding or a stop string), token counts and finish reason.
        """
        return self._completion(ids, prompt_tokens, options, cancelled)

    def _completion(self, ids: list[int], prompt_tokens: int, options: SamplingOptions, cancelled: bool) -> Completion:
        pad_id = self.tokenizer.pad_token_id
        ends = set(self.eos_token_ids)
        cut = len(ids)
        ended_by_eos = False
        for position, token in enumerate(ids):
            if token in ends:
                cut, ended_by_eos = position, True
                break
            if token == pad_id:
                cut = position
                break
        text = self.tokenizer.decode(ids[:cut], skip_special_tokens=True)
        text, stopped = trim_at_stop(text, options.stop)
        if ended_by_eos or stopped or cut < len(ids):
            reason: FinishReason = "stop"
        else:
            reason = "cancelled" if cancelled and cut < options.max_new_tokens else "length"
        return Completion(text, prompt_tokens, cut + (1 if ended_by_eos else 0), reason)

    def stream(
        self,
        messages: Sequence[dict[str, str]],
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: Sequence[str] = (),
        do_sample: bool | None = None,
        cancel_event: threading.Event | None = None,
    ) -> TextStream:
        """Streams the answer to one conversation as text chunks (generation runs in a thread).

        Args:
            messages: The conversation, ending with a user turn.
            max_new_tokens: Longest answer.
            temperature: 0 for greedy decoding.
            top_p: Nucleus sampling mass.
            seed: Sampling seed.
            stop: Stop strings (never emitted).
            do_sample: Force greedy or sampling.
            cancel_event: When set, generation stops.

        Returns:
            An iterator of text chunks (a :class:`TextStream`).
        """
        options = SamplingOptions(max_new_tokens, temperature, top_p, seed, tuple(stop), do_sample)
        return self.stream_ids(self.render(messages), options, cancel_event)

    def stream_ids(
        self,
        prompt_ids: list[int],
        options: SamplingOptions,
        cancel_event: threading.Event | None = None,
        timeout_s: float | None = None,
    ) -> TextStream:
        """Streams the answer to a tokenized prompt.

        Args:
            prompt_ids: Prompt token ids.
            options: Decoding options.
            cancel_event: When set, generation stops.
            timeout_s: Longest wait for the next chunk (None: no limit).

        Returns:
            An iterator of text chunks.
        """
        return TextStream(self, prompt_ids, options, cancel_event, timeout_s)


def _module_device(module: torch.nn.Module) -> torch.device:
    try:
        return next(module.parameters()).device
    except StopIteration:
        return torch.device("cpu")
