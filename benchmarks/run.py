"""``python -m benchmarks.run`` (``make benchmark``): run every benchmark and write the results table.

Each benchmark module exposes ``run(quick: bool) -> dict`` returning its figures (ratios against a
baseline measured in the same run, medians of alternating repetitions). Results are written to
``benchmarks/results/<name>.json`` and summarised in ``benchmarks/results/latest.json`` and
``benchmarks/results/latest.md`` (the table the README shows).
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loguru import logger

from core.logging_setup import configure_logging

RESULTS_DIR = Path(__file__).resolve().parent / "results"
BENCHMARKS = (
    "benchmarks.training_throughput",
    "benchmarks.gemm_limit",
    "benchmarks.chunked_loss",
    "benchmarks.technique_costs",
    "benchmarks.inference_throughput",
    "benchmarks.eval_decode",
    "benchmarks.api_load",
    "benchmarks.studio_latency",
    "benchmarks.memory_estimator",
    "benchmarks.data_prep",
)


def machine_description() -> dict[str, Any]:
    """Describes the machine the figures were measured on.

    Returns:
        CPU model, core count, memory, GPU (if any) and library versions.
    """
    import os

    import psutil
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def write_markdown(results: dict[str, Any], path: Path) -> None:
    """Writes the results as a Markdown table (one row per figure).

    Args:
        results: ``{"machine": ..., "benchmarks": {name: {"figures": [...]}}}``.
        path: Output file.
    """
    machine = results["machine"]
    lines = [
        f"Measured {results['date']} on {machine['cpu']} ({machine['cores']} cores, {machine['memory_gb']} GB"
        + (f", {machine['gpu']}" if machine["gpu"] else ", no GPU")
        + ").",
        "",
        "| Benchmark | Figure | Value | Target | Met |",
        "|---|---|---|---|---|",
    ]
    for name, outcome in results["benchmarks"].items():
        if "error" in outcome:
            lines.append(f"| {name} | error | {outcome['error'][:80]} | | no |")
            continue
        for figure in outcome.get("figures", []):
            met = figure.get("met")
            lines.append(
                f"| {name} | {figure['name']} | {figure['value']} | {figure.get('target', '')} | "
                f"{'' if met is None else ('yes' if met else 'no')} |"
            )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def standalone_main(
    name: str, run_benchmark: Callable[..., dict[str, Any]], description: str | None, quick_help: str
) -> int:
    """``python -m benchmarks.<name> [--quick]``: one benchmark, its JSON written as ``make benchmark`` writes it.

    Args:
        name: The module's short name (the result file is ``benchmarks/results/<name>.json``).
        run_benchmark: The module's ``run(quick=...)``.
        description: The module's docstring (the command's help).
        quick_help: What ``--quick`` changes.

    Returns:
        0.
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    arguments = parser.parse_args()
    configure_logging()
    outcome = run_benchmark(quick=arguments.quick)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(outcome, indent=2, default=str), encoding="utf-8")
    for figure in outcome.get("figures", []):
        logger.success("{}: {}", figure["name"], figure.get("value"))
    return 0


def main() -> int:
    """Runs the selected benchmarks.

    Returns:
        0 (benchmarks report targets; they do not fail the command).
    """
    configure_logging()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", help="Benchmark module names (e.g. training_throughput).")
    parser.add_argument("--quick", action="store_true", help="Fewer repetitions (smoke run).")
    arguments = parser.parse_args()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    selected = [name for name in BENCHMARKS if not arguments.only or name.rsplit(".", 1)[1] in arguments.only]
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine_description(),
        "benchmarks": {},
    }
    for module_name in selected:
        short = module_name.rsplit(".", 1)[1]
        logger.info("Benchmark {} ...", short)
        try:
            outcome = importlib.import_module(module_name).run(quick=arguments.quick)
        except Exception as error:
            logger.exception("Benchmark {} failed", short)
            outcome = {"error": f"{type(error).__name__}: {error}"}
        results["benchmarks"][short] = outcome
        (RESULTS_DIR / f"{short}.json").write_text(json.dumps(outcome, indent=2, default=str), encoding="utf-8")
    latest = RESULTS_DIR / "latest.json"
    if arguments.only and latest.exists():
        previous = json.loads(latest.read_text(encoding="utf-8"))
        results["benchmarks"] = {**previous.get("benchmarks", {}), **results["benchmarks"]}
    latest.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    write_markdown(results, RESULTS_DIR / "latest.md")
    logger.success("Results in {}", RESULTS_DIR)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
