"""In-training evaluation you can see and afford: the step-0 cap, progress.json, Stop during an evaluation."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from test_training_support import TINY_LORA_RUN, make_prepared
from transformers import TrainerCallback

from core.application.train import train
from core.domain.manifest import PROGRESS_FILE, RunManifest, read_metrics
from core.infrastructure.training.progress import Schedule, Timings, count_due, remaining_seconds


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory, embedded_model_dir) -> Path:
    return make_prepared(tmp_path_factory.mktemp("prepared") / "synthetic", embedded_model_dir, n_validation=12)


@pytest.fixture
def tiny_settings(make_settings, tiny_llama_dir, prepared_dir):
    def factory(**overrides):
        values = {"model.name": str(tiny_llama_dir), "data.dataset": str(prepared_dir), **TINY_LORA_RUN}
        values.update({"training.eval_batch_size": 2, **overrides})
        return make_settings(**values)

    return factory


class EvaluationWatcher(TrainerCallback):
    """Records every evaluation batch with the progress file as the studio would read it."""

    def __init__(self, run_dir: Path, stop_at: tuple[int, int] | None = None, stop_event=None) -> None:
        self.run_dir, self.stop_at, self.stop_event = run_dir, stop_at, stop_event
        self.batches: list[tuple[int, dict]] = []

    def on_prediction_step(self, args, state, control, **kwargs):
        progress = json.loads((self.run_dir / PROGRESS_FILE).read_text(encoding="utf-8"))
        self.batches.append((state.global_step, progress))
        done = sum(1 for step, _ in self.batches if step == state.global_step)
        if self.stop_at == (state.global_step, done):
            self.stop_event.set()
            self.stop_requested_at = time.perf_counter()


def test_step_zero_evaluation_uses_at_most_the_cap_and_reports_progress(tiny_settings):
    settings = tiny_settings(**{"training.eval_start_max_samples": 3})
    run_dir = Path(settings.paths.runs_dir) / "tiny"
    watcher = EvaluationWatcher(run_dir)
    train(settings, extra_callbacks=[watcher])

    at_start = [progress for step, progress in watcher.batches if step == 0]
    assert len(at_start) == 2  # 3 records in batches of 2
    assert [(p["phase"], p["eval_done"], p["eval_total"]) for p in at_start] == [
        ("evaluating", 1, 2),
        ("evaluating", 2, 2),
    ]
    later = [progress for step, progress in watcher.batches if step == 2]
    assert [progress["eval_done"] for progress in later] == [1, 2, 3, 4, 5, 6] and later[0]["eval_total"] == 6
    assert all(progress["eta_s"] is not None and progress["eta_s"] > 0 for progress in later)
    manifest = RunManifest.load(run_dir)
    assert manifest.metrics["initial_eval_records"] == 3 and manifest.metrics["eval_records"] == 12
    assert [row["step"] for row in read_metrics(run_dir) if "eval_loss" in row] == [0, 2, 4]
    final = json.loads((run_dir / PROGRESS_FILE).read_text(encoding="utf-8"))
    assert final["phase"] == "training" and final["step"] == 4


def test_turning_the_step_zero_evaluation_off_gives_no_step_zero_row(tiny_settings):
    settings = tiny_settings(**{"training.eval_on_start": False})
    run_dir = Path(settings.paths.runs_dir) / "tiny"
    train(settings)
    assert [row["step"] for row in read_metrics(run_dir) if "eval_loss" in row] == [2, 4]
    manifest = RunManifest.load(run_dir)
    assert "initial_eval_records" not in manifest.metrics


def test_stop_during_an_evaluation_skips_it_saves_a_checkpoint_and_resume_completes(tiny_settings):
    settings = tiny_settings(**{"training.max_steps": 6, "training.eval_steps": 2, "training.save_steps": 2})
    run_dir = Path(settings.paths.runs_dir) / "tiny"
    stop_event = threading.Event()
    watcher = EvaluationWatcher(run_dir, stop_at=(4, 1), stop_event=stop_event)
    train(settings, stop_event=stop_event, extra_callbacks=[watcher])

    stopped_after = time.perf_counter() - watcher.stop_requested_at
    # the stop is seen at the next batch: the evaluation at step 4 ends after its first batch
    assert [progress["eval_done"] for step, progress in watcher.batches if step == 4] == [1]
    manifest = RunManifest.load(run_dir)
    assert manifest.status == "stopped" and manifest.metrics["global_step"] == 4
    assert sorted(path.name for path in (run_dir / "checkpoints").glob("checkpoint-*")) == [
        "checkpoint-2",
        "checkpoint-4",
    ]
    assert [row["step"] for row in read_metrics(run_dir) if "eval_loss" in row] == [0, 2]  # step 4 skipped
    assert stopped_after < 60, stopped_after

    train(tiny_settings(**{"training.max_steps": 6, "training.eval_steps": 2, "training.save_steps": 2}))
    manifest = RunManifest.load(run_dir)
    assert manifest.status == "completed" and manifest.metrics["global_step"] == 6
    assert [row["step"] for row in read_metrics(run_dir) if "loss" in row] == [1, 2, 3, 4, 5, 6]
    assert [row["step"] for row in read_metrics(run_dir) if "eval_loss" in row] == [0, 2, 6]


def test_remaining_seconds_adds_steps_evaluations_samples_and_checkpoints():
    schedule = Schedule(eval_every=10, eval_batches=4, sample_every=10, save_every=10)
    timings = Timings(step_s=[1.0], eval_batch_s=[0.5], sample_s=2.0, checkpoint_s=3.0)
    assert count_due(10, 0, 30) == 3 and count_due(10, 10, 10) == 0 and count_due(0, 0, 30) == 0
    # 25 steps, evaluations at 10, 20 and 30 (4 batches each), samples at 10, 20, 30, saves at 10, 20, 30 + final
    assert remaining_seconds(5, 30, schedule, timings) == 25 + 3 * 2.0 + 3 * 2.0 + 4 * 3.0
    # at the last step with 3 batches of the last evaluation left: only those and the final save
    assert remaining_seconds(30, 30, schedule, timings, eval_batches_left=3) == 1.5 + 3.0
    # 25 steps, not a multiple: one more (final) evaluation after the last step
    assert remaining_seconds(20, 25, schedule, timings) == 5 + 2.0 + 3.0
    assert remaining_seconds(0, 30, schedule, Timings()) is None
