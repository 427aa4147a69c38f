"""Batched answer generation for evaluation, with a progress bar.

Prompts are sorted by length and split into batches of ``evaluation.batch_size``; each batch goes
through :meth:`~core.infrastructure.inference.predictor.Predictor.complete_ids` (left padding, greedy unless
``evaluation.do_sample``, stop at EOS, at most ``evaluation.max_new_tokens`` new tokens), the
same generation path the CLI, the API and the studio use.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from core.domain.settings_sections import EvaluationSettings


@dataclass(frozen=True)
class GenerationResult:
    """Answers for a list of prompts.

    Attributes:
        outputs: One answer per prompt, in order.
        output_tokens: Token count of each answer.
        seconds: Wall time of the generation.
    """

    outputs: list[str]
    output_tokens: list[int]
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per second of wall time."""
        return sum(self.output_tokens) / self.seconds if self.seconds > 0 else 0.0


def generate_answers(
    loaded: Any,
    prompts: list[list[dict[str, str]]],
    evaluation: EvaluationSettings,
    show_progress: bool = True,
) -> GenerationResult:
    """Generates one answer per prompt, batch by batch (prompts of similar length share a batch).

    Args:
        loaded: A :class:`~core.infrastructure.inference.loading.LoadedModel`.
        prompts: Message lists (``{"role", "content"}`` mappings) ending with a user turn.
        evaluation: Generation settings (batch size, max new tokens, sampling).
        show_progress: Show a tqdm progress bar.

    Returns:
        The answers, in input order, with their token counts and the wall time.
    """
    from core.infrastructure.inference.predictor import Predictor, SamplingOptions

    predictor = Predictor(loaded)
    options = SamplingOptions(
        max_new_tokens=evaluation.max_new_tokens,
        temperature=evaluation.temperature if evaluation.do_sample else 0.0,
        top_p=evaluation.top_p,
        seed=0 if evaluation.do_sample else None,
        do_sample=evaluation.do_sample,
    )
    prompt_ids = [predictor.render(messages) for messages in prompts]
    order = sorted(range(len(prompt_ids)), key=lambda index: -len(prompt_ids[index]))
    outputs: list[str] = [""] * len(prompts)
    output_tokens: list[int] = [0] * len(prompts)
    started = time.perf_counter()
    with tqdm(
        total=len(prompts), desc="Generating", unit="answer", disable=None if show_progress and prompts else True
    ) as bar:
        for start in range(0, len(order), evaluation.batch_size):
            chunk = order[start : start + evaluation.batch_size]
            completions = predictor.complete_ids([prompt_ids[index] for index in chunk], options)
            for index, completion in zip(chunk, completions, strict=True):
                outputs[index] = completion.text
                output_tokens[index] = completion.completion_tokens
            bar.update(len(chunk))
    return GenerationResult(outputs=outputs, output_tokens=output_tokens, seconds=time.perf_counter() - started)
