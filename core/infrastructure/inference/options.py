"""What a generation is asked for (sampling, stop strings) and what it returns, shared by every generation path."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from transformers import StoppingCriteria

FinishReason = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True)
class SamplingOptions:
    """How to decode.

    Attributes:
        max_new_tokens: Longest answer in tokens.
        temperature: 0 (or ``do_sample=False``) decodes greedily; above 0 samples.
        top_p: Nucleus sampling mass.
        seed: Seed for sampling (None: leave the random state alone).
        stop: Strings that end the answer (not included in it).
        do_sample: Force greedy (False) or sampling (True); None decides from the temperature.
    """

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    do_sample: bool | None = None

    @property
    def sampling(self) -> bool:
        """True when tokens are sampled; below 1e-6 the scaled logits overflow, so that decodes greedily."""
        if self.do_sample is not None:
            return self.do_sample and self.temperature >= 1e-6
        return self.temperature >= 1e-6


@dataclass
class Completion:
    """One generated answer.

    Attributes:
        text: The answer (without the stop string or EOS).
        prompt_tokens: Tokens in the prompt.
        completion_tokens: Tokens generated (EOS included when it ended the answer).
        finish_reason: ``stop`` (EOS or a stop string), ``length`` or ``cancelled``.
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason


class CancelOnEvent(StoppingCriteria):
    """Stops every sequence once an event is set (request timeout, client gone)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        """True for every sequence once the event is set."""
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def trim_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cuts ``text`` before the first stop string; says whether one was found."""
    positions = [text.find(marker) for marker in stop if marker and marker in text]
    if not positions:
        return text, False
    return text[: min(positions)], True


def stop_string_criteria(tokenizer: Any, stop: Sequence[str]) -> StoppingCriteria | None:
    """The early stop (transformers' StopStringCriteria) for the stop strings it can build from the tokens.

    ``StopStringCriteria`` raises for a stop string that no token of the vocabulary can end (a
    character the tokenizer only writes as bytes split over several tokens, or never writes); a
    request's stop strings must never fail the generation that serves it (in the API's batch worker
    that left every later request waiting until its timeout). Such a stop string gets no early
    stop: the text is still cut before it (:func:`trim_at_stop`), after generating up to the limit.

    Args:
        tokenizer: The generating model's tokenizer.
        stop: The stop strings (empty ones are ignored).

    Returns:
        The criterion for the stop strings it can match, or None when there is none.
    """
    from transformers.generation.stopping_criteria import StopStringCriteria

    markers = list(dict.fromkeys(marker for marker in stop if marker))
    if not markers:
        return None
    try:
        return StopStringCriteria(tokenizer=tokenizer, stop_strings=markers)
    except ValueError:
        pass
    matchable = []
    for marker in markers:
        try:
            StopStringCriteria(tokenizer=tokenizer, stop_strings=[marker])
        except ValueError:
            continue
        matchable.append(marker)
    return StopStringCriteria(tokenizer=tokenizer, stop_strings=matchable) if matchable else None
