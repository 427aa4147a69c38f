"""Training throughput: Finetune Studio's ``train`` vs a plain TRL ``SFTTrainer`` script, on the embedded model.

Both sides train SmolLM2-135M-Instruct with the same LoRA adapters (rank, alpha, dropout, target
modules of ``examples/configs/smollm2-lora.yaml``), the same data (the demo dataset's train split;
the baseline gets it in ``messages`` format and tokenizes it itself), the same precision, batch
size, number of steps and optimisation hyper-parameters (learning rate, schedule, warm-up, seed:
matched only so that the loss comparison means something; none of them changes the speed). Every
other setting of the baseline is TRL's default (no packing, no padding-free batching, gradient
checkpointing on, random batches, its own collator and tokenization).

Each side runs in its own process (so peak resident memory is per side) and the sides alternate
(ours, baseline, baseline, ours, ...). A :class:`ThroughputProbe` callback, identical on both
sides, measures:

* effective tokens/s: real (non-padding) tokens fed to the model per second of training steps,
  timed from the end of the first step to the end of the last (model loading, tokenization and
  the first, warm-up step are excluded; data loading and collation are included);
* padding waste: share of the positions the model computed that were padding;
* peak resident memory of the process at the end of training;
* the final masked loss (response tokens only, token-weighted, ``core``'s ``response_loss``) on
  the same held-out examples for both sides.

The figure is the median over rounds of ours/baseline tokens per second (target at least 1.5x,
never below 1.3x on a 2-core CPU). ``python -m benchmarks.training_throughput [--quick]`` writes
``benchmarks/results/training_throughput.json``. The helpers here (probe, prepared benchmark
data, child processes) are shared with ``technique_costs`` and ``memory_estimator``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loguru import logger
from transformers import TrainerCallback

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
PRESET = REPO_ROOT / "examples" / "configs" / "smollm2-lora.yaml"
MODEL_CACHE = Path(os.environ.get("FINETUNE_PATHS__MODEL_CACHE", REPO_ROOT / ".cache" / "models"))
TARGET_RATIO = 1.5
FLOOR_RATIO = 1.3
LOSS_TOLERANCE = 0.01
PADDING_TARGET = 0.05
CHILD_TIMEOUT_S = 1800
CHILD_ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "WANDB_MODE": "disabled",
}


# --------------------------------------------------------------------------------------------
# Measurement inside a training process (both sides)
# --------------------------------------------------------------------------------------------


class ThroughputProbe(TrainerCallback):
    """Times training steps, counts the tokens the model really processes, and scores the result.

    A forward pre-hook on the top-level model counts, for every training forward pass, the
    positions computed (``input_ids.numel()``) and the real tokens (``attention_mask.sum()``, or
    every position for padding-free batches without a mask). Step ends are time-stamped; the rate
    is taken between the end of step ``warmup_steps`` and the end of the last step.

    Attributes:
        marks: ``(time, real_tokens, positions)`` at every step end.
        peak_memory_mb: Peak memory at the end of training (resident set on CPU, allocator peak on CUDA).
        final_loss: Masked response loss on the held-out rows after training (None without rows).
    """

    def __init__(self, eval_rows: list[dict[str, Any]], pad_token_id: int, warmup_steps: int = 1) -> None:
        """Creates the probe.

        Args:
            eval_rows: Held-out rows (``input_ids``, ``labels``) scored after training.
            pad_token_id: Padding id for the loss batches.
            warmup_steps: Steps excluded from the timing (the first one warms caches up).
        """
        self.eval_rows = eval_rows
        self.pad_token_id = pad_token_id
        self.warmup_steps = warmup_steps
        self.marks: list[tuple[float, int, int]] = []
        self.real_tokens = 0
        self.positions = 0
        self.peak_memory_mb = 0.0
        self.final_loss: float | None = None
        self.loss_seconds = 0.0
        self._handle: Any = None

    def _count(self, module: Any, args: tuple, kwargs: dict[str, Any]) -> None:
        if not module.training:
            return
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if input_ids is None:
            return
        mask = kwargs.get("attention_mask")
        self.positions += int(input_ids.numel())
        self.real_tokens += int(mask.sum()) if mask is not None else int(input_ids.numel())

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        """Attaches the token counter to the model."""
        self._handle = model.register_forward_pre_hook(self._count, with_kwargs=True)
        self.marks = [(time.perf_counter(), 0, 0)]

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Time-stamps the end of an optimizer step."""
        self.marks.append((time.perf_counter(), self.real_tokens, self.positions))

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        """Records the peak memory, detaches the counter and scores the trained model."""
        from core.infrastructure.training.resources import peak_memory_mb

        self.peak_memory_mb = peak_memory_mb()  # CUDA allocator peak on a GPU, else peak RSS
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        if self.eval_rows and model is not None:
            from core.infrastructure.evaluation.loss import response_loss

            started = time.perf_counter()
            self.final_loss = response_loss(
                model, self.eval_rows, batch_size=8, pad_token_id=self.pad_token_id, show_progress=False
            ).loss
            self.loss_seconds = time.perf_counter() - started

    def summary(self) -> dict[str, Any]:
        """Throughput, padding waste, memory and loss of the run.

        Returns:
            JSON-serialisable figures of this side.
        """
        steps = len(self.marks) - 1
        start = min(self.warmup_steps, max(steps - 1, 0))
        begin, end = self.marks[start], self.marks[-1]
        seconds = max(end[0] - begin[0], 1e-9)
        real, positions = end[1] - begin[1], end[2] - begin[2]
        return {
            "steps": steps,
            "timed_steps": steps - start,
            "timed_seconds": round(seconds, 3),
            "real_tokens": real,
            "positions": positions,
            "tokens_per_second": round(real / seconds, 2),
            "padding_waste": round(1 - real / positions, 4) if positions else None,
            "peak_memory_mb": round(self.peak_memory_mb, 1),
            "final_loss": self.final_loss,
            "loss_seconds": round(self.loss_seconds, 2),
        }


