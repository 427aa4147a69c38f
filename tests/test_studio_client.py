"""The studio scripted with gradio_client: start, poll, stop, resume a real run; a second client sees it.

The studio is launched in-process on a random free port with its runs under tmp_path; training
runs in a child process exactly as when a user clicks Start (a tiny llama model keeps steps short).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from core.domain.manifest import RunManifest

pytestmark = pytest.mark.timeout(300)

STEP_PATTERN = re.compile(r'step</div><div class="kpi-value">(\d+)')
STATUS_PATTERN = re.compile(r"status-pill status-(\w+)")


def start_arguments(model: str, run_name: str, max_steps: int, technique: str = "lora") -> list:
    """Inputs of /start_training in form order."""
    return [
        model,  # model
        technique,  # technique
        run_name,  # run name
        "demo",  # dataset
        1e-3,  # learning rate
        max_steps,  # max steps
        1,  # epochs
        2,  # batch size
        1,  # gradient accumulation
        64,  # max sequence length
        0,  # eval every (0: per epoch)
        2,  # save every
        0,  # samples every
        4,  # lora rank
        8,  # lora alpha
        0.0,  # lora dropout
        4,  # virtual tokens
        False,  # gradient checkpointing
    ]


@pytest.fixture
def studio(tmp_path: Path, tiny_llama_dir: Path, make_settings):
    from studio.app import close_studio, launch_studio

    settings = make_settings(
        **{
            "model.name": str(tiny_llama_dir),
            "data.max_samples": 48,
            "data.max_seq_length": 64,
            "training.logging_steps": 1,
        }
    )
    blocks, context = launch_studio(settings, host="127.0.0.1", port=0, block=False)
    try:
        yield blocks, context, settings
    finally:
        close_studio(blocks, context)
        for job in context.supervisor.jobs():
            assert job.state != "running", f"job {job.job_id} left running"


def poll(client, run_name: str) -> tuple[str, int, tuple]:
    result = client.predict(run_name, api_name="/poll_progress")
    status = STATUS_PATTERN.search(result[0])
    step = STEP_PATTERN.search(result[0])
    return (status.group(1) if status else "", int(step.group(1)) if step else -1, result)


def wait_for(client, run_name: str, condition, timeout_s: float = 180.0, interval_s: float = 0.5):
    deadline = time.time() + timeout_s
    last = None
    while time.time() < deadline:
        last = poll(client, run_name)
        if condition(*last[:2]):
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out waiting for {run_name}; last status {last[:2] if last else None}")


def test_start_poll_stop_resume_and_second_client(studio, tiny_llama_dir: Path) -> None:
    from gradio_client import Client

    blocks, context, settings = studio
    client = Client(blocks.local_url, verbose=False)
    run_name = "client-lora"

    _selector, message = client.predict(
        *start_arguments(str(tiny_llama_dir), run_name, max_steps=100_000), api_name="/start_training"
    )
    assert "Queued" in message and run_name in message

    # poll until it has trained a few steps: the status and the step come from the run directory
    _, step, result = wait_for(client, run_name, lambda status, step: status == "training" and step >= 2)
    assert result[1] and "plot" in str(result[1]), "a loss figure was sent"  # plotly JSON
    assert "core.application.train" in result[3]  # the log tail is the run's train.log

    # a second client (another browser tab) sees the same run and progress
    other = Client(blocks.local_url, verbose=False)
    other_status, other_step, _ = poll(other, run_name)
    assert other_status == "training" and other_step >= step

    # a second run waits behind the one that trains, and the message counts it
    _selector, queued_message = client.predict(
        *start_arguments(str(tiny_llama_dir), "client-second", max_steps=3), api_name="/start_training"
    )
    assert "1 job(s) ahead of it" in queued_message, queued_message
    assert "removed from the queue" in client.predict("client-second", api_name="/stop_training")

    stop_message = client.predict(run_name, api_name="/stop_training")
    assert "stopping" in stop_message
    _status, stopped_step, _ = wait_for(client, run_name, lambda status, step: status == "stopped", timeout_s=120)
    run_dir = Path(settings.paths.runs_dir) / run_name
    manifest = RunManifest.load(run_dir)
    assert manifest.status == "stopped"
    checkpoints = sorted((run_dir / "checkpoints").glob("checkpoint-*"))
    assert checkpoints, "stop must keep a resumable checkpoint"
    checkpoint_step = max(int(path.name.split("-")[1]) for path in checkpoints)
    assert checkpoint_step == stopped_step  # stopped within one step, at the step it saved

    # resume: same run name, continues from the checkpoint and trains further steps
    _, resume_message = client.predict(run_name, api_name="/resume_training")
    assert "Resuming" in resume_message
    wait_for(client, run_name, lambda status, step: status == "training" and step >= checkpoint_step + 2, timeout_s=180)
    log = (run_dir / "train.log").read_text(encoding="utf-8")
    assert f"checkpoint-{checkpoint_step}" in log and "Resuming" in log
    other_status, _, _ = poll(other, run_name)
    assert other_status == "training"

    client.predict(run_name, api_name="/stop_training")
    wait_for(client, run_name, lambda status, step: status == "stopped", timeout_s=120)
    assert context.supervisor.current() is None


def test_queue_survives_restart_and_errors_are_plain(tmp_path: Path, tiny_llama_dir: Path, make_settings) -> None:
    """Queued runs are on disk: a new supervisor (a restarted studio) sees them; bad input is a plain error."""
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    from studio.app import close_studio, launch_studio
    from studio.jobs import JobSupervisor

    settings = make_settings(**{"model.name": str(tiny_llama_dir)})
    runs_dir = Path(settings.paths.runs_dir)
    supervisor = JobSupervisor(runs_dir)  # never started: jobs stay queued
    blocks, context = launch_studio(settings, host="127.0.0.1", port=0, block=False, supervisor=supervisor)
    try:
        supervisor.close(stop_running=False)  # launch started it; stop the thread so nothing runs
        client = Client(blocks.local_url, verbose=False)
        with pytest.raises(AppError, match="learning_rate"):
            client.predict(
                *[-1.0 if index == 4 else value for index, value in enumerate(start_arguments("m", "bad", 3))],
                api_name="/start_training",
            )
        client.predict(*start_arguments(str(tiny_llama_dir), "queued-one", 3), api_name="/start_training")
        status, _, result = poll(client, "queued-one")
        assert status == "queued"
        assert "queued-one" in str(result[5])  # the queue table lists it
    finally:
        close_studio(blocks, context, stop_running=False)
    restarted = JobSupervisor(runs_dir)
    assert [job.run_name for job in restarted.queued()] == ["queued-one"]
    assert restarted.stop("queued-one").endswith("removed from the queue")
    assert restarted.queued() == []
