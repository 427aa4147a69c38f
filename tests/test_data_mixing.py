"""Several datasets in one run: data.datasets, concat and weighted mixing, per-source counts, fingerprints.

Real files written here (an Alpaca JSONL and a ShareGPT JSON array), the embedded model's real
tokenizer, and the same settings spelled in YAML, in the environment and on the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from loguru import logger

from core.application.prepare_data import preparation_fingerprint, prepare_data, run
from core.domain.config import load_settings
from core.domain.errors import ConfigError
from core.infrastructure.data.mixing import largest_remainder, total_without_repeats

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL_CACHE = Path(os.environ.get("FINETUNE_PATHS__MODEL_CACHE", REPO_ROOT / ".cache" / "models"))


def write_alpaca(path: Path, count: int = 40) -> Path:
    rows = [
        {"instruction": f"Alpaca task {index}", "input": "", "output": f"Alpaca answer {index}"}
        for index in range(count)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_sharegpt(path: Path, count: int = 20, empty_answer_at: int | None = None) -> Path:
    """A JSON array with one element per line: element ``i`` starts on line ``i + 2``."""
    rows = [
        {
            "conversations": [
                {"from": "human", "value": f"ShareGPT question {index}"},
                {"from": "gpt", "value": "" if index == empty_answer_at else f"ShareGPT answer {index}"},
            ]
        }
        for index in range(count)
    ]
    path.write_text("[\n" + ",\n".join(json.dumps(row) for row in rows) + "\n]\n", encoding="utf-8")
    return path


@pytest.fixture
def logged():
    """Messages logged while the test runs."""
    messages: list[str] = []
    sink = logger.add(lambda message: messages.append(str(message)), level="INFO")
    yield messages
    logger.remove(sink)


@pytest.fixture
def two_files(tmp_path):
    return write_alpaca(tmp_path / "alpaca.jsonl"), write_sharegpt(tmp_path / "chats.json")


def weighted(alpaca: Path, sharegpt: Path, **source_b) -> list[dict]:
    return [{"dataset": str(alpaca), "weight": 0.75}, {"dataset": str(sharegpt), "weight": 0.25, **source_b}]


def sources_of(prepared) -> list[str]:
    return [
        conversation.source
        for split in ("train", "validation", "test")
        for conversation in prepared.conversations(split)
    ]


def per_file(prepared) -> Counter:
    return Counter(Path(source.rsplit(":", 1)[0]).name for source in sources_of(prepared))


def test_largest_remainder_counts_add_up_exactly():
    assert largest_remainder(40, [0.75, 0.25]) == [30, 10]
    assert largest_remainder(41, [0.75, 0.25]) == [31, 10]  # 30.75 / 10.25: the larger remainder gets the record
    assert largest_remainder(10, [1, 1, 1]) == [4, 3, 3]  # ties go to the earlier source
    assert largest_remainder(7, [3, 1]) == [5, 2]  # 5.25 / 1.75
    assert total_without_repeats([40, 8], [0.75, 0.25]) == 32  # min(40 / 0.75, 8 / 0.25)
    assert total_without_repeats([40, 0], [0.75, 0.25]) == 53  # an empty source does not stop the others


def test_weighted_mix_counts_per_source_and_report(two_files, make_settings):
    alpaca, sharegpt = two_files
    settings = make_settings(
        **{"data.datasets": weighted(alpaca, sharegpt), "data.mix_strategy": "weighted", "data.mix_size": 41}
    )
    prepared = prepare_data(settings)
    report = json.loads((prepared.directory / "report.json").read_text())
    first, second = report["sources"]
    assert (first["dataset"], first["format"], second["format"]) == (str(alpaca), "alpaca", "sharegpt")
    assert (first["read"], first["kept"], first["requested"], first["used"], first["not_used"]) == (40, 40, 31, 31, 9)
    assert (second["read"], second["kept"], second["requested"], second["used"], second["not_used"]) == (
        20,
        20,
        10,
        10,
        10,
    )
    assert first["repeated"] == second["repeated"] == 0
    assert report["mix"] == {"strategy": "weighted", "mix_size": 41, "records": 41, "repeated": 0}
    counts = report["counts"]
    assert counts["read"] == 60 and counts["kept"] == 41 and counts["skipped"] == {"not_in_mix": 19}
    assert per_file(prepared) == {"alpaca.jsonl": 31, "chats.json": 10}
    markdown = (prepared.directory / "report.md").read_text()
    assert (
        "## Sources" in markdown and f"| `{sharegpt}` | sharegpt | 0.25 | 20 | 20 | 0 | 10 | 10 | 10 | 0 |" in markdown
    )


def test_same_seed_same_records_other_seed_other_draw(two_files, make_settings, tmp_path):
    alpaca, sharegpt = two_files
    overrides = {"data.datasets": weighted(alpaca, sharegpt), "data.mix_strategy": "weighted", "data.mix_size": 40}
    first = prepare_data(make_settings(**overrides), output_dir=tmp_path / "first")
    again = prepare_data(make_settings(**overrides), output_dir=tmp_path / "again")
    other = prepare_data(make_settings(**overrides, **{"data.seed": 7}), output_dir=tmp_path / "other")
    assert sources_of(first) == sources_of(again)
    assert [row["input_ids"] for row in first.tokenized("train")] == [
        row["input_ids"] for row in again.tokenized("train")
    ]
    assert per_file(first) == per_file(other) == {"alpaca.jsonl": 30, "chats.json": 10}
    assert set(sources_of(first)) != set(sources_of(other))
    assert [source["used"] for source in other.report["sources"]] == [30, 10]


def test_max_samples_shortfall_warns_and_repeat_fills(two_files, make_settings, tmp_path, logged):
    alpaca, sharegpt = two_files
    short = {"data.mix_strategy": "weighted", "data.mix_size": 40}
    prepared = prepare_data(
        make_settings(**short, **{"data.datasets": weighted(alpaca, sharegpt, max_samples=8)}),
        output_dir=tmp_path / "a",
    )
    second = prepared.report["sources"][1]
    assert (second["kept"], second["requested"], second["used"], second["repeated"]) == (8, 10, 8, 0)
    assert second["skipped"] == {"max_samples": 12} and second["read"] == second["kept"] + second["skipped_total"]
    assert prepared.report["mix"]["records"] == 38
    assert "short by 2" in prepared.report["warnings"][0]
    assert "short by 2" in (prepared.directory / "report.md").read_text()
    assert any(
        "asks 10 of 40 records from it (weight 0.25) but it has 8 usable records; using 8 (short by 2" in message
        for message in logged
    )
    repeated = prepare_data(
        make_settings(**short, **{"data.datasets": weighted(alpaca, sharegpt, max_samples=8, repeat=True)}),
        output_dir=tmp_path / "b",
    )
    second = repeated.report["sources"][1]
    assert (second["used"], second["repeated"]) == (8, 2) and repeated.report["mix"]["records"] == 40
    unset = prepare_data(
        make_settings(**{"data.mix_strategy": "weighted", "data.datasets": weighted(alpaca, sharegpt, max_samples=8)}),
        output_dir=tmp_path / "c",
    )
    assert [source["used"] for source in unset.report["sources"]] == [24, 8]  # 32 = min(40 / 0.75, 8 / 0.25)


def test_concat_appends_each_source_capped_and_input_may_repeat(two_files, make_settings, tmp_path, capsys):
    alpaca, sharegpt = two_files
    sources = [{"dataset": str(alpaca), "max_samples": 5}, {"dataset": str(sharegpt)}]
    prepared = prepare_data(make_settings(**{"data.datasets": sources}))
    assert [(source["kept"], source["used"], source["requested"]) for source in prepared.report["sources"]] == [
        (5, 5, None),
        (20, 20, None),
    ]
    assert per_file(prepared) == {"alpaca.jsonl": 5, "chats.json": 20}
    arguments = argparse.Namespace(
        config=None,
        overrides=[f"paths.data_dir={tmp_path / 'data'}", f"paths.model_cache={MODEL_CACHE}"],
        input=[str(alpaca), str(sharegpt)],
        format=None,
        output=str(tmp_path / "cli"),
        lenient=False,
    )
    assert run(arguments) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["read"] == summary["kept"] == 60 and summary["mix"]["strategy"] == "concat"
    assert [source["dataset"] for source in summary["sources"]] == [str(alpaca), str(sharegpt)]


def run_cli(*arguments: str, data_dir: Path) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("FINETUNE_")}
    environment.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    command = [sys.executable, "-m", "core.cli", "prepare-data", *arguments]
    command += [f"paths.data_dir={data_dir}", f"paths.model_cache={MODEL_CACHE}"]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, env=environment, timeout=300)


def test_bad_record_in_one_source_strict_exit_2_lenient_counted(tmp_path, make_settings):
    alpaca = write_alpaca(tmp_path / "alpaca.jsonl")
    sharegpt = write_sharegpt(tmp_path / "chats.json", empty_answer_at=3)
    sources = json.dumps(weighted(alpaca, sharegpt))
    strict = run_cli(f"datasets={sources}", "mix_strategy=weighted", "mix_size=40", data_dir=tmp_path / "data")
    assert strict.returncode == 2, strict.stderr
    assert f"{sharegpt}:5: " in strict.stderr and "empty" in strict.stderr
    assert f"1 problem(s) in the input data:\n{sharegpt}:5: conversations" in strict.stderr
    assert re.search(re.escape(str(alpaca)) + r":\d", strict.stderr) is None
    settings = make_settings(
        **{"data.datasets": weighted(alpaca, sharegpt), "data.mix_strategy": "weighted", "data.mix_size": 40}
    )
    prepared = prepare_data(settings, lenient=True)
    first, second = prepared.report["sources"]
    assert first["skipped_total"] == 0 and first["read"] == 40
    assert second["read"] == 20 and second["kept"] == 19 and second["skipped"] == {"empty_response": 1}
    assert second["used"] == 10 and prepared.report["mode"] == "lenient"


MIX_YAML = """\
data:
  datasets:
    - dataset: {alpaca}
      weight: 0.75
    - dataset: {sharegpt}
      format: sharegpt
      weight: 0.25
      max_samples: 8
      repeat: true
  mix_strategy: weighted
  mix_size: 40