# --------------------------------------------------------------------------------------------
# Benchmark data and the two sides (run in child processes)
# --------------------------------------------------------------------------------------------


def isolated_overrides(work_dir: Path) -> list[str]:
    """Overrides that keep every path of a benchmark run inside ``work_dir`` (never in the repo).

    Args:
        work_dir: Temporary directory of the benchmark.

    Returns:
        ``key=value`` overrides.
    """
    return [
        f"paths.runs_dir={work_dir / 'runs'}",
        f"paths.data_dir={work_dir / 'data'}",
        f"paths.registry_dir={work_dir / 'registry'}",
        f"paths.model_cache={MODEL_CACHE}",
    ]


def load_benchmark_settings(config: Path | None, overrides: list[str]) -> Any:
    """Loads settings from a preset and overrides, ignoring the environment.

    Args:
        config: YAML preset (or None).
        overrides: ``key=value`` overrides.

    Returns:
        Validated settings.
    """
    from core.domain.config import load_settings, parse_overrides

    return load_settings(config, parse_overrides(overrides), read_environment=False)


def prepare_benchmark_data(settings: Any, destination: Path) -> Path:
    """Prepares the demo data as configured and writes a benchmark copy without a validation split.

    The copy holds the demo train split (what both sides train on) and, as its ``test`` split,
    the demo validation split (scored by the probe after training). Without a validation split
    our ``train`` does not evaluate during the run, exactly like the baseline (which has no eval
    dataset); evaluation time is therefore outside both measurements.

    Args:
        settings: Settings with the ``data`` section to prepare.
        destination: Directory of the benchmark copy.

    Returns:
        The benchmark prepared directory.
    """
    from core.application.prepare_data import prepare_data
    from core.infrastructure.data.prepared import save_prepared

    prepared = prepare_data(settings)
    rows = {
        split: [{"input_ids": row["input_ids"], "labels": row["labels"]} for row in prepared.tokenized(name).to_list()]
        for split, name in (("train", "train"), ("test", "validation"))
    }
    save_prepared(
        destination,
        f"{prepared.fingerprint}-benchmark",
        prepared.chat_template,
        {"train": prepared.conversations("train"), "test": prepared.conversations("validation")},
        rows,
        info={**prepared.info, "benchmark_copy_of": str(prepared.directory)},
    )
    # datasets cannot load the zero-row split save_prepared writes; a missing split reads as empty
    shutil.rmtree(destination / "tokenized" / "validation", ignore_errors=True)
    return destination


