"""The Evaluate tab scripted with gradio_client: benchmark a completed run and the base model.

A tiny llama run is trained in-process through core's ``train`` use case; the tab then queues one
evaluation job per target (child processes, as when a user clicks **Run evaluation**) and the test
reads the metrics table and the per-sample outputs back through the tab's endpoints.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)

RUN_NAME = "eval-lora"


@pytest.fixture
def studio(tiny_llama_dir: Path, make_settings):
    from studio.app import close_studio, launch_studio

    settings = make_settings(
        **{
            "model.name": str(tiny_llama_dir),
            "data.max_samples": 48,
            "data.max_seq_length": 64,
            "evaluation.max_new_tokens": 8,
            "evaluation.batch_size": 4,
            "training.eval_batch_size": 8,
        }
    )
    blocks, context = launch_studio(settings, host="127.0.0.1", port=0, block=False)
    try:
        yield blocks, context, settings
    finally:
        close_studio(blocks, context)


def train_tiny_run(settings) -> Path:
    """A completed two-step LoRA run of the tiny model on the demo data, trained in this process."""
    from core.application.train import train
    from core.domain.config import settings_from_dict
    from studio.job_records import plain_config

    nested = plain_config(settings)
    nested["run_name"] = RUN_NAME
    nested["technique"] = {"name": "lora", "rank": 4, "alpha": 8}
    nested["training"] = {
        **nested["training"],
        "max_steps": 2,
        "per_device_batch_size": 4,
        "eval_steps": 2,
        "save_steps": 2,
        "learning_rate": 1e-2,
    }
    return train(settings_from_dict(nested))


def table_rows(table: dict) -> list[dict]:
    """Rows of a Dataframe output as gradio_client returns it (``headers`` + ``data``)."""
    return [dict(zip(table["headers"], row, strict=True)) for row in table["data"]]


def dropdown_value(output) -> object:
    """The value of a Dropdown output (an update mapping or the plain value)."""
    return output.get("value") if isinstance(output, dict) else output


def test_evaluate_run_and_base_model(studio) -> None:
    from gradio_client import Client

    from core.domain.manifest import RunManifest

    blocks, context, settings = studio
    run_dir = train_tiny_run(settings)
    assert RunManifest.load(run_dir).status == "completed"

    client = Client(blocks.local_url, verbose=False)
    # selecting the tab lists the evaluable runs (the checkbox choices of this session)
    choices, _metrics, _scores, _losses, _kinds, _target, _samples = client.predict(None, api_name="/refresh_evaluate")
    assert RUN_NAME in str(choices)

    message = client.predict([RUN_NAME], True, 3, api_name="/run_evaluation")
    assert "Queued evaluation" in message and RUN_NAME in message and "base model" in message
    jobs = [job for job in context.supervisor.jobs() if job.kind == "evaluate"]
    assert len(jobs) == 2
    assert all("/" not in job.run_name for job in jobs), "job labels are names, not paths"

    deadline = time.time() + 240
    while time.time() < deadline:
        states = {job.run_name: job.state for job in context.supervisor.jobs() if job.kind == "evaluate"}
        failed = [job for job in context.supervisor.jobs() if job.state == "failed"]
        assert not failed, f"evaluation failed: {[(job.run_name, job.message) for job in failed]}"
        if all(state == "finished" for state in states.values()):
            break
        time.sleep(1.0)
    else:
        raise AssertionError(f"evaluations did not finish: {states}")

    status, _choices, metrics, scores, losses, kinds, target, samples = client.predict(
        None, api_name="/poll_evaluations"
    )  # the tab's own poll redraws the results once the evaluations are written
    assert status == ""  # nothing queued or running any more
    table = {row["metric"]: row for row in table_rows(metrics)}
    base_dir = f"base-{Path(settings.model.name).name}"
    assert table_rows(metrics) and set(table_rows(metrics)[0]) == {"metric", RUN_NAME, base_dir}
    for name in (RUN_NAME, base_dir):
        for label in ("Loss (response tokens)", "Perplexity"):
            value = table[label][name]
            assert isinstance(value, int | float) and math.isfinite(value) and value > 0, (name, label, value)
        assert table["Test records answered"][name] == 3
    rows = {RUN_NAME, base_dir}
    loss_chart = json.loads(losses["plot"])["data"][0]
    assert sorted(loss_chart["x"]) == sorted(rows) and all(value > 0 for value in loss_chart["y"])
    assert "Scores" in json.loads(scores["plot"])["layout"]["title"]["text"]

    # the per-sample table: prompt, reference and output of each of the 3 test records
    assert dropdown_value(target) in rows
    for name in (RUN_NAME, base_dir):
        *_results, shown, samples = client.predict(name, api_name="/evaluation_samples")
        assert dropdown_value(shown) == name
        sample_rows = table_rows(samples)
        assert len(sample_rows) == 3, (name, sample_rows)
        for row in sample_rows:
            assert row["Prompt"].strip() and row["Reference"].strip()
            assert isinstance(row["Answer"], str) and row["Checks passed"] != "-"
            assert isinstance(row["ROUGE-L"], int | float) and isinstance(row["Sentence BLEU"], int | float)
        # no paths, no raw messages; lowest ROUGE-L first
        assert list(sample_rows[0]) == [
            "#",
            "Prompt",
            "Answer",
            "Reference",
            "Sentence BLEU",
            "ROUGE-L",
            "Checks passed",
        ]
        assert [row["ROUGE-L"] for row in sample_rows] == sorted(row["ROUGE-L"] for row in sample_rows)

    # pass rates by check kind, strict / loose, for the run and the base model
    kind_rows = table_rows(kinds)
    assert kind_rows and set(kind_rows[0]) == {"Check (strict / loose)", RUN_NAME, base_dir}
    assert all(" / " in row[RUN_NAME] for row in kind_rows)
    # metrics carry their bootstrap interval where there is one
    assert "[" in str(table["Instruction-level accuracy (strict)"][RUN_NAME])
    assert "Prompt-level accuracy (loose)" in table

    # the evaluated base model can be picked in Compare, beside the run
    choices, _report = client.predict([], api_name="/refresh_compare")
    assert {RUN_NAME, base_dir} <= {choice[0] if isinstance(choice, list) else choice for choice in choices["choices"]}
    _figure, summary, _diff = client.predict([RUN_NAME, base_dir], "step", api_name="/compare_runs")
    status_row = next(row for row in table_rows(summary) if row["figure"] == "status")
    assert status_row[base_dir] == "base model (evaluated)"
