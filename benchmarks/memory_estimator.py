"""Memory estimator: ``core.domain.memory.estimate_memory`` predictions vs measured training peaks.

For every technique (Full, LoRA, QLoRA, Prefix) on the embedded SmolLM2-135M and on a tiny llama
(hidden size 16, two layers, the embedded tokenizer), one short run of our ``train`` use case is
measured in its own process on fixed-length sequences (no packing, so the estimator's
``sequence_length x batch_size`` is exactly what the model sees). The measured peak is the peak
resident memory of the process on CPU (the allocator peak on CUDA), recorded at the end of
training by :class:`~benchmarks.throughput_probe.ThroughputProbe`. The figure per technique is
predicted / measured (target: within 25 %).

``python -m benchmarks.memory_estimator [--quick]`` writes ``benchmarks/results/memory_estimator.json``.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

from loguru import logger

from benchmarks.random_models import save_random_llama
from benchmarks.technique_costs import technique_overrides
from benchmarks.training_harness import (
    MODEL_CACHE,
    isolated_overrides,
    load_benchmark_settings,
    run_child,
)
from core.domain.techniques import technique_names

TOLERANCE = 0.25
TECHNIQUES = technique_names()
SEQUENCE_LENGTH = 128
BATCH_SIZE = 4


def fixed_length_data(destination: Path, tokenizer_dir: Path, count: int = 32) -> Path:
    """Writes a prepared dataset of ``count`` sequences of exactly ``SEQUENCE_LENGTH`` tokens.

    The second half of every sequence is trained (labels), like a prompt/response pair.

    Args:
        destination: Output directory.
        tokenizer_dir: Model directory whose tokenizer and chat template go with the data.
        count: Number of training sequences.

    Returns:
        The prepared directory.
    """
    import shutil

    from core.infrastructure.data.prepared import save_prepared
    from core.infrastructure.data.tokenize import IGNORE_INDEX
    from core.infrastructure.models.loading import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_dir)
    generator = random.Random(0)
    rows = []
    for _ in range(count):
        input_ids = [generator.randrange(100, 20_000) for _ in range(SEQUENCE_LENGTH)]
        half = SEQUENCE_LENGTH // 2
        rows.append({"input_ids": input_ids, "labels": [IGNORE_INDEX] * half + input_ids[half:]})
    save_prepared(destination, "memory-benchmark", tokenizer.chat_template or "", {}, {"train": rows})
    for split in ("validation", "test"):  # zero-row splits cannot be loaded back; missing ones read as empty
        shutil.rmtree(destination / "tokenized" / split, ignore_errors=True)
    return destination


def build_tiny_llama(tokenizer_dir: Path, destination: Path) -> tuple[Path, Any]:
    """Builds a tiny llama (hidden 16, 2 layers) with the embedded tokenizer and its catalog shape.

    Args:
        tokenizer_dir: Directory of the embedded model (tokenizer source).
        destination: Output directory.

    Returns:
        The model directory and a :class:`~core.domain.catalog.CatalogEntry` describing it.
    """
    import torch
    from transformers import AutoTokenizer

    shape = {
        "vocab_size": len(AutoTokenizer.from_pretrained(str(tokenizer_dir))),
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "max_position_embeddings": 512,
        "tie_word_embeddings": True,
    }
    return save_random_llama(tokenizer_dir, destination, "tiny-llama", shape, torch.float32)


def run(quick: bool = False) -> dict[str, Any]:
    """Compares predicted and measured peak memory per technique on the 135M and a tiny model.

    Args:
        quick: The same measurement (one short run per technique and model is already small).

    Returns:
        ``{"figures": [...], "measurements": [...]}``.
    """
    import torch

    from core.domain.catalog import CATALOG, EMBEDDED_MODEL_NAME
    from core.domain.memory import estimate_memory
    from core.infrastructure.models.loading import select_device
    from core.infrastructure.models.resolve import resolve_model
    from core.infrastructure.training.precision import choose_precision

    device = "cuda" if torch.cuda.is_available() else "cpu"
    precision = choose_precision("auto", select_device()).name
    embedded = resolve_model(EMBEDDED_MODEL_NAME, MODEL_CACHE)
    measurements = []
    with tempfile.TemporaryDirectory(prefix="ft-bench-memory-") as temporary:
        work_dir = Path(temporary)
        data_dir = fixed_length_data(work_dir / "fixed-length-data", embedded.path)
        tiny_dir, tiny_entry = build_tiny_llama(embedded.path, work_dir / "tiny-llama")
        models = [
            ("tiny-llama", str(tiny_dir), tiny_entry),
            (EMBEDDED_MODEL_NAME, EMBEDDED_MODEL_NAME, CATALOG[EMBEDDED_MODEL_NAME]),
        ]
        for label, model_name, entry in models:
            for technique in TECHNIQUES:
                overrides = [
                    *isolated_overrides(work_dir),
                    f"model.name={model_name}",
                    f"data.dataset={data_dir}",
                    "training.max_steps=2",
                    "training.save_steps=100",
                    f"training.per_device_batch_size={BATCH_SIZE}",
                    "training.packing='off'",
                    "monitoring.tensorboard=false",
                    f"run_name={label}-{technique}",
                    *technique_overrides(technique, precision),
                ]
                settings = load_benchmark_settings(None, overrides)
                spec = {
                    "side": "ours",
                    "config": None,
                    "overrides": overrides,
                    "data_dir": str(data_dir),
                    "eval_samples": 0,
                    "pad_token_id": 0,
                    "work_dir": str(work_dir),
                }
                measured = run_child(spec, work_dir, f"{label}-{technique}")
                technique_settings = settings.technique
                estimate = estimate_memory(
                    entry,
                    technique,
                    SEQUENCE_LENGTH,
                    BATCH_SIZE,
                    precision=precision,
                    gradient_checkpointing=settings.training.gradient_checkpointing,
                    lora_rank=getattr(technique_settings, "rank", 16),
                    num_virtual_tokens=getattr(technique_settings, "num_virtual_tokens", 20),
                    optimizer=settings.training.optimizer,
                    device=device,
                )
                predicted_mb = estimate.total_bytes / 2**20
                ratio = predicted_mb / measured["peak_memory_mb"]
                measurements.append(
                    {
                        "model": label,
                        "technique": technique,
                        "predicted_mb": round(predicted_mb, 1),
                        "measured_mb": measured["peak_memory_mb"],
                        "ratio": round(ratio, 3),
                        "within_tolerance": abs(ratio - 1) <= TOLERANCE,
                        "trainable_parameters_predicted": estimate.trainable_parameters,
                        "trainable_parameters_measured": measured.get("trainable_parameters"),
                        "breakdown_gb": estimate.breakdown_gb(),
                    }
                )
                logger.info(
                    "{} {}: predicted {:.0f} MB, measured {:.0f} MB",
                    label,
                    technique,
                    predicted_mb,
                    measured["peak_memory_mb"],
                )
    figures = [
        {
            "name": f"predicted/measured peak, {row['model']} {row['technique']}",
            "value": row["ratio"],
            "target": f"within {TOLERANCE:.0%}",
            "met": row["within_tolerance"],
        }
        for row in measurements
    ]
    return {
        "figures": figures,
        "setup": {
            "sequence_length": SEQUENCE_LENGTH,
            "batch_size": BATCH_SIZE,
            "precision": precision,
            "device": device,
            "measured": "peak RSS of the training process" if device == "cpu" else "peak CUDA allocation",
            "quick": quick,
        },
        "measurements": measurements,
    }


def main() -> int:
    """``python -m benchmarks.memory_estimator [--quick]``: writes ``benchmarks/results/memory_estimator.json``.

    Returns:
        0.
    """
    from benchmarks.run import standalone_main

    return standalone_main("memory_estimator", run, __doc__, "Accepted for symmetry with the other benchmarks.")


if __name__ == "__main__":
    raise SystemExit(main())
