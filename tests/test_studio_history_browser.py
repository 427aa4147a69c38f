# ruff: noqa: F811  (``page`` is the fixture shared with test_studio_browser, imported by name)
"""Run history, the header on first paint and the full log, clicked through in headless Chromium.

Two tiny LoRA runs are trained in this process; a third, long one trains in the studio's supervisor
so that the header has an active run to show. The test renames a run, clones it into the form,
cancels and then confirms a delete (the browser's own confirmation dialog), and downloads a log.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest
from test_studio_browser import CHROMIUM, choose, page, wait_until  # noqa: F401 (page: the shared fixture)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.timeout(420),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed (apt-get install chromium)"),
]


def _train_tiny(settings, name: str) -> Path:
    """A completed one-step LoRA run (rank 4) of the tiny model on the demo data."""
    from core.application.train import train
    from core.domain.config import settings_from_dict
    from studio.job_records import plain_config

    nested = plain_config(settings)
    nested["run_name"] = name
    nested["technique"] = {"name": "lora", "rank": 4, "alpha": 8}
    nested["training"] = {**nested["training"], "max_steps": 1, "per_device_batch_size": 4, "eval_steps": 1}
    return train(settings_from_dict(nested))


@pytest.fixture
def studio(tiny_llama_dir: Path, make_settings):
    from studio.app import close_studio, launch_studio

    settings = make_settings(**{"model.name": str(tiny_llama_dir), "data.max_samples": 32, "data.max_seq_length": 64})
    for name in ("history-a", "history-b"):
        _train_tiny(settings, name)
    blocks, context = launch_studio(settings, host="127.0.0.1", port=0, block=False)
    try:
        yield blocks, context, settings
    finally:
        close_studio(blocks, context)


def _history_text(page) -> str:
    return page.locator("#history-table").inner_text()


def test_header_history_rename_clone_delete_and_full_log(studio, page) -> None:
    from core.domain.manifest import RunManifest

    blocks, context, settings = studio
    runs_dir = Path(settings.paths.runs_dir)
    long_run = settings.model_copy(
        update={
            "run_name": "history-live",
            "training": settings.training.model_copy(update={"max_steps": 100_000, "eval_steps": 50_000}),
        }
    )
    context.supervisor.submit("train", "history-live", long_run)
    wait_until(lambda: context.active_run() == "history-live", 60, message="the live run starts")

    # the header is right on the first paint, not after its 5 s refresh
    started = time.monotonic()
    page.goto(blocks.local_url)
    page.locator("#studio-resources", has_text="history-live").wait_for(timeout=10_000)
    assert time.monotonic() - started < 4.5, "the header waited for its timer"

    # the history lists every run
    page.locator("#history-table", has_text="history-b").wait_for()
    assert "history-a" in _history_text(page) and "completed" in _history_text(page)

    # rename
    choose(page, "history-run", "history-a")
    page.locator("#history-new-name textarea, #history-new-name input").first.fill("history-renamed")
    page.locator("#history-rename").click()
    page.locator("#history-message", has_text="Renamed").wait_for()
    assert (runs_dir / "history-renamed").is_dir() and not (runs_dir / "history-a").exists()
    assert RunManifest.load(runs_dir / "history-renamed").run_name == "history-renamed"
    page.locator("#history-table", has_text="history-renamed").wait_for()

    # a busy run cannot be renamed
    choose(page, "history-run", "history-live")
    page.locator("#history-rename").click()
    page.get_by_text("history-live is queued or running").first.wait_for()  # a toast says why

    # clone into the form: its settings, an empty run name
    page.locator("#max-steps input").fill("77")
    choose(page, "history-run", "history-renamed")
    page.locator("#history-clone").click()
    page.locator("#history-message", has_text="Form filled from").wait_for()
    wait_until(lambda: page.locator("#max-steps input").input_value() == "1", 10, message="max steps of the run")
    assert page.locator("#lora-rank input").input_value() == "4"
    assert page.locator("#run-name textarea, #run-name input").first.input_value() == ""

    # delete: a cancelled confirmation deletes nothing; a confirmed one deletes the run
    choose(page, "history-run", "history-b")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.locator("#history-delete").click()
    page.locator("#history-message", has_text="Nothing deleted").wait_for()
    assert (runs_dir / "history-b").is_dir()
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#history-delete").click()
    page.locator("#history-message", has_text="Deleted history-b").wait_for()
    assert not (runs_dir / "history-b").exists()
    wait_until(lambda: "history-b" not in _history_text(page), 10, message="the table drops the deleted run")

    # the full log of the selected run, and where TensorBoard's curves are
    choose(page, "run-selector", "history-renamed")
    page.locator("#log-hint", has_text="train.log").wait_for()
    page.locator("#full-log").click()
    wait_until(  # the copy, offered as a download
        lambda: "history-renamed-train" in page.locator("body").inner_text(), 30, message="the full log"
    )
    context.supervisor.stop("history-live")


@pytest.fixture
def empty_studio(tiny_llama_dir: Path, make_settings):
    from studio.app import close_studio, launch_studio

    settings = make_settings(**{"model.name": str(tiny_llama_dir), "data.max_samples": 32, "data.max_seq_length": 64})
    blocks, context = launch_studio(settings, host="127.0.0.1", port=0, block=False)
    try:
        yield blocks, context, settings
    finally:
        close_studio(blocks, context)


def _shown_step(page) -> int:
    text = page.locator("#run-status-block").inner_text()
    match = re.search(r"STEP\s*(\d+)", text, re.IGNORECASE)
    return int(match.group(1)) if match else -1


def test_kill_9_of_the_training_child_shows_interrupted_and_resume_continues(empty_studio, page) -> None:
    """A real training child killed with SIGKILL: the page says interrupted within a poll; Resume goes on."""
    from core.domain.manifest import RunManifest, read_metrics
    from core.infrastructure.training.checkpoints import newest_complete_checkpoint

    blocks, context, settings = empty_studio
    run_dir = Path(settings.paths.runs_dir) / "killed-live"
    planned = settings.model_copy(
        update={
            "run_name": "killed-live",
            "technique": settings.technique.model_copy(update={"rank": 4}),
            "training": settings.training.model_copy(
                update={"max_steps": 400, "save_steps": 2, "eval_steps": 200, "per_device_batch_size": 2}
            ),
        }
    )
    context.supervisor.submit("train", "killed-live", planned)
    page.goto(blocks.local_url)
    choose(page, "run-selector", "killed-live")
    wait_until(lambda: newest_complete_checkpoint(run_dir / "checkpoints") is not None, 180, message="a checkpoint")
    pid = context.supervisor.latest_job_for("killed-live").pid
    os.kill(pid, signal.SIGKILL)
    logged_at_kill = max((row["step"] for row in read_metrics(run_dir) if "loss" in row), default=0)
    checkpoint_step = int(newest_complete_checkpoint(run_dir / "checkpoints").name.split("-")[1])  # the resume point
    killed_at = time.monotonic()
    page.locator("#run-status-block .status-interrupted, #run-status-block .status-failed").wait_for(timeout=30_000)
    assert time.monotonic() - killed_at < 8, "not within a poll (2 s) and the reap, with margin for a loaded CPU"
    assert RunManifest.load(run_dir).status != "completed"

    page.locator("#resume-button").click()
    page.locator("#train-message", has_text="Resuming").wait_for()
    resumed = f"Resuming from {run_dir / 'checkpoints' / f'checkpoint-{checkpoint_step}'}"
    wait_until(lambda: resumed in (run_dir / "train.log").read_text(), 120, message="the resumed run starts")
    wait_until(lambda: _shown_step(page) > logged_at_kill, 180, message="training goes past the killed run's steps")
    steps = [row["step"] for row in read_metrics(run_dir) if "loss" in row]
    assert steps == sorted(set(steps)), "the resumed run continues the steps, it does not restart them"
    context.supervisor.stop("killed-live")
