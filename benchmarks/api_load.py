"""API load check: 50 concurrent clients for 60 s against a loopback server; errors and memory growth.

The server runs in its own process (``finetune-studio serve`` on 127.0.0.1, a free port, a fresh
API key, an empty runs/registry directory so it serves the embedded base model) so its resident
memory can be sampled on its own. Each client thread loops until the deadline, alternating
non-streaming and streaming chat requests of 8 tokens through the official ``openai`` client.
Everything is bounded: the clients stop at the deadline, the server process is terminated at the end.

``python -m benchmarks.api_load [--quick]`` writes ``benchmarks/results/api_load.json``.
"""

from __future__ import annotations

import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from loguru import logger

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parents[1]
MEMORY_GROWTH_LIMIT_MB = 256


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_ready(base_url: str, process: subprocess.Popen, timeout_s: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode}")
        try:
            if httpx.get(base_url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("server did not become ready")


def run(quick: bool = False) -> dict[str, Any]:
    """Runs the load check.

    Args:
        quick: 10 clients for 10 s (smoke run) instead of 32 clients for 60 s.

    Returns:
        Figures (errors, requests, latency, memory growth) and raw counts.
    """
    import openai
    import psutil

    from core.domain.catalog import EMBEDDED_MODEL_NAME

    clients, duration_s = (10, 10.0) if quick else (32, 60.0)
    port, api_key = _free_port(), secrets.token_urlsafe(24)
    base_url = f"http://127.0.0.1:{port}"
    scratch = Path(tempfile.mkdtemp(prefix="api-load-"))
    command = [
        sys.executable,
        "-m",
        "core.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--api-key",
        api_key,
        f"paths.runs_dir={scratch / 'runs'}",
        f"paths.registry_dir={scratch / 'registry'}",
        "serve.request_timeout_s=300",
        "log_level=WARNING",
    ]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    memory: list[float] = []
    lock = threading.Lock()
    try:
        _wait_ready(base_url, process, timeout_s=180)
        server = psutil.Process(process.pid)
        client = openai.OpenAI(base_url=base_url + "/v1", api_key=api_key, max_retries=0, timeout=300)
        client.chat.completions.create(
            model=EMBEDDED_MODEL_NAME, messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )  # loads the model before the clock starts
        memory.append(server.memory_info().rss / 2**20)
        deadline = time.monotonic() + duration_s

        def worker(index: int) -> None:
            own = openai.OpenAI(base_url=base_url + "/v1", api_key=api_key, max_retries=0, timeout=300)
            count = 0
            while time.monotonic() < deadline:
                messages = [{"role": "user", "content": f"Client {index} request {count}: name a colour."}]
                started = time.perf_counter()
                try:
                    if count % 2:
                        text = "".join(
                            chunk.choices[0].delta.content or ""
                            for chunk in own.chat.completions.create(
                                model=EMBEDDED_MODEL_NAME, messages=messages, max_tokens=8, stream=True, temperature=0
                            )
                            if chunk.choices
                        )
                    else:
                        text = (
                            own.chat.completions.create(
                                model=EMBEDDED_MODEL_NAME, messages=messages, max_tokens=8, temperature=0
                            )
                            .choices[0]
                            .message.content
                        )
                    if text is None:
                        raise ValueError("empty answer")
                    with lock:
                        latencies.append(time.perf_counter() - started)
                except Exception as error:  # counted, the load goes on
                    with lock:
                        errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
                count += 1

        threads = [threading.Thread(target=worker, args=(index,), daemon=True) for index in range(clients)]
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            memory.append(server.memory_info().rss / 2**20)
            time.sleep(1.0)
            if time.monotonic() > deadline + 330:
                break
        memory.append(server.memory_info().rss / 2**20)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    error_count = sum(errors.values())
    growth = memory[-1] - memory[0] if memory else 0.0
    ordered = sorted(latencies)
    p95 = ordered[int(0.95 * (len(ordered) - 1))] if ordered else None
    logger.info(
        "{} requests, {} errors, memory {:.0f} -> {:.0f} MB", len(latencies), error_count, memory[0], memory[-1]
    )
    return {
        "clients": clients,
        "duration_s": duration_s,
        "requests": len(latencies),
        "errors": errors,
        "rss_mb": {"start": round(memory[0], 1), "end": round(memory[-1], 1), "max": round(max(memory), 1)},
        "figures": [
            {
                "name": f"errors ({clients} clients, {duration_s:g} s)",
                "value": error_count,
                "target": "0",
                "met": error_count == 0,
            },
            {
                "name": "server memory growth (MB)",
                "value": round(growth, 1),
                "target": f"< {MEMORY_GROWTH_LIMIT_MB}",
                "met": growth < MEMORY_GROWTH_LIMIT_MB,
            },
            {"name": "requests per second", "value": round(len(latencies) / duration_s, 2)},
            {"name": "median latency (s)", "value": round(statistics.median(ordered), 2) if ordered else None},
            {"name": "p95 latency (s)", "value": round(p95, 2) if p95 is not None else None},
        ],
    }


def main() -> int:
    """``python -m benchmarks.api_load [--quick]``: writes ``benchmarks/results/api_load.json``.

    Returns:
        0.
    """
    from benchmarks.run import standalone_main

    return standalone_main("api_load", run, __doc__, "10 clients for 10 s instead of 32 for 60 s.")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