def _eval_rows(data_dir: Path, count: int) -> list[dict[str, Any]]:
    from core.infrastructure.data.prepared import load_prepared

    if count <= 0:
        return []
    rows = load_prepared(data_dir).tokenized("test").to_list()[:count]
    return [{"input_ids": row["input_ids"], "labels": row["labels"]} for row in rows]


def _run_ours(spec: dict[str, Any]) -> dict[str, Any]:
    """Trains with Finetune Studio's ``train`` use case (the product path, unchanged)."""
    import torch

    from core.application.train import train
    from core.domain.manifest import RunManifest

    settings = load_benchmark_settings(spec.get("config"), spec["overrides"])
    probe = ThroughputProbe(_eval_rows(Path(spec["data_dir"]), spec["eval_samples"]), spec["pad_token_id"])
    run_dir = train(settings, extra_callbacks=[probe])
    manifest = RunManifest.load(run_dir)
    return {
        **probe.summary(),
        "manifest_peak_memory_mb": manifest.metrics.get("peak_memory_mb"),
        "manifest_tokens_per_second": manifest.metrics.get("tokens_per_second"),
        "precision": manifest.hardware.get("precision"),
        "packing": manifest.hardware.get("packing"),
        "trainable_parameters": manifest.trainable_parameters,
        "torch_threads": torch.get_num_threads(),
    }


def _run_trl_baseline(spec: dict[str, Any]) -> dict[str, Any]:
    """The plain TRL script: ``SFTTrainer`` with default settings on a ``messages`` dataset.

    Only what the comparison must hold equal is set: model, data, LoRA config, precision, batch
    size, steps and the optimisation hyper-parameters.
    """
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from core.infrastructure.data.prepared import load_prepared

    prepared = load_prepared(Path(spec["data_dir"]))
    train_dataset = Dataset.from_list(
        [
            {"messages": [message.model_dump() for message in conversation.messages]}
            for conversation in prepared.conversations("train")
        ]
    )
    tokenizer = AutoTokenizer.from_pretrained(spec["model_path"])
    tokenizer.chat_template = prepared.chat_template
    lora = spec["lora"]
    peft_config = LoraConfig(
        r=lora["rank"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        target_modules=lora["target_modules"],
        task_type="CAUSAL_LM",
    )
    hyper = spec["hyper"]
    arguments = SFTConfig(
        output_dir=str(Path(spec["work_dir"]) / "trl-output"),
        per_device_train_batch_size=hyper["batch_size"],
        max_steps=hyper["max_steps"],
        learning_rate=hyper["learning_rate"],
        lr_scheduler_type=hyper["lr_scheduler"],
        warmup_steps=hyper["warmup"],
        seed=hyper["seed"],
        bf16=spec["precision"] == "bf16",
        fp16=spec["precision"] == "fp16",
    )
    probe = ThroughputProbe(_eval_rows(Path(spec["data_dir"]), spec["eval_samples"]), spec["pad_token_id"])
    trainer = SFTTrainer(
        model=spec["model_path"],
        args=arguments,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[probe],
    )
    trainer.train()
    return {
        **probe.summary(),
        "precision": spec["precision"],
        "gradient_checkpointing": arguments.gradient_checkpointing,
        "packing": arguments.packing,
        "padding_free": arguments.padding_free,
        "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "torch_threads": torch.get_num_threads(),
    }


SIDES = {"ours": _run_ours, "ours_checkpointed": _run_ours, "trl": _run_trl_baseline}
"""Sides of the comparison: ours as shipped, ours with gradient checkpointing (TRL's default), TRL."""


def run_child(spec: dict[str, Any], work_dir: Path, label: str) -> dict[str, Any]:
    """Runs one side in a fresh Python process and returns its figures.

    Args:
        spec: ``side`` (``ours`` or ``trl``) and what that side needs.
        work_dir: Temporary directory (spec, output and logs go there).
        label: Unique name of this child run.

    Returns:
        The side's figures plus ``wall_s``.

    Raises:
        RuntimeError: When the child fails (with the end of its log).
    """
    spec_file = work_dir / f"{label}.spec.json"
    output_file = work_dir / f"{label}.result.json"
    log_file = work_dir / f"{label}.log"
    spec_file.write_text(json.dumps({**spec, "output": str(output_file)}), encoding="utf-8")
    environment = {**os.environ, **CHILD_ENVIRONMENT}
    started = time.perf_counter()
    with log_file.open("w", encoding="utf-8") as log:
        completed = subprocess.run(
            [sys.executable, "-m", "benchmarks.training_throughput", "--child", str(spec_file)],
            cwd=REPO_ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=CHILD_TIMEOUT_S,
            check=False,
        )
    wall = time.perf_counter() - started
    if completed.returncode != 0 or not output_file.exists():
        tail = log_file.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"{label} failed (exit {completed.returncode}):\n{tail}")
    result = json.loads(output_file.read_text(encoding="utf-8"))
    result["wall_s"] = round(wall, 1)
    logger.info("{}: {}", label, {key: result.get(key) for key in ("tokens_per_second", "peak_memory_mb")})
    return result


