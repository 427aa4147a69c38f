"""The Compare tab's "train all techniques on this data" sweep, scripted with gradio_client.

One click queues one training job per registered technique (full, LoRA, QLoRA, Prefix Tuning, IA3)
of the Train form's model on the same data; the supervisor trains them one at a time in child
processes, and the Compare tab then shows them all side by side. The tiny llama model and two steps per run keep it short.
"""

from __future__ import annotations

import itertools
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.timeout(600)

STEPS = 2


@pytest.fixture
def studio(tiny_llama_dir: Path, make_settings):
    from studio.app import close_studio, launch_studio

    settings = make_settings(**{"data.max_samples": 48, "training.logging_steps": 1})
    blocks, context = launch_studio(settings, host="127.0.0.1", port=0, block=False)
    try:
        yield blocks, context, settings
    finally:
        close_studio(blocks, context)
        for job in context.supervisor.jobs():
            assert job.state != "running", f"job {job.job_id} left running"


def table_rows(table: dict) -> list[dict]:
    """Rows of a Dataframe output as gradio_client returns it (``headers`` + ``data``)."""
    return [dict(zip(table["headers"], row, strict=True)) for row in table["data"]]


def test_sweep_trains_every_technique_one_at_a_time(studio, tiny_llama_dir: Path) -> None:
    from gradio_client import Client

    from core.domain.manifest import RunManifest
    from core.domain.techniques import technique_names

    count = len(technique_names())
    blocks, context, settings = studio
    client = Client(blocks.local_url, verbose=False)
    # the sweep takes the Train form's model (here the tiny model, not the studio's default) and dataset
    message = client.predict(str(tiny_llama_dir), "demo", STEPS, api_name="/train_all_techniques")
    assert message.startswith(f"Queued {count} runs"), message

    jobs = [job for job in context.supervisor.jobs() if job.kind == "train"]
    assert len(jobs) == count
    names = [job.run_name for job in jobs]
    assert len(set(names)) == count, names
    configs = {job.run_name: yaml.safe_load(context.supervisor.config_path(job.job_id).read_text()) for job in jobs}
    techniques = {name: config["technique"]["name"] for name, config in configs.items()}
    assert sorted(techniques.values()) == sorted(technique_names())
    for name, config in configs.items():
        assert name.endswith(techniques[name]) and config["run_name"] == name
        assert config["model"]["name"] == str(tiny_llama_dir)
        assert config["data"]["dataset"] == "demo"
        assert config["training"]["max_steps"] == STEPS
    data_sections = [{**config["data"]} for config in configs.values()]
    assert all(section == data_sections[0] for section in data_sections), "every run trains on the same data"
    qlora = next(config for config in configs.values() if config["technique"]["name"] == "qlora")
    assert qlora["technique"]["compute_dtype"] in {"auto", "float32"}, "QLoRA on CPU must not compute in bf16"

    deadline = time.time() + 540
    while time.time() < deadline:
        jobs = [job for job in context.supervisor.jobs() if job.kind == "train"]
        running = [job.run_name for job in jobs if job.state == "running"]
        assert len(running) <= 1, f"more than one run trains at once: {running}"
        failed = [(job.run_name, job.message) for job in jobs if job.state in {"failed", "cancelled", "interrupted"}]
        assert not failed, f"sweep runs did not finish: {failed}"
        if all(job.state == "finished" for job in jobs):
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"the sweep did not finish: {[(job.run_name, job.state) for job in jobs]}")

    # one at a time: each job started after the previous one ended
    ordered = sorted(jobs, key=lambda job: job.started_at or "")
    for previous, following in itertools.pairwise(ordered):
        assert datetime.fromisoformat(following.started_at) >= datetime.fromisoformat(previous.finished_at)
    for name in names:
        manifest = RunManifest.load(Path(settings.paths.runs_dir) / name)
        assert manifest.status == "completed", (name, manifest.status, manifest.error)

    # the Compare tab lists the runs and shows them side by side
    choices, _report = client.predict([], api_name="/refresh_compare")
    listed = [choice[0] if isinstance(choice, list | tuple) else choice for choice in choices["choices"]]
    assert set(names) <= set(listed), listed
    _overlay, summary, diff = client.predict(names, "step", api_name="/compare_runs")
    figures = {row["figure"]: row for row in table_rows(summary)}
    for name in names:
        assert figures["status"][name] == "completed"
        assert figures["technique"][name] == techniques[name]
        assert figures["steps"][name] == str(STEPS)
        assert figures["trainable parameters"][name] not in {"-", "0"}
    changed = {row["setting"] for row in table_rows(diff)}
    assert "technique.name" in changed
    assert not any(setting.startswith("data.") for setting in changed), changed
