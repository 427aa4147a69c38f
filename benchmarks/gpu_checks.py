"""CUDA checks of issue #19 (run by ``benchmarks/gpu.sh``): ours vs TRL, and the memory estimator, on one GPU.

For the embedded SmolLM2-135M and a randomly initialised Llama-3.2-1B-shaped model (built from a
``LlamaConfig``, no download; the embedded tokenizer is saved with it), and for LoRA, QLoRA and
Full finetuning, in bf16 with ``sdpa`` attention, one round of:

* ``ours``: the ``train`` use case (padding-free batches of ``BATCH_SIZE`` examples);
* ``trl_tuned``: :func:`benchmarks.trl_sides.run_trl_tuned` (BFD packing, no gradient
  checkpointing, answers-only loss, tokens per step matched to ours), the model loaded as TRL's
  recipes do (:func:`benchmarks.trl_sides.model_for_technique`);
* ``trl_defaults`` (LoRA only, to stay within the time budget).

Each row has tokens/s, tokens per step and the CUDA allocator's peak memory of every side, the
memory estimator's prediction for ours (``core.domain.memory.estimate_memory`` with the measured
tokens per step as ``BATCH_SIZE`` sequences of their mean length) and, for LoRA, the model FLOPs
utilisation against the GEMM limit of the model's shapes on this GPU (:mod:`benchmarks.gemm_limit`).
Rows are written to ``benchmarks/results/gpu-training.json`` after every measurement, so a run cut
short keeps what it measured. Exits with status 2 and a message when no CUDA device exists.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loguru import logger

from benchmarks.random_models import save_random_llama
from benchmarks.technique_costs import technique_overrides
from benchmarks.training_harness import (
    MODEL_CACHE,
    PRESET,
    RESULTS_DIR,
    common_spec,
    load_benchmark_settings,
    prepare_benchmark_run,
    run_child,
)

NO_CUDA_EXIT = 2
STEPS = 12
BATCH_SIZE = 16
TECHNIQUES = ("lora", "qlora", "full")
LLAMA_1B_SHAPE = {
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "vocab_size": 128256,
    "max_position_embeddings": 2048,
    "rope_theta": 500000.0,
    "tie_word_embeddings": True,
}
RESULT_FILE = RESULTS_DIR / "gpu-training.json"


def require_cuda() -> str:
    """Returns the GPU's name, or exits with :data:`NO_CUDA_EXIT` and a message when there is none.

    Returns:
        ``torch.cuda.get_device_name(0)``.
    """
    import torch

    if not torch.cuda.is_available():
        logger.error(
            "No CUDA device: the GPU checks need one (torch {} sees none). Nothing was run.", torch.__version__
        )
        raise SystemExit(NO_CUDA_EXIT)
    return torch.cuda.get_device_name(0)


def predicted_memory_mb(entry: Any, technique: str, settings: Any, tokens_per_step: float) -> float:
    """The memory estimator's peak for ours, with the measured tokens per step as equal sequences.

    Args:
        entry: Catalog entry of the model.
        technique: ``lora``, ``qlora`` or ``full``.
        settings: Our run's settings.
        tokens_per_step: Measured real tokens per step of ours.

    Returns:
        Predicted peak in MB.
    """
    from core.domain.memory import estimate_memory

    batch = settings.training.per_device_batch_size
    estimate = estimate_memory(
        entry,
        technique,
        max(1, math.ceil(tokens_per_step / batch)),
        batch,
        precision="bf16",
        gradient_checkpointing=settings.training.gradient_checkpointing,
        lora_rank=getattr(settings.technique, "rank", 16),
        optimizer=settings.training.optimizer,
        device="cuda",
    )
    return estimate.total_bytes / 2**20


def lora_utilisation(model_path: str, measured: dict[str, Any]) -> dict[str, Any]:
    """MFU of the LoRA sides against the GEMM limit of the model's shapes on this GPU.

    Args:
        model_path: Model directory (its config).
        measured: Figures by side (``ours`` gives the step shape).

    Returns:
        The limit in GFLOP/s and the utilisation per side.
    """
    from transformers import AutoConfig

    from benchmarks.gemm_limit import lora_flops_per_token, measure_limit

    config = AutoConfig.from_pretrained(model_path)
    tokens = round(measured["ours"]["tokens_per_step"])
    trained = round(measured["ours"]["trained_positions_per_step"]) or tokens
    limit = measure_limit(config, tokens, trained, "bf16")
    flops = lora_flops_per_token(config, trained / tokens)
    return {
        "gemm_limit_gflops": limit["aggregate_gflops"],
        "utilisation": {
            side: round(flops * figures["tokens_per_second"] / (limit["aggregate_gflops"] * 1e9), 4)
            for side, figures in measured.items()
        },
    }


def measure_technique(context: dict[str, Any], model: dict[str, Any], technique: str) -> dict[str, Any]:
    """Runs ours and the TRL sides for one model and technique and compares them.

    Args:
        context: ``work_dir``, ``data_dir``, ``overrides``, ``shared`` and ``tuned_batch_size``.
        model: ``label``, ``name`` (for ours), ``path`` (for TRL) and ``entry`` (for the estimator).
        technique: ``lora``, ``qlora`` or ``full``.

    Returns:
        One result row.
    """
    work_dir = context["work_dir"]
    label = f"{model['label']}-{technique}"
    overrides = [
        *context["overrides"],
        f"model.name={model['name']}",
        "model.attn_implementation=sdpa",
        f"run_name={label}",
        *technique_overrides(technique, "bf16"),
    ]
    shared = {**context["shared"], "model_path": model["path"], "technique": technique, "attn_implementation": "sdpa"}
    sides = ("ours", "trl_tuned", "trl_defaults") if technique == "lora" else ("ours", "trl_tuned")
    measured = {}
    for side in sides:
        spec = {**shared, "side": side, "work_dir": str(work_dir), "config": str(PRESET), "overrides": overrides}
        measured[side] = run_child(spec, work_dir, f"{label}-{side}")
    settings = load_benchmark_settings(PRESET, overrides)
    predicted = predicted_memory_mb(model["entry"], technique, settings, measured["ours"]["tokens_per_step"])
    ours = measured["ours"]
    row = {
        "model": model["label"],
        "technique": technique,
        "sides": measured,
        "ratio_vs_trl_tuned": round(ours["tokens_per_second"] / measured["trl_tuned"]["tokens_per_second"], 3),
        "predicted_peak_mb": round(predicted, 1),
        "predicted_over_measured": round(predicted / ours["peak_memory_mb"], 3),
    }
    if technique == "lora":
        row["mfu"] = lora_utilisation(model["path"], measured)
    return row


def models_to_check(work_dir: Path) -> list[dict[str, Any]]:
    """The embedded model and the random Llama-3.2-1B-shaped one.

    Args:
        work_dir: Where the random model is saved.

    Returns:
        ``label``, ``name``, ``path`` and ``entry`` of each model.
    """
    import torch

    from core.domain.catalog import CATALOG, EMBEDDED_MODEL_NAME
    from core.infrastructure.models.resolve import resolve_model

    embedded = resolve_model(EMBEDDED_MODEL_NAME, MODEL_CACHE)
    llama_dir, llama_entry = save_random_llama(
        embedded.path, work_dir / "llama-3.2-1b-shaped", "llama-3.2-1b-shaped", LLAMA_1B_SHAPE, torch.bfloat16
    )
    return [
        {
            "label": "smollm2-135m",
            "name": EMBEDDED_MODEL_NAME,
            "path": str(embedded.path),
            "entry": CATALOG[EMBEDDED_MODEL_NAME],
        },
        {"label": "llama-3.2-1b-shaped", "name": str(llama_dir), "path": str(llama_dir), "entry": llama_entry},
    ]


def run_checks(gpu: str) -> dict[str, Any]:
    """Measures every model and technique, writing the results after each row.

    Args:
        gpu: The GPU's name.

    Returns:
        ``{"gpu": ..., "setup": {...}, "rows": [...]}``.
    """
    from benchmarks.trl_sides import tuned_batch_size

    with tempfile.TemporaryDirectory(prefix="ft-bench-gpu-") as temporary:
        work_dir = Path(temporary)
        data_dir, overrides = prepare_benchmark_run(work_dir, STEPS, [f"training.per_device_batch_size={BATCH_SIZE}"])
        shared = common_spec(load_benchmark_settings(PRESET, overrides), data_dir, eval_samples=16)
        shared["trl_tuned_batch_size"] = tuned_batch_size(data_dir, BATCH_SIZE, shared["max_length"])["batch_size"]
        context = {"work_dir": work_dir, "overrides": overrides, "shared": shared}
        outcome: dict[str, Any] = {
            "gpu": gpu,
            "date": time.strftime("%Y-%m-%d"),
            "setup": {"steps": STEPS, "batch_size": BATCH_SIZE, "precision": shared["precision"], "attention": "sdpa"},
            "rows": [],
        }
        for model in models_to_check(work_dir):
            for technique in TECHNIQUES:
                try:
                    outcome["rows"].append(measure_technique(context, model, technique))
                except RuntimeError as error:  # one failing case must not lose the others
                    logger.error("{} {} failed: {}", model["label"], technique, str(error)[-600:])
                    outcome["rows"].append(
                        {"model": model["label"], "technique": technique, "error": str(error)[-2000:]}
                    )
                RESULT_FILE.write_text(json.dumps(outcome, indent=2, default=str), encoding="utf-8")
    return outcome


def main() -> int:
    """``python -m benchmarks.gpu_checks`` (through ``benchmarks/gpu.sh``).

    Returns:
        0 when every row was measured, 1 when some failed, 2 without a CUDA device.
    """
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    from core.logging_setup import configure_logging

    configure_logging()
    gpu = require_cuda()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    outcome = run_checks(gpu)
    for row in outcome["rows"]:
        logger.info("{}", {key: value for key, value in row.items() if key != "sides"})
    return 1 if any("error" in row for row in outcome["rows"]) else 0


if __name__ == "__main__":
    sys.exit(main())
