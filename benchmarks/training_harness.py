"""What every training benchmark shares: isolated settings, the benchmark copy of the demo data, child processes.

Each measured side runs in its own Python process (``python -m benchmarks.training_harness --child
SPEC``), so peak resident memory is per side. The sides are ``ours`` (Finetune Studio's ``train``
use case, unchanged; ``ours_checkpointed`` is the same with gradient checkpointing on) and the TRL
sides of :mod:`benchmarks.trl_sides`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from loguru import logger

from benchmarks.throughput_probe import ThroughputProbe

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
PRESET = REPO_ROOT / "examples" / "configs" / "smollm2-lora.yaml"
MODEL_CACHE = Path(os.environ.get("FINETUNE_PATHS__MODEL_CACHE", REPO_ROOT / ".cache" / "models"))
CHILD_TIMEOUT_S = 1800
CHILD_ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "WANDB_MODE": "disabled",
}


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


def prepare_benchmark_run(work_dir: Path, steps: int, extra_overrides: list[str]) -> tuple[Path, list[str]]:
    """Prepares the benchmark data under ``work_dir`` and returns the overrides of a run on it.

    Args:
        work_dir: Temporary directory of the benchmark.
        steps: ``training.max_steps`` (checkpoints are pushed past the end).
        extra_overrides: Further ``key=value`` overrides (batch size, technique, ...).

    Returns:
        The benchmark prepared directory and the run's overrides (paths isolated in ``work_dir``).
    """
    base = isolated_overrides(work_dir)
    data_dir = prepare_benchmark_data(load_benchmark_settings(PRESET, base), work_dir / "benchmark-data")
    overrides = [
        *base,
        f"data.dataset={data_dir}",
        f"training.max_steps={steps}",
        f"training.save_steps={10 * steps}",
        *extra_overrides,
    ]
    return data_dir, overrides


def eval_rows(data_dir: Path, count: int) -> list[dict[str, Any]]:
    """The first ``count`` held-out rows of the benchmark copy, scored by the probe after training.

    Args:
        data_dir: Benchmark prepared directory.
        count: Rows to return (0 for none).

    Returns:
        Rows with ``input_ids`` and ``labels``.
    """
    from core.infrastructure.data.prepared import load_prepared

    if count <= 0:
        return []
    rows = load_prepared(data_dir).tokenized("test").to_list()[:count]
    return [{"input_ids": row["input_ids"], "labels": row["labels"]} for row in rows]


def run_ours(spec: dict[str, Any]) -> dict[str, Any]:
    """Trains with Finetune Studio's ``train`` use case (the product path, unchanged).

    Args:
        spec: ``config``, ``overrides``, ``data_dir``, ``eval_samples`` and ``pad_token_id``.

    Returns:
        The probe's figures plus what the run manifest records.
    """
    import torch

    from core.application.train import train
    from core.domain.manifest import RunManifest

    settings = load_benchmark_settings(spec.get("config"), spec["overrides"])
    probe = ThroughputProbe(eval_rows(Path(spec["data_dir"]), spec["eval_samples"]), spec["pad_token_id"])
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


def side_runner(side: str) -> Any:
    """The function that trains one side in a child process.

    Args:
        side: ``ours``, ``ours_checkpointed``, ``trl_tuned`` or ``trl_defaults``.

    Returns:
        A callable taking the child spec and returning the side's figures.
    """
    if side.startswith("ours"):
        return run_ours
    from benchmarks.trl_sides import TRL_SIDES

    return TRL_SIDES[side]


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
            [sys.executable, "-m", "benchmarks.training_harness", "--child", str(spec_file)],
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
    result = side_runner(spec["side"])(spec)
    Path(spec["output"]).write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


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
        "max_length": settings.data.max_seq_length,
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


def main() -> int:
    """``python -m benchmarks.training_harness --child SPEC``: runs one side (internal to the benchmarks).

    Returns:
        0 on success.
    """
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", type=Path, required=True, help="Spec written by run_child.")
    return child_main(parser.parse_args().child)


if __name__ == "__main__":
    raise SystemExit(main())