def child_main(spec_file: Path) -> int:
    """Entry point of a child process: runs one side and writes its figures as JSON.

    Args:
        spec_file: The spec written by :func:`run_child`.

    Returns:
        0 on success.
    """
    from core.logging_setup import configure_logging

    configure_logging()
    spec = json.loads(Path(spec_file).read_text(encoding="utf-8"))
    result = SIDES[spec["side"]](spec)
    Path(spec["output"]).write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


# --------------------------------------------------------------------------------------------
# The comparison
# --------------------------------------------------------------------------------------------


def common_spec(settings: Any, data_dir: Path, eval_samples: int) -> dict[str, Any]:
    """What both sides share: model path, LoRA config, precision, hyper-parameters, data.

    Args:
        settings: Our settings for the run (preset plus overrides).
        data_dir: Benchmark prepared directory.
        eval_samples: Held-out rows scored after training.

    Returns:
        The shared part of a child spec.
    """
    import torch

    from core.infrastructure.models.loading import load_tokenizer, select_device
    from core.infrastructure.models.resolve import resolve_model
    from core.infrastructure.techniques.lora import target_modules_for
    from core.infrastructure.training.precision import choose_precision

    resolved = resolve_model(settings.model.name, settings.paths.model_cache, settings.model.revision)
    precision = choose_precision(settings.training.precision, select_device())
    technique = settings.technique
    targets = target_modules_for(technique, resolved.architecture)
    training = settings.training
    return {
        "data_dir": str(data_dir),
        "eval_samples": eval_samples,
        "model_path": str(resolved.path),
        "pad_token_id": int(load_tokenizer(resolved.path).pad_token_id),
        "precision": precision.name,
        "cuda": torch.cuda.is_available(),
        "lora": {
            "rank": technique.rank,
            "alpha": technique.alpha,
            "dropout": technique.dropout,
            "target_modules": targets if isinstance(targets, str) else list(targets),
        },
        "hyper": {
            "batch_size": training.per_device_batch_size,
            "max_steps": training.max_steps,
            "learning_rate": training.learning_rate,
            "lr_scheduler": training.lr_scheduler,
            "warmup": training.warmup_ratio,
            "seed": training.seed,
        },
    }


def _figure(name: str, value: Any, target: str, met: bool | None) -> dict[str, Any]:
    return {"name": name, "value": value, "target": target, "met": met}


