"""Technique costs on the embedded model: LoRA vs Full throughput, QLoRA vs LoRA peak memory.

Each round trains SmolLM2-135M-Instruct with Full finetuning, LoRA and QLoRA through our ``train``
use case (same data: the demo train split; same steps, batch size and precision), each in its own
process, in a rotating order. The :class:`~benchmarks.throughput_probe.ThroughputProbe`
measures effective tokens/s (step 1 excluded) and the peak resident memory of the process. The
figures are the medians over rounds of the per-round ratios:

* LoRA tokens/s / Full tokens/s (LoRA skips the weight gradients and optimizer update of the base);
* QLoRA peak memory / LoRA peak memory (4-bit base weights).

On a CPU without native bf16 QLoRA computes in float32 (``technique.compute_dtype=float32``);
on CPU, peak memory is the process's resident set (Python and torch included), so the QLoRA
saving is diluted by the runtime; on CUDA it is the allocator peak.

``python -m benchmarks.technique_costs [--quick]`` writes ``benchmarks/results/technique_costs.json``.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.training_harness import (
    PRESET,
    common_spec,
    load_benchmark_settings,
    prepare_benchmark_run,
    run_child,
)
from core.domain.techniques import technique_spec

TECHNIQUE_OVERRIDES = {
    "full": ["technique=full", "training.learning_rate=1e-4"],
    "lora": ["technique=lora"],
    "qlora": ["technique=qlora"],
}


def technique_overrides(technique: str, precision: str) -> list[str]:
    """Overrides selecting a technique (QLoRA computes in float32 when training runs in fp32).

    Args:
        technique: A registered technique (``full``, ``lora`` and ``qlora`` carry their own overrides).
        precision: The training precision chosen for this machine.

    Returns:
        ``key=value`` overrides.
    """
    overrides = list(TECHNIQUE_OVERRIDES.get(technique, [f"technique={technique}"]))
    if "compute_dtype" in technique_spec(technique).settings.model_fields and precision == "fp32":
        overrides.append("technique.compute_dtype=float32")
    return overrides


def run(quick: bool = False) -> dict[str, Any]:
    """Measures the throughput and memory of Full, LoRA and QLoRA training.

    Args:
        quick: Two rounds of 3 steps at batch size 4 (instead of three rounds of 6 steps at batch size 8).

    Returns:
        ``{"figures": [...], "rounds": [...], "medians": {...}}``.
    """
    rounds_count, steps, batch_size = (2, 3, 4) if quick else (3, 6, 8)
    techniques = list(TECHNIQUE_OVERRIDES)
    with tempfile.TemporaryDirectory(prefix="ft-bench-techniques-") as temporary:
        work_dir = Path(temporary)
        extra = [f"training.per_device_batch_size={batch_size}", "monitoring.tensorboard=false"]
        data_dir, run_overrides = prepare_benchmark_run(work_dir, steps, extra)
        shared = common_spec(load_benchmark_settings(PRESET, run_overrides), data_dir, eval_samples=0)
        rounds = []
        for index in range(rounds_count):
            order = techniques[index % len(techniques) :] + techniques[: index % len(techniques)]
            measured = {}
            for technique in order:
                spec = {
                    **shared,
                    "side": "ours",
                    "work_dir": str(work_dir),
                    "config": str(PRESET),
                    "overrides": [
                        *run_overrides,
                        *technique_overrides(technique, shared["precision"]),
                        f"run_name={technique}-{index}",
                    ],
                }
                measured[technique] = run_child(spec, work_dir, f"{technique}-{index}")
            rounds.append(
                {
                    "order": order,
                    "lora_vs_full_throughput": round(
                        measured["lora"]["tokens_per_second"] / measured["full"]["tokens_per_second"], 3
                    ),
                    "qlora_vs_lora_memory": round(
                        measured["qlora"]["peak_memory_mb"] / measured["lora"]["peak_memory_mb"], 3
                    ),
                    **measured,
                }
            )
    throughput = statistics.median(round_["lora_vs_full_throughput"] for round_ in rounds)
    memory = statistics.median(round_["qlora_vs_lora_memory"] for round_ in rounds)
    medians = {
        technique: {
            key: statistics.median(round_[technique][key] for round_ in rounds)
            for key in ("tokens_per_second", "peak_memory_mb")
        }
        for technique in techniques
    }
    return {
        "figures": [
            {
                "name": "LoRA vs Full throughput (tokens/s ratio, median)",
                "value": round(throughput, 2),
                "target": "> 1 (LoRA faster)",
                "met": throughput > 1.0,
            },
            {
                "name": "QLoRA vs LoRA peak memory (ratio, median)",
                "value": round(memory, 2),
                "target": "< 1 (QLoRA smaller)",
                "met": memory < 1.0,
            },
        ],
        "setup": {
            "steps": steps,
            "batch_size": batch_size,
            "rounds": rounds_count,
            "precision": shared["precision"],
            "quick": quick,
            "memory": "peak RSS of the training process" if not shared["cuda"] else "peak CUDA allocation",
        },
        "medians": medians,
        "rounds": rounds,
    }


def main() -> int:
    """``python -m benchmarks.technique_costs [--quick]``: writes ``benchmarks/results/technique_costs.json``.

    Returns:
        0.
    """
    from benchmarks.run import standalone_main

    return standalone_main("technique_costs", run, __doc__, "Fewer rounds and steps (smoke run).")


if __name__ == "__main__":
    raise SystemExit(main())
