"""Inference throughput: 8 prompts batched (left padding) vs the same 8 one at a time, on the embedded model.

Both sides generate greedily with the same :class:`~core.infrastructure.inference.predictor.Predictor`
and count the tokens actually generated. Sides alternate several times; the figure is the median
of the per-round ratios of aggregate tokens per second (target: at least 3x).

``python -m benchmarks.inference_throughput [--quick]`` writes
``benchmarks/results/inference_throughput.json``.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from loguru import logger

RESULTS_DIR = Path(__file__).resolve().parent / "results"
TARGET_RATIO = 3.0
PROMPTS = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a refrigerator works to a ten-year-old.",
    "List ten fruits and describe the colour of each one.",
    "Describe a walk through a forest in autumn.",
    "Write a letter to a friend about your summer holiday by the sea.",
    "Explain the rules of chess for a beginner.",
    "Describe how bread is made, step by step.",
    "Tell me about the history of the bicycle.",
]


def _tokens_per_second(predictor: Any, prompts: list[list[int]], options: Any, batched: bool) -> tuple[float, int]:
    started = time.perf_counter()
    if batched:
        completions = predictor.complete_ids(prompts, options)
    else:
        completions = [predictor.complete_ids([prompt], options)[0] for prompt in prompts]
    seconds = time.perf_counter() - started
    tokens = sum(completion.completion_tokens for completion in completions)
    return tokens / seconds, tokens


def run(quick: bool = False) -> dict[str, Any]:
    """Measures batched vs sequential generation throughput.

    Args:
        quick: One round with short answers (smoke run).

    Returns:
        ``{"figures": [...], "rounds": [...], ...}``.
    """
    from core.domain.catalog import EMBEDDED_MODEL_NAME
    from core.domain.config import settings_from_dict
    from core.infrastructure.inference.loading import load_for_inference
    from core.infrastructure.inference.predictor import Predictor, SamplingOptions

    settings = settings_from_dict({"paths": {"model_cache": ".cache/models"}})
    predictor = Predictor(load_for_inference(EMBEDDED_MODEL_NAME, settings))
    prompts = [predictor.render([{"role": "user", "content": text}]) for text in PROMPTS]
    max_new_tokens = 16 if quick else 48
    options = SamplingOptions(max_new_tokens=max_new_tokens)
    predictor.complete_ids(prompts[:2], SamplingOptions(max_new_tokens=4))  # warm-up
    rounds = []
    for index in range(1 if quick else 3):
        sides = [True, False] if index % 2 == 0 else [False, True]
        measured = {}
        for batched in sides:
            measured[batched] = _tokens_per_second(predictor, prompts, options, batched)
        ratio = measured[True][0] / measured[False][0]
        rounds.append(
            {
                "batched_tokens_per_s": round(measured[True][0], 2),
                "sequential_tokens_per_s": round(measured[False][0], 2),
                "batched_tokens": measured[True][1],
                "sequential_tokens": measured[False][1],
                "ratio": round(ratio, 2),
            }
        )
        logger.info(
            "Round {}: batched {:.1f} tok/s, one at a time {:.1f} tok/s, ratio {:.2f}x",
            index + 1,
            measured[True][0],
            measured[False][0],
            ratio,
        )
    median = statistics.median(round_["ratio"] for round_ in rounds)
    return {
        "model": EMBEDDED_MODEL_NAME,
        "concurrent_prompts": len(prompts),
        "max_new_tokens": max_new_tokens,
        "rounds": rounds,
        "figures": [
            {
                "name": "batched (8 prompts) / one-at-a-time throughput",
                "value": f"{median:.2f}x",
                "target": f">= {TARGET_RATIO:g}x",
                "met": median >= TARGET_RATIO,
            },
            {
                "name": "batched tokens/s (median)",
                "value": round(statistics.median(r["batched_tokens_per_s"] for r in rounds), 1),
            },
        ],
        "median_ratio": median,
    }


def main() -> int:
    """``python -m benchmarks.inference_throughput [--quick]``: writes ``benchmarks/results/inference_throughput.json``.

    Returns:
        0.
    """
    from benchmarks.run import standalone_main

    return standalone_main(
        "inference_throughput", run, __doc__, "One round with 16-token answers instead of 3 rounds of 48."
    )


if __name__ == "__main__":
    raise SystemExit(main())
