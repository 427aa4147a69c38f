"""Evaluation and decode cost on the embedded model: the ``evaluate`` loss and single-stream ``chat`` decoding.

a. **Loss evaluation.** ``response_loss`` as shipped (right-padded batches sorted by length with
   ``sdpa``, padding-free with Flash Attention; logits only at the trained positions;
   ``core/infrastructure/evaluation/loss.py``), and forced padding-free as a reference, vs the loop it replaced (kept
   here as the baseline: right-padded batches, every position projected onto the vocabulary),
   same records, same batch size, sides alternating; records/s and tokens/s (every input token of
   the records) and both losses, which must agree.
b. **Single-stream decode.** The ``chat`` path (``Predictor.stream``: generation in a thread
   feeding a text streamer, what ``finetune-studio chat``, the studio and streamed API answers use
   for one user) vs plain ``model.generate(do_sample=False)`` on the same prompt and
   ``max_new_tokens`` (``min_new_tokens`` equal on the plain side; the prompt is one the model
   answers past ``max_new_tokens``, and both sides' counts are checked equal), alternating.

Both parts run with ``TORCH_THREADS`` torch threads (1): on a 2-core machine shared with other
jobs a 2-thread OpenMP team stalls at every barrier whenever one of its threads is descheduled,
which made plain ``generate`` 2.7 tok/s against 16.3 at one thread and the loss rounds vary 2x.

The model is loaded as ``evaluate`` and ``chat`` load it (``load_for_inference``, ``model.dtype``
``auto``); the dtype is in the results. Data: the demo data's validation split, prepared in a
temporary directory. ``python -m benchmarks.eval_decode [--quick]`` writes
``benchmarks/results/eval_decode.json``.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from loguru import logger

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DECODE_PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle."
MAX_NEW_TOKENS = 64
BATCH_SIZE = 8
LOSS_TOLERANCE = 1e-4
TORCH_THREADS = 1


def demo_rows(count: int) -> list[dict[str, Any]]:
    """The first ``count`` records of the demo validation split, prepared as the preset prepares them.

    Args:
        count: Records to return.

    Returns:
        Rows with ``input_ids`` and ``labels``.
    """
    from benchmarks.training_harness import PRESET, isolated_overrides, load_benchmark_settings
    from core.application.prepare_data import prepare_data

    with tempfile.TemporaryDirectory(prefix="ft-bench-eval-") as temporary:
        prepared = prepare_data(load_benchmark_settings(PRESET, isolated_overrides(Path(temporary))))
        rows = prepared.tokenized("validation").to_list()[:count]
    return [{"input_ids": list(row["input_ids"]), "labels": list(row["labels"])} for row in rows]


@torch.no_grad()
def padded_full_logits_loss(
    model: torch.nn.Module, rows: list[dict], batch_size: int, pad_token_id: int
) -> tuple[float, int]:
    """The loss loop ``response_loss`` ran before: right-padded batches, logits at every position.

    Also the reference of ``tests/test_evaluation_loss.py``.

    Args:
        model: The causal LM (in eval mode).
        rows: Rows with ``input_ids`` and ``labels``.
        batch_size: Sequences per forward pass.
        pad_token_id: Padding id.

    Returns:
        The token-weighted response loss and the number of trained tokens.
    """
    from core.infrastructure.data.tokenize import IGNORE_INDEX
    from core.infrastructure.training.collators import PaddingCollator

    total_loss, total_tokens = 0.0, 0
    ordered = sorted(rows, key=lambda row: len(row["input_ids"]))
    for start in range(0, len(ordered), batch_size):
        batch = PaddingCollator(pad_token_id)(ordered[start : start + batch_size])
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        shifted_logits, shifted_labels = logits[:, :-1, :].float(), batch["labels"][:, 1:]
        total_loss += torch.nn.functional.cross_entropy(
            shifted_logits.reshape(-1, shifted_logits.size(-1)),
            shifted_labels.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        ).item()
        total_tokens += int((shifted_labels != IGNORE_INDEX).sum())
    return total_loss / total_tokens, total_tokens


def _alternate(sides: dict[str, Callable[[], Any]], rounds: int) -> list[dict[str, Any]]:
    """Runs every side once per round, rotating which goes first; returns seconds and result per side."""
    names = list(sides)
    measured = []
    for index in range(rounds):
        order = names[index % len(names) :] + names[: index % len(names)]
        row: dict[str, Any] = {"order": order}
        for name in order:
            started = time.perf_counter()
            result = sides[name]()
            row[name] = {"seconds": time.perf_counter() - started, "result": result}
        measured.append(row)
        logger.info("Round {}: {}", index + 1, {name: round(row[name]["seconds"], 2) for name in names})
    return measured


def measure_loss(loaded: Any, rows: list[dict], rounds: int) -> dict[str, Any]:
    """Loss evaluation, ours vs the padded full-logits baseline, alternating.

    Args:
        loaded: The loaded model.
        rows: Records to score.
        rounds: Alternating rounds.

    Returns:
        Records/s, tokens/s, losses and per-round figures.
    """
    from core.infrastructure.evaluation.loss import packs_by_default, response_loss

    model = loaded.model.eval()
    pad_id = loaded.tokenizer.pad_token_id
    sides = {
        "ours": lambda: response_loss(model, rows, BATCH_SIZE, pad_id, show_progress=False).loss,
        "ours_packed": lambda: response_loss(model, rows, BATCH_SIZE, pad_id, show_progress=False, packing=True).loss,
        "baseline": lambda: padded_full_logits_loss(model, rows, BATCH_SIZE, pad_id)[0],
    }
    measured = _alternate(sides, rounds)
    tokens = sum(len(row["input_ids"]) for row in rows)
    figures: dict[str, Any] = {"records": len(rows), "input_tokens": tokens, "batch_size": BATCH_SIZE}
    for name in sides:
        seconds = statistics.median(row[name]["seconds"] for row in measured)
        figures[name] = {
            "records_per_s": round(len(rows) / seconds, 2),
            "tokens_per_s": round(tokens / seconds, 1),
            "median_seconds": round(seconds, 2),
            "loss": measured[-1][name]["result"],
        }
    for name in ("ours", "ours_packed"):
        ratios = [row["baseline"]["seconds"] / row[name]["seconds"] for row in measured]
        figures[name]["speedup"] = round(statistics.median(ratios), 2)
        figures[name]["round_speedups"] = [round(ratio, 2) for ratio in ratios]
    figures["losses_agree"] = all(
        abs(row[name]["result"] - row["baseline"]["result"]) <= LOSS_TOLERANCE * abs(row["baseline"]["result"])
        for row in measured
        for name in ("ours", "ours_packed")
    )
    figures["padding_free"] = packs_by_default(model)
    return figures


def decode_sides(loaded: Any) -> dict[str, Callable[[], int]]:
    """The decode sides, each returning the number of tokens it generated.

    Args:
        loaded: The loaded model.

    Returns:
        ``chat`` (the streaming predictor) and ``generate``.
    """
    from core.infrastructure.inference.predictor import Predictor

    predictor = Predictor(loaded)
    messages = [{"role": "user", "content": DECODE_PROMPT}]
    prompt = torch.tensor([predictor.render(messages)])

    def chat() -> int:
        stream = predictor.stream(messages, max_new_tokens=MAX_NEW_TOKENS)
        "".join(stream)
        return stream.completion_tokens

    def generate() -> int:
        with torch.inference_mode():
            output = loaded.model.generate(
                input_ids=prompt,
                attention_mask=torch.ones_like(prompt),
                do_sample=False,
                max_new_tokens=MAX_NEW_TOKENS,
                min_new_tokens=MAX_NEW_TOKENS,
                pad_token_id=loaded.tokenizer.pad_token_id,
            )
        return output.shape[1] - prompt.shape[1]

    return {"chat": chat, "generate": generate}


def measure_decode(loaded: Any, rounds: int) -> dict[str, Any]:
    """Single-stream decode tokens/s, ``chat`` path vs plain ``generate``, alternating.

    Args:
        loaded: The loaded model.
        rounds: Alternating rounds.

    Returns:
        Tokens/s per side, the chat/generate ratio and per-round figures.
    """
    sides = decode_sides(loaded)
    for side in sides.values():  # warm-up
        side()
    measured = _alternate(sides, rounds)
    figures: dict[str, Any] = {"prompt": DECODE_PROMPT, "max_new_tokens": MAX_NEW_TOKENS}
    for name in sides:
        rates = [row[name]["result"] / row[name]["seconds"] for row in measured]
        figures[name] = {
            "tokens_per_s": round(statistics.median(rates), 2),
            "round_tokens_per_s": [round(rate, 2) for rate in rates],
            "tokens": [row[name]["result"] for row in measured],
        }
    ratios = [
        (row["chat"]["result"] / row["chat"]["seconds"]) / (row["generate"]["result"] / row["generate"]["seconds"])
        for row in measured
    ]
    figures["chat_over_generate"] = round(statistics.median(ratios), 2)
    figures["round_ratios"] = [round(ratio, 2) for ratio in ratios]
    figures["equal_token_counts"] = all(
        row["chat"]["result"] == row["generate"]["result"] == MAX_NEW_TOKENS for row in measured
    )
    return figures


def _figures(loss: dict[str, Any], decode: dict[str, Any]) -> list[dict[str, Any]]:
    ours, packed, baseline = loss["ours"], loss["ours_packed"], loss["baseline"]
    return [
        {
            "name": f"evaluate loss, {loss['records']} records, batch {loss['batch_size']}: as shipped "
            f"({'padding-free' if loss['padding_free'] else 'right-padded'}) + logits at trained positions vs "
            "right-padded full logits (median of per-round ratios)",
            "value": f"{ours['speedup']:.2f}x ({ours['records_per_s']} vs {baseline['records_per_s']} records/s, "
            f"{ours['tokens_per_s']} vs {baseline['tokens_per_s']} tok/s)",
            "target": "faster, same loss",
            "met": ours["speedup"] > 1.0 and loss["losses_agree"],
        },
        {
            "name": "evaluate loss, padding-free (forced) + logits at trained positions vs the same baseline",
            "value": f"{packed['speedup']:.2f}x ({packed['records_per_s']} records/s)",
            "target": "reference",
        },
        {
            "name": "evaluate loss value, ours / packed ours / baseline",
            "value": f"{ours['loss']:.6f} / {packed['loss']:.6f} / {baseline['loss']:.6f}",
            "target": f"equal within {LOSS_TOLERANCE:g} relative",
            "met": loss["losses_agree"],
        },
        {
            "name": f"single-stream decode, chat path vs model.generate ({MAX_NEW_TOKENS} tokens, greedy)",
            "value": f"{decode['chat_over_generate']:.2f}x ({decode['chat']['tokens_per_s']} vs "
            f"{decode['generate']['tokens_per_s']} tok/s)",
            "target": "chat no slower (>= 0.95x)",
            "met": decode["chat_over_generate"] >= 0.95 and decode["equal_token_counts"],
        },
    ]


def run(quick: bool = False) -> dict[str, Any]:
    """Measures the loss evaluation and single-stream decode against their baselines.

    Args:
        quick: 64 records and 3 decode rounds (else 200 records, the whole validation split, and 5).

    Returns:
        ``{"figures": [...], "loss": ..., "decode": ..., ...}``.
    """
    from benchmarks.run import machine_description
    from core.domain.catalog import EMBEDDED_MODEL_NAME
    from core.domain.config import settings_from_dict
    from core.infrastructure.inference.loading import load_for_inference

    rows = demo_rows(64 if quick else 200)
    cache = os.environ.get("FINETUNE_PATHS__MODEL_CACHE", str(Path(__file__).resolve().parents[1] / ".cache/models"))
    loaded = load_for_inference(EMBEDDED_MODEL_NAME, settings_from_dict({"paths": {"model_cache": cache}}))
    load_before = os.getloadavg()
    threads = torch.get_num_threads()
    torch.set_num_threads(TORCH_THREADS)
    try:
        loss = measure_loss(loaded, rows, rounds=3)
        decode = measure_decode(loaded, rounds=3 if quick else 5)
    finally:
        torch.set_num_threads(threads)
    return {
        "model": EMBEDDED_MODEL_NAME,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine_description(),
        "dtype": str(next(loaded.model.parameters()).dtype).removeprefix("torch."),
        "attn_implementation": loaded.model.config._attn_implementation,
        "torch_threads": TORCH_THREADS,
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "loss": loss,
        "decode": decode,
        "figures": _figures(loss, decode),
    }


def main() -> int:
    """``python -m benchmarks.eval_decode [--quick]``: writes ``benchmarks/results/eval_decode.json``.

    Returns:
        0.
    """
    from benchmarks.run import standalone_main

    return standalone_main("eval_decode", run, __doc__, "64 records and 3 decode rounds instead of 200 and 5.")


if __name__ == "__main__":
    raise SystemExit(main())
