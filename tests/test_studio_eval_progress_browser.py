"""The Train tab shows ``evaluating k/N`` while a run evaluates, and Stop during it says what it does.

A LoRA run of the embedded model is started through the studio's API; its step-0 evaluation runs
one record per batch, long enough to be seen. Stop then skips that evaluation: the run stops after
its first step with a checkpoint. Screenshot: ``test-artifacts/studio/train-evaluating.png``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_studio_browser import page, pytestmark, shot, status_word, wait_until  # noqa: F401 - fixture, marks

from core.domain.manifest import RunManifest


@pytest.fixture
def studio(make_settings):
    from studio.app import close_studio, launch_studio

    settings = make_settings(
        **{
            "data.max_seq_length": 64,
            "training.eval_batch_size": 1,
            "training.eval_start_max_samples": 24,
            "monitoring.tensorboard": False,
        }
    )
    blocks, context = launch_studio(settings, host="127.0.0.1", port=0, block=False)
    try:
        yield blocks, context, settings
    finally:
        close_studio(blocks, context)


def test_status_pill_shows_evaluation_progress_and_stop_skips_it(studio, page) -> None:  # noqa: F811
    from gradio_client import Client

    blocks, _context, settings = studio
    client = Client(blocks.local_url, verbose=False)
    client.predict(
        settings.model.name, "lora", "eval-visible", "demo", 2e-4, 50, 1, 1, 1, 64, 0, 0, 0, 8, 16, 0.0, 4,
        False, api_name="/start_training",
    )  # fmt: skip
    page.goto(blocks.local_url)
    page.get_by_role("tab", name="Train").click()
    seen: list[str] = []

    def evaluating() -> bool:
        seen.append(status_word(page))
        return bool(re.fullmatch(r"evaluating \d+/24", seen[-1])) and seen[-1] != "evaluating 0/24"

    wait_until(evaluating, 300, message="the pill never showed evaluating k/24")
    shot(page, "train-evaluating")
    eta = page.locator("#run-status .kpi", has_text="ETA").inner_text()
    page.locator("#stop-button").click()
    page.locator("#train-message", has_text="the evaluation in progress is skipped, a checkpoint is saved").wait_for()
    wait_until(lambda: status_word(page) == "stopped", 240, message="the run did not stop")
    shot(page, "train-stopped-during-evaluation")

    run_dir = Path(settings.paths.runs_dir) / "eval-visible"
    manifest = RunManifest.load(run_dir)
    assert manifest.status == "stopped" and manifest.metrics["global_step"] == 1, manifest.metrics
    assert (run_dir / "checkpoints" / "checkpoint-1").is_dir()
    assert "ETA" in eta
