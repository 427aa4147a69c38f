"""Exact resume: N steps straight == k steps, abrupt kill, resume in a new process (CPU, fp32)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_training_support import isolated_overrides, make_prepared, train_in_subprocess

from core.domain.manifest import RunManifest, read_metrics

SCENARIOS = {
    # checkpoint every 2 steps, killed during step 5 -> resumes from step 4, in the middle of epoch 2
    "mid-epoch": {"training.save_steps": 2},
    # checkpoint every 3 steps (= one epoch), killed during step 5 -> resumes from the epoch boundary
    "epoch-boundary": {"training.save_steps": 3},
}
# save_steps may differ between runs (it does not change training), so one straight run serves both.


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory, embedded_model_dir) -> Path:
    return make_prepared(tmp_path_factory.mktemp("resume-data") / "synthetic", embedded_model_dir, n_train=12)


def run_overrides(root: Path, model_dir: Path, prepared: Path, run_name: str, scenario: str) -> dict:
    return isolated_overrides(
        root,
        run_name=run_name,
        **{
            "model.name": str(model_dir),
            "data.dataset": str(prepared),
            "technique": "lora",
            "technique.rank": 4,
            "technique.dropout": 0.1,  # dropout draws random numbers: RNG state must be restored too
            "training.precision": "fp32",
            "training.num_epochs": 2,
            "training.per_device_batch_size": 2,
            "training.gradient_accumulation_steps": 2,  # 12 examples -> 3 optimizer steps per epoch
            "training.learning_rate": 5e-3,
            "training.eval_steps": 6,
            "training.eval_batch_size": 8,
            "training.packing": "'off'",
            "training.group_by_length": True,  # length-grouped order must be reproduced after resume
            **SCENARIOS[scenario],
        },
    )


def trained_state(run_dir: Path) -> tuple[list, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    rows = [row for row in read_metrics(run_dir) if "loss" in row or "eval_loss" in row]
    history = [(row["step"], row.get("loss"), row.get("grad_norm"), row.get("eval_loss")) for row in rows]
    final = load_file(run_dir / "final" / "adapter_model.safetensors")
    last_checkpoint = load_file(run_dir / "checkpoints" / "checkpoint-6" / "adapter_model.safetensors")
    return history, final, last_checkpoint


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, tiny_model_dirs, prepared_dir) -> Path:
    root = tmp_path_factory.mktemp("straight")
    result = train_in_subprocess(run_overrides(root, tiny_model_dirs["llama"], prepared_dir, "straight", "mid-epoch"))
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "runs" / "straight"


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_kill_and_resume_in_new_process_is_bit_identical(
    scenario, straight_run, tmp_path, tiny_llama_dir, prepared_dir
):
    interrupted = run_overrides(tmp_path, tiny_llama_dir, prepared_dir, "interrupted", scenario)
    killed = train_in_subprocess(interrupted, kill_at_step=5)
    assert killed.returncode == 17, killed.stderr[-3000:]
    run_dir = tmp_path / "runs" / "interrupted"
    assert RunManifest.load(run_dir).status == "training"  # died without any chance to clean up
    expected_resume = 4 if scenario == "mid-epoch" else 3
    session_started = time.perf_counter()
    resumed = train_in_subprocess(interrupted)
    resumed_session_s = time.perf_counter() - session_started
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = (run_dir / "train.log").read_text()
    assert f"checkpoint-{expected_resume} (step {expected_resume})" in log

    straight_history, straight_final, straight_last = trained_state(straight_run)
    resumed_history, resumed_final, resumed_last = trained_state(run_dir)
    assert [step for step, loss, *_ in straight_history if loss is not None] == [1, 2, 3, 4, 5, 6]
    assert resumed_history == straight_history  # every loss, grad norm and eval loss, exactly
    assert straight_final.keys() == resumed_final.keys() and len(straight_final) > 0
    for name in straight_final:
        assert torch.equal(straight_final[name], resumed_final[name]), name
        assert torch.equal(straight_last[name], resumed_last[name]), name
    assert RunManifest.load(run_dir).status == "completed"

    # The manifest describes the whole run, not the resumed segment.
    straight_summary, resumed_summary = RunManifest.load(straight_run).metrics, RunManifest.load(run_dir).metrics
    for key in ("initial_eval_loss", "final_eval_loss", "best_eval_loss", "best_eval_step", "final_train_loss"):
        assert resumed_summary[key] == straight_summary[key], key
    assert next(row["step"] for row in read_metrics(run_dir) if "eval_loss" in row) == 0
    initial, final = (round(resumed_summary[key], 4) for key in ("initial_eval_loss", "final_eval_loss"))
    assert initial != final and f"eval loss {initial} -> {final}" in log
    # Wall time: up to the checkpoint (from the killed session) plus the resumed session, steps replayed once.
    at_checkpoint = next(
        row["elapsed_s"]
        for row in read_metrics(run_dir)
        if row.get("event") == "checkpoint" and row["step"] == expected_resume
    )
    later = [row["elapsed_s"] for row in read_metrics(run_dir) if "loss" in row and row["step"] > expected_resume]
    assert later and min(later) > at_checkpoint
    assert at_checkpoint < resumed_summary["train_runtime_s"] < at_checkpoint + resumed_session_s