def run(quick: bool = False) -> dict[str, Any]:
    """Measures our training throughput against the default TRL ``SFTTrainer`` script.

    Args:
        quick: Two rounds of 4 steps at batch size 4 with 8 scored examples (instead of three rounds of
            8 steps at the preset's batch size 8 with 32 scored examples).

    Returns:
        ``{"figures": [...], "rounds": [...], "setup": {...}}``.
    """
    rounds_count, steps, eval_samples = (2, 4, 8) if quick else (3, 8, 32)
    with tempfile.TemporaryDirectory(prefix="ft-bench-throughput-") as temporary:
        work_dir = Path(temporary)
        base = isolated_overrides(work_dir)
        settings = load_benchmark_settings(PRESET, base)
        data_dir = prepare_benchmark_data(settings, work_dir / "benchmark-data")
        ours_overrides = [
            *base,
            f"data.dataset={data_dir}",
            f"training.max_steps={steps}",
            f"training.save_steps={10 * steps}",
            *(["training.per_device_batch_size=4"] if quick else []),
        ]
        run_settings = load_benchmark_settings(PRESET, ours_overrides)
        shared = common_spec(run_settings, data_dir, eval_samples)
        rounds = []
        sides = list(SIDES)
        for index in range(rounds_count):
            order = sides if index % 2 == 0 else sides[::-1]
            measured = {}
            for side in order:
                spec = {**shared, "side": side, "work_dir": str(work_dir), "config": str(PRESET)}
                spec["overrides"] = [*ours_overrides, f"run_name={side}-{index}"]
                if side == "ours_checkpointed":
                    spec["overrides"].append("training.gradient_checkpointing=true")
                measured[side] = run_child(spec, work_dir, f"{side}-{index}")
            baseline = max(measured["trl"]["tokens_per_second"], 1e-9)
            rounds.append(
                {
                    "order": order,
                    "ratio": round(measured["ours"]["tokens_per_second"] / baseline, 3),
                    "ratio_checkpointed": round(measured["ours_checkpointed"]["tokens_per_second"] / baseline, 3),
                    **measured,
                }
            )
    return summarize(rounds, shared, steps, quick)


def _relative_difference(ours: float | None, baseline: float | None) -> float | None:
    if ours is None or baseline is None:
        return None
    return (ours - baseline) / baseline


def summarize(rounds: list[dict[str, Any]], shared: dict[str, Any], steps: int, quick: bool) -> dict[str, Any]:
    """Turns the rounds into the figures (medians) and a diagnosis when the target is missed.

    Args:
        rounds: Per-round measurements of both sides.
        shared: The shared spec (model, LoRA config, precision, hyper-parameters).
        steps: Training steps per side.
        quick: Whether this was a quick run.

    Returns:
        The benchmark outcome.
    """

    def median(side: str, key: str) -> float | None:
        values = [round_[side][key] for round_ in rounds if round_[side].get(key) is not None]
        return statistics.median(values) if values else None

    ratio = statistics.median(round_["ratio"] for round_ in rounds)
    ratio_checkpointed = statistics.median(round_["ratio_checkpointed"] for round_ in rounds)
    ours_loss, trl_loss = median("ours", "final_loss"), median("trl", "final_loss")
    loss_difference = _relative_difference(ours_loss, trl_loss)
    ours_memory, trl_memory = median("ours", "peak_memory_mb"), median("trl", "peak_memory_mb")
    checkpointed_memory = median("ours_checkpointed", "peak_memory_mb")
    waste = median("ours", "padding_waste")
    figures = [
        _figure(
            "effective tokens/s vs TRL SFTTrainer (median ratio)",
            round(ratio, 2),
            f">= {TARGET_RATIO}x (never < {FLOOR_RATIO}x)",
            ratio >= TARGET_RATIO,
        ),
        _figure(
            "final eval loss (response tokens), ours vs TRL (relative difference)",
            None if loss_difference is None else f"{loss_difference:+.2%} ({ours_loss:.4f} vs {trl_loss:.4f})",
            f"at most +{LOSS_TOLERANCE:.0%} (no worse than the baseline)",
            None if loss_difference is None else loss_difference <= LOSS_TOLERANCE,
        ),
        _figure(
            "peak memory MB, ours vs TRL",
            f"{ours_memory:.0f} vs {trl_memory:.0f}",
            "ours no higher",
            ours_memory <= trl_memory,
        ),
        _figure(
            "with gradient checkpointing like TRL's default: tokens/s ratio, peak memory MB ours vs TRL",
            f"{ratio_checkpointed:.2f}x, {checkpointed_memory:.0f} vs {trl_memory:.0f}",
            f">= {TARGET_RATIO}x and memory no higher",
            ratio_checkpointed >= TARGET_RATIO and checkpointed_memory <= trl_memory,
        ),
        _figure("padding waste (ours)", f"{waste:.1%}", f"<= {PADDING_TARGET:.0%}", waste <= PADDING_TARGET),
    ]
    return {
        "figures": figures,
        "setup": {
            "model": shared["model_path"],
            "steps_per_side": steps,
            "timed": "end of step 1 to end of the last step",
            "rounds": len(rounds),
            "quick": quick,
            "precision": shared["precision"],
            "lora": shared["lora"],
            "hyper": shared["hyper"],
            "eval_samples": shared["eval_samples"],
        },
        "medians": {
            "ours_tokens_per_second": median("ours", "tokens_per_second"),
            "ours_checkpointed_tokens_per_second": median("ours_checkpointed", "tokens_per_second"),
            "ours_checkpointed_final_loss": median("ours_checkpointed", "final_loss"),
            "trl_tokens_per_second": median("trl", "tokens_per_second"),
            "trl_padding_waste": median("trl", "padding_waste"),
            "ours_padding_waste": waste,
        },
        "rounds": rounds,
        "diagnosis": diagnose(rounds, ratio),
    }


