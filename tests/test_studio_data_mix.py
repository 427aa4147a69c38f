"""Several datasets from the studio: the Data tab's comma-separated field becomes data.datasets for the run."""

from __future__ import annotations

from pathlib import Path

import yaml

from core.domain.config import load_settings
from studio import data_view
from studio.data_sources import data_section, dataset_names, joined
from studio.training_form import sweep_settings, with_data_options, yaml_text
from tests import test_studio_client
from tests.test_data_mixing import write_alpaca, write_sharegpt

launched_studio = test_studio_client.studio  # the studio of the client tests, as a fixture of this module


def test_dataset_field_names_one_or_several(tmp_path):
    odd = tmp_path / "a,b.jsonl"
    odd.write_text("{}\n", encoding="utf-8")
    assert dataset_names(" demo ") == ["demo"]
    assert dataset_names("a.jsonl, b.json ,") == ["a.jsonl", "b.json"]
    assert dataset_names(str(odd)) == [str(odd)]  # an existing path with a comma is one dataset
    assert dataset_names("") == [] and joined(["a", "b"]) == "a, b"
    mixed = {"datasets": [{"dataset": "a", "weight": 3.0}, {"dataset": "b"}], "mix_strategy": "weighted"}
    assert data_section(mixed, "a, b")["datasets"] == mixed["datasets"]  # the configured weights are kept
    assert data_section(mixed, "demo") == {"dataset": "demo", "mix_strategy": "weighted"}
    assert data_section({"dataset": "demo", "mix_size": 5}, "a, b") == {
        "datasets": [{"dataset": "a", "format": "auto"}, {"dataset": "b", "format": "auto"}]
    }


def test_several_files_become_equal_sources_of_the_run(tmp_path, make_settings):
    alpaca = write_alpaca(tmp_path / "alpaca.jsonl", count=12)
    sharegpt = write_sharegpt(tmp_path / "chats.json", count=6)
    base = make_settings()
    field = joined([str(alpaca), str(sharegpt)])
    text, frame = data_view.several_datasets(base, dataset_names(field), "auto")
    assert f"`{alpaca}`: `alpaca`" in text and f"`{sharegpt}`: `sharegpt`" in text
    assert list(frame.columns[:1]) == ["dataset"] and len(frame) == 18
    prepared = data_view.prepare(data_view.settings_for_dataset(base, field, "auto", lenient=False))
    assert [source["read"] for source in prepared.report["sources"]] == [12, 6]
    assert prepared.report["mix"]["strategy"] == "concat"
    run = sweep_settings(base, field, max_steps=2)[1]
    run = with_data_options(run, {"dataset": field, "format": "auto", "lenient": True})
    assert [(source.dataset, source.weight) for source in run.data.sources()] == [
        (str(alpaca), 1.0),
        (str(sharegpt), 1.0),
    ]
    assert run.data.lenient and run.data.mix_strategy == "concat"
    preset = tmp_path / "run.yaml"  # what the Train tab hands the training process
    preset.write_text(yaml_text(run), encoding="utf-8")
    assert "dataset: demo" not in preset.read_text() and yaml.safe_load(preset.read_text())["data"]["datasets"]
    assert load_settings(preset, read_environment=False).data == run.data


def test_studio_loads_prepares_and_trains_on_several_files(launched_studio, tiny_llama_dir, tmp_path):
    """Through the studio's API: the path box takes two files, Prepare reports both, Start trains on the mix."""
    from gradio_client import Client

    from core.domain.manifest import RunManifest
    from tests.test_studio_client import start_arguments, wait_for

    blocks, _context, settings = launched_studio
    alpaca = write_alpaca(tmp_path / "alpaca.jsonl", count=30)
    sharegpt = write_sharegpt(tmp_path / "chats.json", count=10)
    field = joined([str(alpaca), str(sharegpt)])
    client = Client(blocks.local_url, verbose=False)
    loaded = client.predict("path or Hub dataset", None, field, "auto", "", "", "", "", api_name="/load_data")
    assert "**2 datasets**" in loaded[0] and f"`{sharegpt}`: `sharegpt`" in loaded[0]
    assert field in loaded
    prepared = client.predict(field, "auto", False, str(tiny_llama_dir), 0, api_name="/prepare_data")
    assert "Sources" in prepared[0] and f"`{alpaca}`" in prepared[0]
    arguments = start_arguments(str(tiny_llama_dir), "mix-run", max_steps=2)
    arguments[3] = field
    _selector, message = client.predict(*arguments, api_name="/start_training")
    assert "Queued" in message, message
    wait_for(client, "mix-run", lambda status, step: status == "completed", timeout_s=240)
    stored = RunManifest.load(Path(settings.paths.runs_dir) / "mix-run")
    assert [source["dataset"] for source in stored.config["data"]["datasets"]] == [str(alpaca), str(sharegpt)]


def test_uploads_are_stored_by_content_and_never_overwrite_each_other(tmp_path):
    first, second = tmp_path / "alice" / "data.jsonl", tmp_path / "bob" / "data.jsonl"
    for path, text in (
        (first, '{"instruction": "a", "output": "b"}\n'),
        (second, '{"instruction": "c", "output": "d"}\n'),
    ):
        path.parent.mkdir()
        path.write_text(text)
    stored_first = data_view.store_upload(str(first), tmp_path / "data")
    stored_second = data_view.store_upload(str(second), tmp_path / "data")
    assert stored_first != stored_second and stored_first.name == stored_second.name == "data.jsonl"
    assert stored_first.read_text() == first.read_text() and stored_second.read_text() == second.read_text()
    assert data_view.store_upload(str(first), tmp_path / "data") == stored_first  # the same content is stored once
    assert stored_first.is_relative_to(tmp_path / "data" / "uploads")
