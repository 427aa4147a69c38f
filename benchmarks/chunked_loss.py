"""Chunked vs whole-vocabulary loss at a Llama-3 vocabulary: peak memory and step time of one training step.

A randomly initialised Llama-shaped model with Llama-3's vocabulary (128,256 tokens; hidden 512,
2 layers, untied output layer) gets LoRA r16 adapters on every projection, and trains on one
padding-free row whose tokens are all trained: the case where the logits are the largest
activation of a step (for a 7B model the layers are larger, the logits the same size per token).
Both sides run the product's loss (``core.infrastructure.training.loss.masked_causal_lm_loss``):
``off`` projects every trained position at once, ``on`` a chunk of positions at a time
(``training.chunked_loss``). Each side runs in a fresh process (its peak RSS is its own), in the
precision ``training.precision=auto`` picks here; medians of alternating rounds.

``python -m benchmarks.chunked_loss [--quick]`` writes ``benchmarks/results/chunked_loss.json``.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from loguru import logger

REPO_ROOT = Path(__file__).resolve().parents[1]
SHAPE = {
    "hidden_size": 512,
    "intermediate_size": 1024,
    "num_hidden_layers": 2,
    "num_attention_heads": 8,
    "num_key_value_heads": 8,
    "vocab_size": 128_256,
    "tie_word_embeddings": False,
}
STEPS = 3


def child(side: str, tokens: int) -> dict[str, Any]:
    """One side in this process: a warm-up step, then ``STEPS`` timed steps; its peak RSS.

    Args:
        side: ``on`` (chunked) or ``off`` (every trained position's logits at once).
        tokens: Tokens of the row (all trained).

    Returns:
        ``{"step_s": median seconds per step, "peak_rss_mb": ..., "loss": first step's loss, "precision": ...}``.
    """
    import resource

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig

    from core.infrastructure.models.loading import select_device
    from core.infrastructure.training.chunked_loss import chunkable_output_layer
    from core.infrastructure.training.loss import masked_causal_lm_loss
    from core.infrastructure.training.precision import choose_precision

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(LlamaConfig(**SHAPE), attn_implementation="sdpa")
    model.config.use_cache = False
    projections = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=projections))
    precision = choose_precision("auto", select_device())
    layer = chunkable_output_layer(model) if side == "on" else None
    ids = torch.randint(0, SHAPE["vocab_size"], (1, tokens), generator=torch.Generator().manual_seed(1))
    batch = {"input_ids": ids, "labels": ids.clone(), "position_ids": torch.arange(tokens)[None]}
    optimizer = torch.optim.AdamW([parameter for parameter in model.parameters() if parameter.requires_grad])
    times, losses = [], []
    for _ in range(STEPS + 1):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=precision.compute_dtype, enabled=precision.name != "fp32"):
            loss, _outputs = masked_causal_lm_loss(model, batch, None, layer)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - started)
        losses.append(loss.item())
    return {
        "step_s": round(statistics.median(times[1:]), 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "loss": round(losses[0], 5),
        "precision": precision.name,
    }


def _side(side: str, tokens: int) -> dict[str, Any]:
    """Runs :func:`child` in a fresh interpreter."""
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.chunked_loss", "--child", side, str(tokens)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0 or "RESULT=" not in completed.stdout:
        raise RuntimeError(f"chunked_loss side {side} failed: {completed.stderr[-2000:]}")
    result = json.loads(completed.stdout.split("RESULT=")[-1])
    logger.info("chunked loss {} ({} tokens): {}", side, tokens, result)
    return result


def run(quick: bool = False) -> dict[str, Any]:
    """Measures both sides, alternating.

    Args:
        quick: One round of 1,024 tokens instead of three rounds of 2,048.

    Returns:
        ``{"figures": [...], "rounds": [...], "setup": {...}}``.
    """
    tokens, rounds_count = (1024, 1) if quick else (2048, 3)
    rounds = []
    for index in range(rounds_count):
        order = ("off", "on") if index % 2 == 0 else ("on", "off")
        rounds.append({side: _side(side, tokens) for side in order})
    memory = statistics.median(round_["on"]["peak_rss_mb"] / round_["off"]["peak_rss_mb"] for round_ in rounds)
    speed = statistics.median(round_["off"]["step_s"] / round_["on"]["step_s"] for round_ in rounds)
    first = rounds[0]
    logits_mb = tokens * SHAPE["vocab_size"] * 4 / 2**20
    figures = [
        {
            "name": f"chunked vs whole-vocabulary loss, {tokens} trained tokens x 128,256 vocabulary "
            f"({logits_mb:,.0f} MB of fp32 logits), peak RSS",
            "value": f"{memory:.2f} ({first['on']['peak_rss_mb']:,.0f} vs {first['off']['peak_rss_mb']:,.0f} MB)",
            "target": "lower",
            "met": memory < 1.0,
        },
        {
            "name": "chunked vs whole-vocabulary loss, training step speed (same run)",
            "value": f"{speed:.2f}x ({first['on']['step_s']} vs {first['off']['step_s']} s per step); "
            f"loss {first['on']['loss']} vs {first['off']['loss']}",
            "target": "no slower than 0.9x, same loss",
            "met": speed >= 0.9 and abs(first["on"]["loss"] - first["off"]["loss"]) <= 1e-3 * first["off"]["loss"],
        },
    ]
    return {"figures": figures, "rounds": rounds, "setup": {"tokens": tokens, "shape": SHAPE, "steps": STEPS}}


def main() -> int:
    """``python -m benchmarks.chunked_loss [--quick]`` (or ``--child SIDE TOKENS`` for one side).

    Returns:
        0.
    """
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print("RESULT=" + json.dumps(child(sys.argv[2], int(sys.argv[3]))))
        return 0
    from benchmarks.run import standalone_main

    return standalone_main("chunked_loss", run, __doc__, "One round of 1,024 tokens instead of three of 2,048.")


if __name__ == "__main__":
    raise SystemExit(main())