def diagnose(rounds: list[dict[str, Any]], ratio: float) -> list[str]:
    """Explains where the difference comes from (padding, gradient checkpointing), from the first round's figures.

    Args:
        rounds: Per-round measurements.
        ratio: The median throughput ratio.

    Returns:
        Human-readable findings.
    """
    first = rounds[0]
    notes = [
        f"baseline padding waste {first['trl'].get('padding_waste')}, ours {first['ours'].get('padding_waste')} "
        f"(ours packing={first['ours'].get('packing')}, baseline packing={first['trl'].get('packing')}, "
        f"padding_free={first['trl'].get('padding_free')})",
        f"baseline gradient_checkpointing={first['trl'].get('gradient_checkpointing')} (TRL default; recomputes "
        "the forward pass during backward)",
        f"precision: ours {first['ours'].get('precision')}, baseline {first['trl'].get('precision')}; "
        f"torch threads ours {first['ours'].get('torch_threads')}, baseline {first['trl'].get('torch_threads')}",
    ]
    ours_loss, trl_loss = first["ours"].get("final_loss"), first["trl"].get("final_loss")
    if ours_loss is not None and trl_loss is not None and abs(ours_loss - trl_loss) > LOSS_TOLERANCE * trl_loss:
        notes.append(
            f"first round: final loss ours {ours_loss:.4f} vs baseline {trl_loss:.4f}: the losses differ by more than "
            f"{LOSS_TOLERANCE:.0%}; both see the same batches (same seed and sampler), but TRL's default "
            "(assistant_only_loss=False) also trains on prompt tokens while ours trains on answers only, so the "
            "baseline spends part of its updates on text that the held-out (answer-only) loss does not score"
        )
    ours_memory, trl_memory = first["ours"].get("peak_memory_mb"), first["trl"].get("peak_memory_mb")
    if ours_memory and trl_memory and ours_memory > trl_memory:
        notes.append(
            f"first round: peak memory ours {ours_memory:.0f} MB vs baseline {trl_memory:.0f} MB: the baseline keeps only each "
            "layer's input (gradient checkpointing, TRL's default) while ours keeps every activation for the "
            "backward pass (training.gradient_checkpointing=false by default), which is also where part of "
            "our speed comes from; training.gradient_checkpointing=true trades that memory back for compute"
        )
    if ratio < TARGET_RATIO:
        notes.append(
            f"median ratio {ratio:.2f} < {TARGET_RATIO}: see the per-round tokens/s; on a shared 2-core CPU the "
            "rounds are noisy, and packing's block-diagonal attention mask costs attention work that padding-free "
            "flash-attention kernels (CUDA) avoid."
        )
    return notes


def main() -> int:
    """``python -m benchmarks.training_throughput [--quick]`` or ``--child SPEC`` (internal).

    Returns:
        0.
    """
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="Fewer rounds and steps (smoke run).")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        return child_main(arguments.child)
    from core.logging_setup import configure_logging

    configure_logging()
    outcome = run(quick=arguments.quick)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "training_throughput.json").write_text(json.dumps(outcome, indent=2), encoding="utf-8")
    logger.info("{}", json.dumps(outcome["figures"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
