"""A run whose training process is gone is shown as interrupted, never as training forever."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from core.domain.manifest import RunManifest
from studio.runs import run_status


def _training_run(runs_dir: Path, process: dict) -> None:
    manifest = RunManifest(run_name="r", status="training", process=process)
    (runs_dir / "r").mkdir(parents=True)
    manifest.save(runs_dir / "r")


def _ended_process() -> dict:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(child.pid).create_time()
    child.wait()
    return {"pid": child.pid, "host": socket.gethostname(), "started": started}


def _this_process() -> dict:
    return {"pid": psutil.Process().pid, "host": socket.gethostname(), "started": psutil.Process().create_time()}


@pytest.mark.parametrize(
    ("process", "shown"),
    [
        (_ended_process, "interrupted"),  # killed, out of memory, or the studio stopped it
        (_this_process, "training"),  # alive
        (lambda: {**_this_process(), "started": 1.0}, "interrupted"),  # the pid now belongs to another process
        (lambda: {**_ended_process(), "host": "another-machine"}, "training"),  # cannot be checked from here
        (dict, "training"),  # a manifest from before the process record
    ],
    ids=["ended", "alive", "pid-reused", "other-host", "no-record"],
)
def test_status_follows_the_training_process(tmp_path, process, shown):
    _training_run(tmp_path, process())
    assert run_status(tmp_path, "r", None) == shown
