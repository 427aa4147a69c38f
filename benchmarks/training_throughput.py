"""Training throughput: Finetune Studio's ``train`` vs TRL's ``SFTTrainer`` tuned, and TRL's defaults, at equal tokens per step.

All sides train SmolLM2-135M-Instruct with the same LoRA adapters (rank, alpha, dropout, target
modules of ``examples/configs/smollm2-lora.yaml``), the same data (the demo dataset's train split;
the TRL sides get conversations and tokenize them themselves), the same precision
(``training.precision=auto``: bf16 on CPUs with AMX or AVX512-BF16 and on CUDA, else fp32), the
same number of steps and optimisation hyper-parameters (learning rate, schedule, warm-up, seed).

* ``ours``: the ``train`` use case as shipped (padding-free batches of ``per_device_batch_size``
  examples, logits only at trained positions, no gradient checkpointing);
* ``trl_tuned``: TRL as a capable user configures it (:mod:`benchmarks.trl_sides`: BFD packing,
  which is padding-free in TRL 1.x, ``max_length`` = our ``data.max_seq_length``, no gradient
  checkpointing, loss on the answers only) with as many packed sequences per step as give **our
  tokens per optimizer step**; both sides' measured tokens per step are reported with their ratio;
* ``trl_defaults``: a plain ``SFTTrainer`` script (second reference);
* ``ours_checkpointed`` (full mode only): ours with gradient checkpointing, as TRL's default.

Each side runs in its own process (peak resident memory is per side) and the sides alternate
(forward order, then reversed, ...). The :class:`~benchmarks.throughput_probe.ThroughputProbe`
measures effective tokens/s (real tokens, timed from the end of step 1 to the end of the last),
tokens and trained positions per step, padding waste, peak memory and the final response-token
loss on the same held-out rows. After the rounds the GEMM limit of the model's own training
shapes (:mod:`benchmarks.gemm_limit`) is measured in the same run, and the model FLOPs utilisation
of each side is ``flops_per_token x tokens/s / limit`` (formula in :mod:`benchmarks.gemm_limit`).

Targets (issue #19): ours >= 2.0x tuned TRL's tokens/s, peak memory no higher, final response loss
no worse than +1 %, MFU >= 20 % of the GEMM limit. ``python -m benchmarks.training_throughput
[--quick]`` writes ``benchmarks/results/training_throughput.json``.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

from loguru import logger

from benchmarks.training_harness import (
    PRESET,
    common_spec,
    load_benchmark_settings,
    prepare_benchmark_run,
    run_child,
)

TARGET_RATIO = 2.0
LOSS_TOLERANCE = 0.01
PADDING_TARGET = 0.05
TOKENS_PER_STEP_TOLERANCE = 0.15
MFU_TARGET = 0.20
FULL_SIDES = ("ours", "trl_tuned", "trl_defaults", "ours_checkpointed")
QUICK_SIDES = ("ours", "trl_tuned", "trl_defaults")


def side_spec(
    shared: dict[str, Any], side: str, index: int, ours_overrides: list[str], work_dir: Path
) -> dict[str, Any]:
    """The child spec of one side in one round.

    Args:
        shared: What all sides share (:func:`~benchmarks.training_harness.common_spec`).
        side: Side name.
        index: Round number.
        ours_overrides: Overrides of our run (also carried, unused, by the TRL sides).
        work_dir: Temporary directory of the benchmark.

    Returns:
        The spec.
    """
    overrides = [*ours_overrides, f"run_name={side}-{index}"]
    if side == "ours_checkpointed":
        overrides.append("training.gradient_checkpointing=true")
    return {**shared, "side": side, "work_dir": str(work_dir), "config": str(PRESET), "overrides": overrides}


def run_rounds(
    shared: dict[str, Any], sides: tuple[str, ...], rounds_count: int, ours_overrides: list[str], work_dir: Path
) -> list[dict[str, Any]]:
    """Runs every side once per round, alternating the order, and records per-round ratios.

    Args:
        shared: The shared spec.
        sides: Side names in the first round's order.
        rounds_count: Rounds to run.
        ours_overrides: Overrides of our run.
        work_dir: Temporary directory of the benchmark.

    Returns:
        Per-round figures of every side plus ``ratio`` (vs tuned TRL) and ``ratio_defaults``.
    """
    rounds = []
    for index in range(rounds_count):
        order = list(sides) if index % 2 == 0 else list(sides)[::-1]
        measured = {
            side: run_child(side_spec(shared, side, index, ours_overrides, work_dir), work_dir, f"{side}-{index}")
            for side in order
        }
        ours = measured["ours"]["tokens_per_second"]
        rounds.append(
            {
                "order": order,
                "ratio": round(ours / max(measured["trl_tuned"]["tokens_per_second"], 1e-9), 3),
                "ratio_defaults": round(ours / max(measured["trl_defaults"]["tokens_per_second"], 1e-9), 3),
                **measured,
            }
        )
    return rounds


def run(quick: bool = False) -> dict[str, Any]:
    """Measures our training throughput against tuned TRL and TRL's defaults, then the MFU.

    Args:
        quick: Two rounds of 4 steps at batch size 4 with 8 scored examples, without the checkpointed
            side (instead of three rounds of 8 steps at the preset's batch size 8 with 32 scored examples).

    Returns:
        ``{"figures": [...], "medians": {...}, "rounds": [...], "setup": {...}, "mfu": {...}}``.
    """
    from benchmarks.trl_sides import tuned_batch_size

    rounds_count, steps, eval_samples = (2, 4, 8) if quick else (3, 8, 32)
    with tempfile.TemporaryDirectory(prefix="ft-bench-throughput-") as temporary:
        work_dir = Path(temporary)
        quick_batch = ["training.per_device_batch_size=4"] if quick else []
        data_dir, ours_overrides = prepare_benchmark_run(work_dir, steps, quick_batch)
        shared = common_spec(load_benchmark_settings(PRESET, ours_overrides), data_dir, eval_samples)
        tuned = tuned_batch_size(data_dir, shared["hyper"]["batch_size"], shared["max_length"])
        shared["trl_tuned_batch_size"] = tuned["batch_size"]
        logger.info("Tuned TRL: {} packed sequences per step ({})", tuned["batch_size"], tuned)
        sides = QUICK_SIDES if quick else FULL_SIDES
        rounds = run_rounds(shared, sides, rounds_count, ours_overrides, work_dir)
    outcome = summarize(rounds, shared, steps, quick)
    outcome["setup"]["trl_tuned_batch_choice"] = tuned
    outcome["mfu"] = model_flops_utilisation(outcome["medians"], shared)
    outcome["figures"].append(mfu_figure(outcome["mfu"]))
    return outcome


def side_median(rounds: list[dict[str, Any]], side: str, key: str) -> float | None:
    """Median over rounds of one figure of one side.

    Args:
        rounds: Per-round measurements.
        side: Side name.
        key: Figure name in the side's summary.

    Returns:
        The median, or None when no round has the side or the figure.
    """
    values = [round_[side][key] for round_ in rounds if side in round_ and round_[side].get(key) is not None]
    return statistics.median(values) if values else None


def side_medians(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of every side's tokens/s, tokens per step, memory, loss and padding waste.

    Args:
        rounds: Per-round measurements.

    Returns:
        ``<side>_<figure>`` medians plus the median ratios.
    """
    keys = (
        "tokens_per_second",
        "tokens_per_step",
        "trained_positions_per_step",
        "peak_memory_mb",
        "final_loss",
        "padding_waste",
    )
    medians: dict[str, Any] = {
        f"{side}_{key}": side_median(rounds, side, key) for side in FULL_SIDES if side in rounds[0] for key in keys
    }
    medians["ratio_vs_trl_tuned"] = statistics.median(round_["ratio"] for round_ in rounds)
    medians["ratio_vs_trl_defaults"] = statistics.median(round_["ratio_defaults"] for round_ in rounds)
    return medians


def _figure(name: str, value: Any, target: str, met: bool | None) -> dict[str, Any]:
    return {"name": name, "value": value, "target": target, "met": met}


def _relative_difference(ours: float | None, baseline: float | None) -> float | None:
    if ours is None or baseline is None:
        return None
    return (ours - baseline) / baseline


def tuned_comparison_figures(medians: dict[str, Any]) -> list[dict[str, Any]]:
    """Speed, tokens per step, memory and loss of ours vs tuned TRL.

    Args:
        medians: :func:`side_medians`.

    Returns:
        Figures.
    """
    ratio = medians["ratio_vs_trl_tuned"]
    ours_step, trl_step = medians["ours_tokens_per_step"], medians["trl_tuned_tokens_per_step"]
    step_ratio = ours_step / trl_step if ours_step and trl_step else None
    ours_memory, trl_memory = medians["ours_peak_memory_mb"], medians["trl_tuned_peak_memory_mb"]
    ours_loss, trl_loss = medians["ours_final_loss"], medians["trl_tuned_final_loss"]
    loss_difference = _relative_difference(ours_loss, trl_loss)
    return [
        _figure(
            "effective tokens/s vs tuned TRL SFTTrainer (median ratio)",
            f"{ratio:.2f}x ({medians['ours_tokens_per_second']:.1f} vs {medians['trl_tuned_tokens_per_second']:.1f})",
            f">= {TARGET_RATIO}x",
            ratio >= TARGET_RATIO,
        ),
        _figure(
            "real tokens per optimizer step, ours vs tuned TRL (measured)",
            None if step_ratio is None else f"{ours_step:.0f} vs {trl_step:.0f} (ratio {step_ratio:.2f})",
            f"equal within {TOKENS_PER_STEP_TOLERANCE:.0%}",
            None if step_ratio is None else abs(step_ratio - 1) <= TOKENS_PER_STEP_TOLERANCE,
        ),
        _figure(
            "peak memory MB, ours vs tuned TRL",
            f"{ours_memory:.0f} vs {trl_memory:.0f}",
            "ours no higher",
            ours_memory <= trl_memory,
        ),
        _figure(
            "final response loss, ours vs tuned TRL (relative difference)",
            None if loss_difference is None else f"{loss_difference:+.2%} ({ours_loss:.4f} vs {trl_loss:.4f})",
            f"at most +{LOSS_TOLERANCE:.0%}",
            None if loss_difference is None else loss_difference <= LOSS_TOLERANCE,
        ),
    ]


def reference_figures(medians: dict[str, Any]) -> list[dict[str, Any]]:
    """Ours vs TRL's defaults, the checkpointed variant (full mode) and our padding waste.

    Args:
        medians: :func:`side_medians`.

    Returns:
        Figures.
    """
    figures = [
        _figure(
            "reference: tokens/s vs TRL defaults (median ratio); peak memory MB ours vs TRL defaults",
            f"{medians['ratio_vs_trl_defaults']:.2f}x; "
            f"{medians['ours_peak_memory_mb']:.0f} vs {medians['trl_defaults_peak_memory_mb']:.0f}",
            "reference",
            None,
        ),
        _figure(
            "padding waste (ours)",
            f"{medians['ours_padding_waste']:.1%}",
            f"<= {PADDING_TARGET:.0%}",
            medians["ours_padding_waste"] <= PADDING_TARGET,
        ),
    ]
    if medians.get("ours_checkpointed_tokens_per_second"):
        figures.append(
            _figure(
                "ours with gradient checkpointing: tokens/s, peak memory MB",
                f"{medians['ours_checkpointed_tokens_per_second']:.1f}, {medians['ours_checkpointed_peak_memory_mb']:.0f}",
                "reference",
                None,
            )
        )
    return figures


def summarize(rounds: list[dict[str, Any]], shared: dict[str, Any], steps: int, quick: bool) -> dict[str, Any]:
    """Turns the rounds into figures (medians), the setup and a diagnosis.

    Args:
        rounds: Per-round measurements of every side.
        shared: The shared spec (model, LoRA config, precision, hyper-parameters).
        steps: Training steps per side.
        quick: Whether this was a quick run.

    Returns:
        The benchmark outcome (without the MFU, added by :func:`run`).
    """
    medians = side_medians(rounds)
    return {
        "figures": [*tuned_comparison_figures(medians), *reference_figures(medians)],
        "setup": {
            "model": shared["model_path"],
            "steps_per_side": steps,
            "timed": "end of step 1 to end of the last step",
            "rounds": len(rounds),
            "quick": quick,
            "precision": shared["precision"],
            "max_length": shared["max_length"],
            "lora": shared["lora"],
            "hyper": shared["hyper"],
            "trl_tuned_batch_size": shared["trl_tuned_batch_size"],
            "eval_samples": shared["eval_samples"],
        },
        "medians": medians,
        "rounds": rounds,
        "diagnosis": diagnose(rounds),
    }


def model_flops_utilisation(medians: dict[str, Any], shared: dict[str, Any]) -> dict[str, Any]:
    """Measures the GEMM limit of our step's shapes and each side's model FLOPs utilisation against it.

    Args:
        medians: :func:`side_medians` (tokens/s, tokens and trained positions per step).
        shared: The shared spec (``model_path``, ``precision``).

    Returns:
        The limit, FLOPs per token and MFU per side (fractions).
    """
    from transformers import AutoConfig

    from benchmarks.gemm_limit import lora_flops_per_token, measure_limit

    config = AutoConfig.from_pretrained(shared["model_path"])
    tokens = round(medians["ours_tokens_per_step"] or 1)
    trained = round(medians["ours_trained_positions_per_step"] or tokens)
    limit = measure_limit(config, tokens, trained, shared["precision"])
    flops_per_token = lora_flops_per_token(config, trained / tokens)
    utilisation = {
        side: round(flops_per_token * medians[f"{side}_tokens_per_second"] / (limit["aggregate_gflops"] * 1e9), 4)
        for side in ("ours", "trl_tuned", "trl_defaults")
        if medians.get(f"{side}_tokens_per_second")
    }
    return {
        "formula": "4 * non-embedding params + 4 * hidden * vocab * trained share (LoRA: forward + input gradient)",
        "flops_per_token": flops_per_token,
        "gemm_limit": limit,
        "utilisation": utilisation,
    }


def mfu_figure(mfu: dict[str, Any]) -> dict[str, Any]:
    """The MFU figure of ours (tuned TRL's in the value for reference).

    Args:
        mfu: :func:`model_flops_utilisation`.

    Returns:
        The figure.
    """
    utilisation, limit = mfu["utilisation"], mfu["gemm_limit"]
    return _figure(
        f"model FLOPs utilisation vs the GEMM limit ({limit['aggregate_gflops']:.0f} GFLOP/s {limit['precision']})",
        f"ours {utilisation.get('ours', 0):.1%}, tuned TRL {utilisation.get('trl_tuned', 0):.1%} "
        f"({mfu['flops_per_token'] / 1e6:.0f} MFLOP/token)",
        f">= {MFU_TARGET:.0%}",
        utilisation.get("ours", 0) >= MFU_TARGET,
    )


def diagnose(rounds: list[dict[str, Any]]) -> list[str]:
    """Settings that explain the differences, from the first round.

    Args:
        rounds: Per-round measurements.

    Returns:
        Human-readable findings.
    """
    first = rounds[0]
    ours, tuned, defaults = first["ours"], first["trl_tuned"], first["trl_defaults"]
    return [
        f"tuned TRL: batch {tuned.get('batch_size')} packed sequences of <= {tuned.get('max_length')} tokens, "
        f"packing={tuned.get('packing')} ({tuned.get('packing_strategy')}), padding_free={tuned.get('padding_free')}, "
        f"gradient_checkpointing={tuned.get('gradient_checkpointing')}, padding waste {tuned.get('padding_waste')}",
        f"TRL defaults: batch {defaults.get('batch_size')}, gradient_checkpointing="
        f"{defaults.get('gradient_checkpointing')}, padding waste {defaults.get('padding_waste')}, loss on every token",
        f"ours: packing={ours.get('packing')}, padding waste {ours.get('padding_waste')}, tokens/step "
        f"{ours.get('tokens_per_step')}, trained positions/step {ours.get('trained_positions_per_step')} "
        f"(tuned TRL {tuned.get('trained_positions_per_step')}; ours computes logits only there)",
        f"precision ours {ours.get('precision')}, TRL {tuned.get('precision')}; torch threads "
        f"{ours.get('torch_threads')} / {tuned.get('torch_threads')}",
    ]


def main() -> int:
    """``python -m benchmarks.training_throughput [--quick]``: writes ``benchmarks/results/training_throughput.json``.

    Returns:
        0.
    """
    from benchmarks.run import standalone_main

    return standalone_main(
        "training_throughput", run, __doc__, "Two rounds of 4 steps at batch 4, no checkpointed side."
    )


if __name__ == "__main__":
    raise SystemExit(main())
