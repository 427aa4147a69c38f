"""Crash-resume from outside: SIGKILL at random points (one inside a checkpoint write), then bit-identical.

The training process is killed by this test with ``kill -9`` -- no callback, no cleanup -- three
times at randomly chosen points, resumed with ``training.resume=auto`` after each, and finally run
to the end. Its losses, evaluations and final adapter must equal an uninterrupted run exactly. The
seed of the random points is printed on failure (``CRASH_RESUME_SEED`` reproduces a run).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_training_support import REPO_ROOT, TRAIN_SCRIPT, isolated_overrides, make_prepared

from core.domain.manifest import RunManifest, read_metrics
from core.infrastructure.training.checkpoints import (
    CHECKPOINT_MANIFEST,
    list_checkpoints,
    newest_complete_checkpoint,
    verify_checkpoint,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

MAX_STEPS = 8
# The child widens the checkpoint write (files written, not yet hashed or sealed) so a kill lands inside it.
SLOW_SEAL = """
import time
import core.infrastructure.training.checkpoints as checkpoints
_hash = checkpoints.sha256_file
def _slow_hash(path):
    time.sleep(0.5)
    return _hash(path)
checkpoints.sha256_file = _slow_hash
"""


def _overrides(root: Path, model_dir: Path, prepared: Path) -> dict:
    return isolated_overrides(
        root,
        run_name="crash",
        **{
            "model.name": str(model_dir),
            "data.dataset": str(prepared),
            "technique": "lora",
            "technique.rank": 4,
            "technique.dropout": 0.1,
            "training.precision": "fp32",
            "training.max_steps": MAX_STEPS,
            "training.per_device_batch_size": 2,
            "training.gradient_accumulation_steps": 2,
            "training.learning_rate": 5e-3,
            "training.save_steps": 2,
            "training.eval_steps": 4,
            "training.eval_batch_size": 8,
            "training.packing": "'off'",
        },
    )


def _start(overrides: dict, slow_seal: bool = False) -> subprocess.Popen:
    environment = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO_ROOT),
        "TRAIN_OVERRIDES": json.dumps(overrides),
    }
    script = (SLOW_SEAL if slow_seal else "") + TRAIN_SCRIPT
    return subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _last_step(run_dir: Path) -> int:
    return max((row["step"] for row in read_metrics(run_dir) if "loss" in row), default=0)


def _kill_when(process: subprocess.Popen, condition, what: str, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            process.send_signal(signal.SIGKILL)
            assert process.wait(timeout=30) == -signal.SIGKILL
            return
        if process.poll() is not None:
            pytest.fail(f"training ended ({process.returncode}) before {what}: {process.stderr.read()[-3000:]}")
        time.sleep(0.01)
    process.kill()
    pytest.fail(f"timed out waiting for {what}")


def _state(run_dir: Path) -> tuple[list, dict[str, torch.Tensor]]:
    rows = [row for row in read_metrics(run_dir) if "loss" in row or "eval_loss" in row]
    history = [(row["step"], row.get("loss"), row.get("grad_norm"), row.get("eval_loss")) for row in rows]
    return history, load_file(run_dir / "final" / "adapter_model.safetensors")


def test_three_random_kill9_points_then_resume_auto_is_bit_identical(
    tmp_path, tiny_model_dirs, embedded_model_dir
) -> None:
    seed = int(os.environ.get("CRASH_RESUME_SEED", time.time_ns() % 1_000_000))
    chooser = random.Random(seed)
    prepared = make_prepared(tmp_path / "prepared", embedded_model_dir, n_train=12)
    model_dir = tiny_model_dirs["llama"]

    straight = _overrides(tmp_path / "straight", model_dir, prepared)
    reference = _start(straight)
    assert reference.wait(timeout=600) == 0, reference.stderr.read()[-3000:]

    crashed = _overrides(tmp_path / "crashed", model_dir, prepared)
    run_dir = tmp_path / "crashed" / "runs" / "crash"
    checkpoints_dir = run_dir / "checkpoints"
    kills = []

    # 1. After a random optimizer step (the kill lands wherever the process is then).
    first = chooser.randint(1, 3)
    _kill_when(_start(crashed), lambda: _last_step(run_dir) >= first, f"step {first}")
    kills.append(f"after step {first} was logged")
    from studio.runs import run_status  # what the studio shows for a killed run: never "training"

    assert RunManifest.load(run_dir).status == "training" and run_status(run_dir.parent, "crash", None) == "interrupted"

    # 2. Inside the next checkpoint write: files written, not hashed or sealed yet.
    resumed_from = newest_complete_checkpoint(checkpoints_dir)
    _kill_when(
        _start(crashed, slow_seal=True),
        lambda: any(
            any(path.iterdir()) and not (path / CHECKPOINT_MANIFEST).exists()
            for path in list_checkpoints(checkpoints_dir)
        ),
        "a checkpoint write",
    )
    kills.append(f"inside a checkpoint write (resumed from {resumed_from.name if resumed_from else 'scratch'})")
    assert newest_complete_checkpoint(checkpoints_dir) == resumed_from  # the half-written one does not count

    # 3. After a random later step.
    resumed = newest_complete_checkpoint(checkpoints_dir)
    done = int(resumed.name.split("-")[1]) if resumed else 0
    third = chooser.randint(done + 1, MAX_STEPS - 1)
    _kill_when(_start(crashed), lambda: _last_step(run_dir) >= third, f"step {third}")
    kills.append(f"after step {third} was logged")

    final = _start(crashed)
    assert final.wait(timeout=600) == 0, final.stderr.read()[-3000:]
    context = f"seed {seed}, kills: {'; '.join(kills)}"
    assert all(verify_checkpoint(path) is None for path in list_checkpoints(checkpoints_dir)), context

    straight_history, straight_final = _state(tmp_path / "straight" / "runs" / "crash")
    crashed_history, crashed_final = _state(run_dir)
    assert [step for step, loss, *_ in straight_history if loss is not None] == list(range(1, MAX_STEPS + 1))
    assert crashed_history == straight_history, context
    assert straight_final.keys() == crashed_final.keys() and straight_final, context
    for name in straight_final:
        assert torch.equal(straight_final[name], crashed_final[name]), f"{name} ({context})"
    manifest, reference_manifest = RunManifest.load(run_dir), RunManifest.load(tmp_path / "straight" / "runs" / "crash")
    assert manifest.status == "completed", context
    for key in ("initial_eval_loss", "final_eval_loss", "best_eval_loss"):
        assert manifest.metrics[key] == reference_manifest.metrics[key], f"{key} ({context})"