"""


def test_yaml_environment_and_cli_spellings_are_identical(two_files, tmp_path, monkeypatch):
    alpaca, sharegpt = two_files
    preset = tmp_path / "mix.yaml"
    preset.write_text(MIX_YAML.format(alpaca=alpaca, sharegpt=sharegpt), encoding="utf-8")
    sources = [
        {"dataset": str(alpaca), "weight": 0.75},
        {"dataset": str(sharegpt), "format": "sharegpt", "weight": 0.25, "max_samples": 8, "repeat": True},
    ]
    by_yaml = load_settings(preset, read_environment=False).data
    by_cli = load_settings(
        None, [f"datasets={json.dumps(sources)}", "mix_strategy=weighted", "data.mix_size=40"], read_environment=False
    ).data
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    for name in [key for key in os.environ if key.startswith("FINETUNE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("FINETUNE_DATA__DATASETS", json.dumps(sources))
    monkeypatch.setenv("FINETUNE_DATA__MIX_STRATEGY", "weighted")
    monkeypatch.setenv("FINETUNE_DATA__MIX_SIZE", "40")
    by_environment = load_settings(None).data
    assert by_yaml == by_cli == by_environment
    assert [source.max_samples for source in by_yaml.sources()] == [None, 8]
    assert by_yaml.dataset_label() == f"{alpaca} + {sharegpt}"
    # a preset naming one dataset yields to data.datasets from a higher source
    single = tmp_path / "single.yaml"
    single.write_text("data:\n  dataset: demo\n", encoding="utf-8")
    assert load_settings(single).data.datasets == by_yaml.datasets


def test_validation_names_the_source_field_and_the_conflict(two_files):
    alpaca, sharegpt = two_files
    bad = [{"dataset": str(alpaca)}, {"dataset": str(sharegpt), "weight": -1}]
    with pytest.raises(ConfigError, match=r"^data\.datasets\[1\]\.weight: Input should be greater than 0"):
        load_settings(None, {"data": {"datasets": bad}}, read_environment=False)
    with pytest.raises(ConfigError, match=r"data\.datasets: give either data\.dataset .* not both \(data\.dataset"):
        load_settings(
            None, {"data": {"dataset": str(alpaca), "datasets": [{"dataset": str(sharegpt)}]}}, read_environment=False
        )
    with pytest.raises(ConfigError, match=r"^data\.mix_size: only used with data\.mix_strategy=weighted"):
        load_settings(None, ["mix_size=10"], read_environment=False)
    with pytest.raises(ConfigError, match=r"^data\.datasets\[1\]\.dataset: .*missing\.jsonl: no such file"):
        preparation_fingerprint(
            load_settings(
                None,
                {"data": {"datasets": [{"dataset": str(alpaca)}, {"dataset": "missing.jsonl"}]}},
                read_environment=False,
            )
        )
    with pytest.raises(ConfigError, match=r"data\.datasets\[0\]\.wieght: Extra inputs are not permitted"):
        load_settings(None, {"data": {"datasets": [{"dataset": "demo", "wieght": 2}]}}, read_environment=False)


def test_stored_config_of_a_mix_loads_back(two_files):
    from core.domain.config import settings_from_dict

    alpaca, sharegpt = two_files
    settings = load_settings(None, {"data": {"datasets": weighted(alpaca, sharegpt)}}, read_environment=False)
    stored = settings.to_plain_dict()
    assert "dataset" not in stored["data"]
    assert settings_from_dict(stored).data == settings.data


def test_fingerprint_changes_with_any_source_weight_or_strategy(two_files, make_settings, tmp_path):
    alpaca, sharegpt = two_files
    base = {"data.datasets": weighted(alpaca, sharegpt), "data.mix_strategy": "weighted"}
    reference = preparation_fingerprint(make_settings(**base))
    assert preparation_fingerprint(make_settings(**base)) == reference
    heavier = [{"dataset": str(alpaca), "weight": 0.5}, {"dataset": str(sharegpt), "weight": 0.25}]
    third = write_alpaca(tmp_path / "more.jsonl", count=3)
    variants = [
        {**base, "data.datasets": heavier},
        {**base, "data.mix_strategy": "concat"},
        {**base, "data.mix_size": 12},
        {**base, "data.datasets": [*weighted(alpaca, sharegpt), {"dataset": str(third)}]},
        {**base, "data.datasets": list(reversed(weighted(alpaca, sharegpt)))},
    ]
    fingerprints = {preparation_fingerprint(make_settings(**variant)) for variant in variants}
    assert reference not in fingerprints and len(fingerprints) == len(variants)
    write_alpaca(alpaca, count=39)  # the content of a source
    assert preparation_fingerprint(make_settings(**base)) != reference
    single = preparation_fingerprint(make_settings(**{"data.dataset": str(alpaca)}))
    assert single == preparation_fingerprint(make_settings(), input_path=str(alpaca))
