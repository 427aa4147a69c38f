"""The machine's limit for our training step: matmuls of the model's own training shapes, timed alone.

A LoRA training step of a decoder is, in FLOPs, almost only matrix products with the frozen
weights: per layer ``q/k/v/o_proj`` and ``gate/up/down_proj`` over the tokens of the step, and the
LM head over the trained positions (ours computes logits only there). Each runs twice per step:
forward (``x @ W.T``) and backward for the input gradient (``dy @ W``); frozen weights get no
weight gradient. This benchmark times exactly those products in the training dtype (bf16 where the
CPU or GPU supports it, else fp32; ``training.precision=auto``'s choice) with torch's default
threads, reports GFLOP/s per shape and the FLOP-weighted aggregate (total FLOPs of one step's
products / their total time) = the **achievable GEMM throughput**: what the step could reach if it
did nothing but its matmuls.

Model FLOPs of a LoRA step, per token (the convention behind the MFU figure of
``training_throughput``)::

    flops_per_token = 4 * N + 4 * H * V * f

with ``N`` the non-embedding parameters (attention and MLP projections), ``H`` the hidden size,
``V`` the vocabulary and ``f`` the share of positions that are trained (LM head over trained
positions only): 2 FLOPs per weight per token forward, 2 more for the input gradient backward, no
weight gradient of frozen weights. The LoRA adapters' own products (``2 r (in + out)`` per adapted
weight and pass, about 3 % at rank 16 on the embedded model), attention scores (sequences of ~60
tokens) and elementwise work are not counted: model FLOPs are the useful work, not what the kernels do.

``python -m benchmarks.gemm_limit`` writes ``benchmarks/results/gemm_limit.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_TOKENS_PER_STEP = 460
DEFAULT_TRAINED_SHARE = 0.25
MINIMUM_SECONDS = 0.3
WARMUP_REPEATS = 3


@dataclass(frozen=True)
class GemmShape:
    """One matrix product of the training step.

    Attributes:
        name: Module name (``q_proj``, ..., ``lm_head``).
        rows: Tokens (or trained positions for the LM head) the product runs over.
        in_features: Input width of the weight.
        out_features: Output width of the weight.
        count: How many times the step runs it (layers).
    """

    name: str
    rows: int
    in_features: int
    out_features: int
    count: int

    @property
    def flops(self) -> int:
        """FLOPs of one occurrence: forward plus input gradient, ``2 x 2 x rows x in x out``."""
        return 4 * self.rows * self.in_features * self.out_features


def layer_widths(config: Any) -> dict[str, tuple[int, int]]:
    """``(in, out)`` of every projection of one decoder layer (Llama-style configs).

    Args:
        config: A transformers config with ``hidden_size``, ``intermediate_size`` and head counts.

    Returns:
        Widths by module name.
    """
    hidden = config.hidden_size
    head_dim = getattr(config, "head_dim", None) or hidden // config.num_attention_heads
    query = config.num_attention_heads * head_dim
    key_value = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    key_value *= head_dim
    inner = config.intermediate_size
    return {
        "q_proj": (hidden, query),
        "k_proj": (hidden, key_value),
        "v_proj": (hidden, key_value),
        "o_proj": (query, hidden),
        "gate_proj": (hidden, inner),
        "up_proj": (hidden, inner),
        "down_proj": (inner, hidden),
    }


def non_embedding_parameters(config: Any) -> int:
    """Weights of the attention and MLP projections of all layers (norms and embeddings left out).

    Args:
        config: A transformers config.

    Returns:
        The parameter count ``N``.
    """
    per_layer = sum(width_in * width_out for width_in, width_out in layer_widths(config).values())
    return per_layer * config.num_hidden_layers


def lora_flops_per_token(config: Any, trained_share: float) -> float:
    """Model FLOPs per token of a LoRA step: ``4 N + 4 H V f`` (see the module docstring).

    Args:
        config: A transformers config.
        trained_share: Share ``f`` of the positions whose logits are computed (trained positions).

    Returns:
        FLOPs per (real) token.
    """
    return 4 * non_embedding_parameters(config) + 4 * config.hidden_size * config.vocab_size * trained_share


def training_shapes(config: Any, tokens_per_step: int, trained_positions: int) -> list[GemmShape]:
    """The matrix products of one training step of ``config``'s model.

    Args:
        config: A transformers config.
        tokens_per_step: Real tokens per optimizer step (padding-free).
        trained_positions: Positions per step whose logits are computed.

    Returns:
        One shape per projection kind plus the LM head.
    """
    layers = config.num_hidden_layers
    shapes = [
        GemmShape(name, tokens_per_step, width_in, width_out, layers)
        for name, (width_in, width_out) in layer_widths(config).items()
    ]
    shapes.append(GemmShape("lm_head", max(trained_positions, 1), config.hidden_size, config.vocab_size, 1))
    return shapes


def time_shape(shape: GemmShape, dtype: Any, device: Any) -> float:
    """Seconds of one forward plus input-gradient product of ``shape`` (best of repeated batches).

    Args:
        shape: The product.
        dtype: torch dtype of the training step.
        device: torch device.

    Returns:
        Seconds per occurrence.
    """
    import torch

    generator = torch.Generator(device="cpu").manual_seed(0)
    inputs = torch.randn(shape.rows, shape.in_features, generator=generator).to(device, dtype)
    weight = torch.randn(shape.out_features, shape.in_features, generator=generator).to(device, dtype)
    output_gradient = torch.randn(shape.rows, shape.out_features, generator=generator).to(device, dtype)

    def once() -> None:
        torch.nn.functional.linear(inputs, weight)
        torch.matmul(output_gradient, weight)

    with torch.no_grad():
        for _ in range(WARMUP_REPEATS):
            once()
        best, spent = float("inf"), 0.0
        while spent < MINIMUM_SECONDS:
            _synchronize(device)
            started = time.perf_counter()
            once()
            _synchronize(device)
            elapsed = time.perf_counter() - started
            best, spent = min(best, elapsed), spent + elapsed
    return best


def _synchronize(device: Any) -> None:
    import torch

    if getattr(device, "type", "cpu") == "cuda":
        torch.cuda.synchronize()


def measure_limit(config: Any, tokens_per_step: int, trained_positions: int, precision: str) -> dict[str, Any]:
    """Times every training product of the model and returns per-shape and aggregate GFLOP/s.

    Args:
        config: A transformers config of the trained model.
        tokens_per_step: Real tokens per optimizer step.
        trained_positions: Trained positions per step (rows of the LM head product).
        precision: ``bf16``, ``fp16`` or ``fp32`` (the training precision).

    Returns:
        ``shapes`` (name, dimensions, GFLOP/s) and ``aggregate_gflops`` (FLOP-weighted).
    """
    import torch

    from core.infrastructure.models.loading import select_device

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    device = select_device()
    device = device if device.type == "cuda" else torch.device("cpu")
    rows, total_flops, total_seconds = [], 0.0, 0.0
    for shape in training_shapes(config, tokens_per_step, trained_positions):
        seconds = time_shape(shape, dtype, device)
        total_flops += shape.flops * shape.count
        total_seconds += seconds * shape.count
        rows.append(
            {
                "name": shape.name,
                "product": f"[{shape.rows}x{shape.in_features}]@[{shape.in_features}x{shape.out_features}]",
                "count_per_step": shape.count,
                "gflops": round(shape.flops / seconds / 1e9, 1),
            }
        )
    return {
        "precision": precision,
        "device": device.type,
        "threads": torch.get_num_threads(),
        "tokens_per_step": tokens_per_step,
        "trained_positions_per_step": trained_positions,
        "shapes": rows,
        "aggregate_gflops": round(total_flops / total_seconds / 1e9, 1),
        "step_matmul_seconds": round(total_seconds, 4),
    }


def measured_step_shape() -> tuple[int, int, str]:
    """Tokens and trained positions per step of our last training benchmark, or defaults.

    Returns:
        ``(tokens_per_step, trained_positions, source)``.
    """
    path = RESULTS_DIR / "training_throughput.json"
    try:
        medians = json.loads(path.read_text(encoding="utf-8"))["medians"]
        tokens = round(medians["ours_tokens_per_step"])
        return tokens, round(medians["ours_trained_positions_per_step"]), str(path.name)
    except (OSError, KeyError, TypeError, ValueError):
        trained = int(DEFAULT_TOKENS_PER_STEP * DEFAULT_TRAINED_SHARE)
        return DEFAULT_TOKENS_PER_STEP, trained, "defaults (no training_throughput.json with tokens per step)"


def embedded_model_config() -> Any:
    """The config of the embedded model (the preset's), read from the model cache.

    Returns:
        A transformers config.
    """
    from transformers import AutoConfig

    from benchmarks.training_harness import MODEL_CACHE, PRESET, load_benchmark_settings
    from core.infrastructure.models.resolve import resolve_model

    settings = load_benchmark_settings(PRESET, [f"paths.model_cache={MODEL_CACHE}"])
    resolved = resolve_model(settings.model.name, settings.paths.model_cache, settings.model.revision)
    return AutoConfig.from_pretrained(resolved.path)


def run(quick: bool = False) -> dict[str, Any]:
    """Measures the achievable GEMM throughput of the embedded model's training step.

    Args:
        quick: Unused (the measurement takes seconds); kept for ``benchmarks.run``.

    Returns:
        ``{"figures": [...], "limit": {...}, "setup": {...}}``; with bf16 training also the fp32 limit.
    """
    from core.infrastructure.models.loading import select_device
    from core.infrastructure.training.precision import choose_precision

    config = embedded_model_config()
    tokens, trained, source = measured_step_shape()
    precision = choose_precision("auto", select_device()).name
    limit = measure_limit(config, tokens, trained, precision)
    outcome: dict[str, Any] = {
        "figures": [
            {
                "name": f"achievable GEMM throughput, {precision} (model's training shapes, FLOP-weighted)",
                "value": f"{limit['aggregate_gflops']:.0f} GFLOP/s",
                "target": "reference (MFU denominator)",
                "met": None,
            }
        ],
        "limit": limit,
        "setup": {"step_shape_from": source, "flops_per_token": lora_flops_per_token(config, trained / tokens)},
    }
    if precision != "fp32":
        outcome["limit_fp32"] = measure_limit(config, tokens, trained, "fp32")
        outcome["figures"].append(
            {
                "name": "same shapes in fp32",
                "value": f"{outcome['limit_fp32']['aggregate_gflops']:.0f} GFLOP/s",
                "target": "reference",
                "met": None,
            }
        )
    return outcome


def main() -> int:
    """``python -m benchmarks.gemm_limit``: writes ``benchmarks/results/gemm_limit.json``.

    Returns:
        0.
    """
    from core.logging_setup import configure_logging

    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    configure_logging()
    outcome = run()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "gemm_limit.json").write_text(json.dumps(outcome, indent=2), encoding="utf-8")
    for row in outcome["limit"]["shapes"]:
        logger.info(
            "{:>9} {:>24} x{:<3} {:>8.1f} GFLOP/s", row["name"], row["product"], row["count_per_step"], row["gflops"]
        )
    logger.info("{}", json.dumps(outcome["figures"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
