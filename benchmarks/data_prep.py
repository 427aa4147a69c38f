"""Data preparation at scale: records/s and peak memory of ``prepare-data`` against a plain ``datasets.map``.

Generated Alpaca-shaped and multi-turn (ShareGPT) sets of 20k and 200k records (seeded; about 10 %
of the multi-turn conversations are longer than ``max_seq_length`` 512, so turn splitting runs)
are prepared by ``finetune-studio prepare-data`` (reading, validation, deduplication,
decontamination, splitting, tokenization with loss masks, writing) in a fresh subprocess per case.
The baseline, in the same run on the same cores, is the plain recipe: ``load_dataset("json")``,
then ``Dataset.map(tokenizer.apply_chat_template)`` batched with ``num_proc`` = the cores, also a
fresh subprocess. Both are timed from process start to exit, in three alternating rounds (the
side going first changes each round); the figures are medians of wall time. Peak memory is the
subprocess's own ``VmHWM`` (``/proc/self/status``; ``ru_maxrss`` would include the parent's), plus
the peak of the process tree (the subprocess and its workers, sampled every 0.2 s), the highest of
the rounds. The 7-record case times the whole CLI command (``finetune-studio prepare-data --input
small.jsonl``), cold (the first start after the project's bytecode was removed) and warm.

``python -m benchmarks.data_prep [--quick]`` writes ``benchmarks/results/data_prep.json``;
``--quick`` uses 2k and 20k records.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from loguru import logger

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parents[1]
SIZES = (20_000, 200_000)
QUICK_SIZES = (2_000, 20_000)
RSS_GROWTH_LIMIT_MB = 300
SMALL_FILE_LIMIT_S = 5.0
ROUNDS = 3
"""Alternating rounds of ours and the baseline per data set (medians are reported)."""
WORDS = [
    "model",
    "data",
    "train",
    "answer",
    "question",
    "python",
    "list",
    "value",
    "order",
    "result",
    "table",
    "count",
    "report",
    "token",
    "window",
    "memory",
    "record",
    "split",
    "shape",
    "number",
    "string",
    "field",
    "format",
    "system",
    "user",
    "prompt",
    "reply",
    "error",
    "check",
    "file",
    "line",
    "source",
    "reason",
    "batch",
    "core",
    "speed",
    "test",
    "case",
    "merge",
    "share",
    "weight",
    "mix",
    "seed",
    "turn",
]

_MEASURED = """
import json, sys, time
started = time.perf_counter()
{body}
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
print("MEASURED=" + json.dumps({{"seconds": time.perf_counter() - started,
                                  "vm_hwm_mb": int(status["VmHWM"].split()[0]) / 1024}}))
"""

_OURS = """
from core.cli import main
code = main(["prepare-data", "--input", {data!r}, "--output", {output!r}, "--lenient",
             "paths.model_cache={cache}", "paths.data_dir={work}"])
assert code == 0
"""

_BASELINE = """
import os
from datasets import load_dataset
from core.infrastructure.models.tokenizer_loading import load_tokenizer
tokenizer = load_tokenizer({model!r})
dataset = load_dataset("json", data_files={data!r}, split="train", cache_dir={work!r})

def messages(row):
    if "conversations" in row:
        roles = {{"human": "user", "gpt": "assistant", "system": "system"}}
        return [{{"role": roles[turn["from"]], "content": turn["value"]}} for turn in row["conversations"]]
    prompt = row["instruction"] + ("\\n\\n" + row["input"] if row["input"] else "")
    return [{{"role": "user", "content": prompt}}, {{"role": "assistant", "content": row["output"]}}]

def tokenize(batch):
    rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
    return {{"input_ids": [tokenizer.apply_chat_template(messages(row))["input_ids"] for row in rows]}}

mapped = dataset.map(tokenize, batched=True, num_proc=len(os.sched_getaffinity(0)),
                     remove_columns=dataset.column_names)
assert len(mapped) == len(dataset)
"""


def _sentence(generator: random.Random, low: int, high: int) -> str:
    return " ".join(generator.choice(WORDS) for _ in range(generator.randint(low, high))).capitalize() + "."


def _write(path: Path, count: int, seed: int, record: Callable[[random.Random, int], dict[str, Any]]) -> Path:
    generator = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for index in range(count):
            handle.write(json.dumps(record(generator, index)) + "\n")
    return path


def _alpaca_record(generator: random.Random, index: int) -> dict[str, Any]:
    return {
        "instruction": f"Task {index}: " + _sentence(generator, 8, 30),
        "input": _sentence(generator, 0, 40) if generator.random() < 0.4 else "",
        "output": " ".join(_sentence(generator, 6, 20) for _ in range(generator.randint(1, 8))),
    }


def _multi_turn_record(generator: random.Random, index: int) -> dict[str, Any]:
    long = generator.random() < 0.1
    turns = [{"from": "system", "value": "You are a careful assistant."}] if generator.random() < 0.3 else []
    for exchange in range(generator.randint(4, 6) if long else generator.randint(2, 4)):
        answer_sentences = generator.randint(6, 10) if long else generator.randint(1, 4)
        turns.append({"from": "human", "value": f"Question {index}.{exchange}: " + _sentence(generator, 6, 24)})
        turns.append({"from": "gpt", "value": " ".join(_sentence(generator, 6, 18) for _ in range(answer_sentences))})
    return {"conversations": turns}


def write_set(kind: str, path: Path, count: int) -> Path:
    """Writes ``count`` distinct generated records as JSON Lines (seeded: the same file every run).

    Args:
        kind: ``alpaca`` (instruction, input, output) or ``multi_turn`` (ShareGPT conversations of 2
            to 6 exchanges, about 10 % of them over 512 tokens).
        path: Output file.
        count: Records.

    Returns:
        The file.
    """
    record, seed = {"alpaca": (_alpaca_record, 0), "multi_turn": (_multi_turn_record, 1)}[kind]
    return _write(path, count, seed, record)


def _measure(body: str) -> dict[str, Any]:
    """Runs a script in a fresh interpreter; its wall time, own VmHWM and the process tree's sampled peak RSS."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", _MEASURED.format(body=body)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    tree_peak = 0
    watched = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            members = [watched, *watched.children(recursive=True)]
            tree_peak = max(tree_peak, sum(member.memory_info().rss for member in members))
        except psutil.Error:
            pass
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=0.2)  # returns at the exit (a sleep would round the wall time up to 0.2 s)
    stdout, stderr = process.communicate()
    wall = time.perf_counter() - started
    if process.returncode != 0 or "MEASURED=" not in stdout:
        raise RuntimeError(f"benchmark subprocess failed ({process.returncode}): {stderr[-2000:]}")
    measured = json.loads(stdout.split("MEASURED=")[-1])
    return {"wall_s": round(wall, 2), "vm_hwm_mb": round(measured["vm_hwm_mb"], 1), "tree_peak_mb": tree_peak >> 20}


def _cli_seconds(data: Path, output: Path, work: Path, cache: Path) -> float:
    """Wall time of the whole ``finetune-studio prepare-data`` command."""
    shutil.rmtree(output, ignore_errors=True)
    command = [
        str(Path(sys.executable).with_name("finetune-studio")),
        "prepare-data",
        "--input",
        str(data),
        "--output",
        str(output),
        f"paths.model_cache={cache}",
        f"paths.data_dir={work}",
    ]
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO_ROOT, check=True, capture_output=True)
    return round(time.perf_counter() - started, 2)


def _small_file(directory: Path, cache: Path) -> dict[str, Any]:
    """The 7-record file: the CLI's wall time with no bytecode at all (every module compiled) and warm."""
    data = directory / "small.jsonl"
    data.write_text(
        "".join(json.dumps({"instruction": f"Say {n} in words.", "output": f"Number {n}."}) + "\n" for n in range(7)),
        encoding="utf-8",
    )
    output, work = directory / "small-out", directory / "small-work"
    import os

    previous = os.environ.get("PYTHONPYCACHEPREFIX")
    os.environ["PYTHONPYCACHEPREFIX"] = str(directory / "empty-bytecode-cache")
    try:
        no_bytecode = _cli_seconds(data, output, work, cache)
    finally:
        os.environ.pop("PYTHONPYCACHEPREFIX")
        if previous is not None:
            os.environ["PYTHONPYCACHEPREFIX"] = previous
    warm = sorted(_cli_seconds(data, output, work, cache) for _ in range(3))
    return {"no_bytecode_s": no_bytecode, "warm_s": warm[1], "warm_runs_s": warm}


def _case(kind: str, size: int, directory: Path, cache: Path) -> dict[str, Any]:
    """One data set: ours and the baseline, each in a fresh subprocess, in :data:`ROUNDS` alternating rounds.

    The sides take turns going first; the figures are each side's median wall time and its highest
    peak RSS over the rounds (a shared 2-core machine moved single runs by up to 20 %).
    """
    data = write_set(kind, directory / f"{kind}-{size}.jsonl", size)
    work, output = directory / f"work-{kind}-{size}", directory / f"out-{kind}-{size}"
    scripts = {
        "ours": _OURS.format(data=str(data), output=str(output), cache=cache, work=work),
        "baseline": _BASELINE.format(model=str(cache / "smollm2-135m-instruct"), data=str(data), work=str(work)),
    }
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "baseline": []}
    for round_index in range(ROUNDS):
        for side in ("ours", "baseline") if round_index % 2 == 0 else ("baseline", "ours"):
            runs[side].append(_measure(scripts[side]))
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(output, ignore_errors=True)
    data.unlink()
    sides = {side: _summary(measured, size) for side, measured in runs.items()}
    result = {
        "kind": kind,
        "records": size,
        **sides,
        "ratio": round(sides["baseline"]["wall_s"] / sides["ours"]["wall_s"], 3),
    }
    logger.info("{}", json.dumps(result))
    return result


def _summary(measured: list[dict[str, Any]], size: int) -> dict[str, Any]:
    """One side's rounds: median wall time, highest peak RSS, and every round's wall time."""
    wall = statistics.median(run["wall_s"] for run in measured)
    return {
        "wall_s": round(wall, 2),
        "vm_hwm_mb": max(run["vm_hwm_mb"] for run in measured),
        "tree_peak_mb": max(run["tree_peak_mb"] for run in measured),
        "records_per_s": round(size / wall, 1),
        "rounds_wall_s": [run["wall_s"] for run in measured],
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Measures every case and the 7-record file.

    Args:
        quick: 2k and 20k records instead of 20k and 200k.

    Returns:
        ``{"figures": [...], "cases": [...], "small_file": {...}, "setup": {...}}``.
    """
    from core.infrastructure.data.record_store import available_cores

    cache = REPO_ROOT / ".cache" / "models"
    sizes = QUICK_SIZES if quick else SIZES
    with tempfile.TemporaryDirectory(prefix="data-prep-bench-") as temporary:
        directory = Path(temporary)
        small = _small_file(directory, cache)
        cases = [_case(kind, size, directory, cache) for kind in ("alpaca", "multi_turn") for size in sizes]
    figures = [
        {
            "name": "prepare-data on a 7-record file, wall (warm, median of 3; without any bytecode)",
            "value": f"{small['warm_s']} s; {small['no_bytecode_s']} s",
            "target": f"<= {SMALL_FILE_LIMIT_S} s",
            "met": small["warm_s"] <= SMALL_FILE_LIMIT_S,
        }
    ]
    for kind in ("alpaca", "multi_turn"):
        runs = [case for case in cases if case["kind"] == kind]
        for case in runs:
            figures.append(
                {
                    "name": f"{kind} {case['records']}: records/s ours vs datasets.map baseline "
                    f"(all cores, medians of {ROUNDS} alternating rounds)",
                    "value": f"{case['ratio']}x ({case['ours']['records_per_s']} vs "
                    f"{case['baseline']['records_per_s']} records/s; peak RSS {case['ours']['vm_hwm_mb']} MB, "
                    f"tree {case['ours']['tree_peak_mb']} MB)",
                    "target": ">= 1.0x",
                    "met": case["ratio"] >= 1.0,
                }
            )
        growth = runs[-1]["ours"]["vm_hwm_mb"] - runs[0]["ours"]["vm_hwm_mb"]
        tree_growth = runs[-1]["ours"]["tree_peak_mb"] - runs[0]["ours"]["tree_peak_mb"]
        figures.append(
            {
                "name": f"{kind}: peak RSS growth {runs[0]['records']} -> {runs[-1]['records']} records "
                "(prepare-data process; process tree)",
                "value": f"{growth:.0f} MB; {tree_growth:.0f} MB",
                "target": f"<= {RSS_GROWTH_LIMIT_MB} MB",
                "met": growth <= RSS_GROWTH_LIMIT_MB,
            }
        )
    return {
        "figures": figures,
        "cases": cases,
        "small_file": small,
        "setup": {"cores": available_cores(), "max_seq_length": 512, "sizes": list(sizes)},
    }


def main() -> int:
    """``python -m benchmarks.data_prep [--quick]``: writes ``benchmarks/results/data_prep.json``.

    Returns:
        0.
    """
    from benchmarks.run import standalone_main

    return standalone_main("data_prep", run, __doc__, "2k and 20k records instead of 20k and 200k.")


if __name__ == "__main__":
    raise SystemExit(main())
