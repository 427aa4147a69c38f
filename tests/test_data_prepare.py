"""prepare_data end to end: the demo dataset, splits, system prompt, templates, caching by fingerprint."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from loguru import logger

from core.application.prepare_data import ensure_prepared, prepare_data
from core.infrastructure.data.convert import convert_records
from core.infrastructure.data.demo import DEMO_FILES, SPLIT_SIZES, demo_path, generate_records, write_demo
from core.infrastructure.data.readers import read_records
from core.infrastructure.data.splits import assign_splits
from core.infrastructure.data.tokenize import IGNORE_INDEX


def write_rows(path: Path, count: int, **extra) -> Path:
    rows = [{"instruction": f"Task {index}", "output": f"Result {index}", **extra} for index in range(count)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_demo_files_are_what_the_generator_writes(tmp_path):
    written = write_demo(tmp_path)
    for variant, name in DEMO_FILES.items():
        assert written[variant].read_bytes() == demo_path(variant).read_bytes(), f"regenerate {name}"
    assert sum(path.stat().st_size for path in written.values()) < 3_000_000


def test_demo_records_are_unique_checkable_and_split():
    records = generate_records()
    assert Counter(record["split"] for record in records) == SPLIT_SIZES
    assert len({(record["instruction"], record["input"]) for record in records}) == len(records)
    assert set(Counter(record["task"] for record in records)) == {
        "json_extract",
        "unit_conversion",
        "date_format",
        "sort_numbers",
        "reverse_words",
    }
    for record in records:
        assert {"kind": "exact_match", "value": record["output"]} in record["checks"]
        assert len(record["output"]) < 60
    extraction = next(record for record in records if record["task"] == "json_extract")
    assert set(json.loads(extraction["output"])) == {"name", "age"}


def test_demo_variants_convert_to_the_same_conversations():
    alpaca = convert_records(read_records(demo_path("alpaca"))[:200], "alpaca")
    sharegpt = convert_records(read_records(demo_path("sharegpt"))[:200], "sharegpt")
    for left, right in zip(alpaca, sharegpt, strict=True):
        assert left.conversation.messages == right.conversation.messages
        assert left.conversation.checks == right.conversation.checks
        assert left.split == right.split


def test_demo_prepares_with_its_splits_checks_and_lengths(make_settings):
    settings = make_settings(**{"data.max_samples": 300, "data.max_seq_length": 256})
    prepared = prepare_data(settings)
    counts = prepared.report["counts"]
    assert counts["read"] == 3000 and counts["kept"] == 300 and counts["skipped"] == {"max_samples": 2700}
    train = prepared.tokenized("train")
    assert set(train.column_names) == {"input_ids", "labels", "length"}
    assert all(row["length"] == len(row["input_ids"]) == len(row["labels"]) for row in train)
    assert sum(counts["splits"].values()) == 300 and min(counts["splits"].values()) > 0
    test_records = prepared.conversations("test")
    assert all(record.checks and record.metadata["task"] for record in test_records)
    demo_rows = [json.loads(line) for line in demo_path().open()]
    demo_splits = {
        (row["instruction"] + (f"\n\n{row['input']}" if row["input"] else "")): row["split"] for row in demo_rows
    }
    for split in ("train", "validation", "test"):
        for conversation in prepared.conversations(split):
            assert demo_splits[conversation.messages[-2].content] == split
    assert (
        prepared.chat_template
        == (Path(settings.paths.model_cache) / "smollm2-135m-instruct" / "chat_template.jinja").read_text()
    )
    assert (prepared.directory / "chat_template.jinja").read_text() == prepared.chat_template
    assert prepared.directory.parent == Path(settings.paths.data_dir) / "prepared"


def test_prepared_data_is_reused_until_input_or_settings_change(tmp_path, make_settings):
    path = write_rows(tmp_path / "data.jsonl", 20)
    settings = make_settings(**{"data.dataset": str(path)})
    messages: list[str] = []
    sink = logger.add(lambda message: messages.append(str(message)), level="INFO")
    try:
        first = prepare_data(settings)
        stamp = (first.directory / "prepared.json").stat().st_mtime_ns
        again = ensure_prepared(settings)
        assert again.directory == first.directory and again.fingerprint == first.fingerprint
        assert (first.directory / "prepared.json").stat().st_mtime_ns == stamp
        assert any("Reusing prepared data" in message for message in messages)

        chatml = prepare_data(make_settings(**{"data.dataset": str(path), "data.template": "chatml"}))
        assert chatml.fingerprint != first.fingerprint
        longer = prepare_data(make_settings(**{"data.dataset": str(path), "data.max_seq_length": 128}))
        assert longer.fingerprint != first.fingerprint
        write_rows(path, 21)
        changed = ensure_prepared(settings)
        assert changed.fingerprint != first.fingerprint and changed.report["counts"]["read"] == 21
    finally:
        logger.remove(sink)


def test_system_prompt_is_added_only_where_missing_and_template_applies(tmp_path, make_settings):
    path = tmp_path / "data.jsonl"
    rows = [
        {"instruction": "Hi", "output": "Hello"},
        {"instruction": "Hi", "output": "Hey", "system": "Own system prompt."},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    settings = make_settings(
        **{
            "data.dataset": str(path),
            "data.system_prompt": "Be kind.",
            "data.template": "alpaca",
            "data.validation_fraction": 0,
            "data.test_fraction": 0,
        }
    )
    prepared = prepare_data(settings)
    systems = [conversation.messages[0].content for conversation in prepared.conversations("train")]
    assert systems == ["Be kind.", "Own system prompt."]
    assert "### Instruction:" in prepared.chat_template
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(Path(settings.paths.model_cache) / "smollm2-135m-instruct"))
    row = prepared.tokenized("train")[0]
    assert tokenizer.decode(row["input_ids"]).startswith("Be kind.\n\n### Instruction:\nHi")
    assert tokenizer.decode([label for label in row["labels"] if label != IGNORE_INDEX]) == "Hello<|im_end|>"


def test_random_splits_are_deterministic_and_honour_named_splits():
    items = list(range(100))
    first = assign_splits(items, [None] * 100, 0.1, 0.05, seed=1)
    assert {split: len(values) for split, values in first.items()} == {"train": 85, "validation": 10, "test": 5}
    assert assign_splits(items, [None] * 100, 0.1, 0.05, seed=1) == first
    assert assign_splits(items, [None] * 100, 0.1, 0.05, seed=2)["validation"] != first["validation"]
    assert sorted(first["train"] + first["validation"] + first["test"]) == items

    hints = ["test" if item < 7 else None for item in items]
    named = assign_splits(items, hints, 0.1, 0.05, seed=1)
    assert named["test"] == list(range(7))  # the input's test split is kept as is, none is carved
    assert len(named["validation"]) == 10 and len(named["train"]) == 83


def test_prepare_data_imports_no_model_stack(tmp_path):
    """The CLI's prepare-data tokenizes with the tokenizer alone: torch, peft, accelerate and datasets stay unimported."""
    import subprocess
    import sys

    from tests.conftest import MODEL_CACHE

    data = write_rows(tmp_path / "small.jsonl", 7)
    script = (
        "import json, sys\n"
        "from core.cli import main\n"
        f"code = main(['prepare-data', '--input', {str(data)!r}, '--output', {str(tmp_path / 'out')!r},"
        f" 'paths.model_cache={MODEL_CACHE}', 'paths.data_dir={tmp_path / 'data'}'])\n"
        "loaded = [name for name in ('torch', 'peft', 'accelerate', 'datasets') if name in sys.modules]\n"
        "print('LOADED=' + json.dumps({'code': code, 'loaded': loaded}))\n"
    )
    finished = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[1]
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    result = json.loads(finished.stdout.split("LOADED=")[-1])
    assert result == {"code": 0, "loaded": []}
    assert json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))["counts"]["kept"] == 7


def test_tokenized_split_schema_is_what_datasets_writes():
    """The split files' schema and dataset_info.json, written without datasets, are datasets' own for these columns."""
    from datasets import DatasetInfo, Features, List, Value
    from datasets.utils.py_utils import asdict

    from core.infrastructure.data import prepared_writer

    features = Features({"input_ids": List(Value("int32")), "labels": List(Value("int64")), "length": Value("int64")})
    assert prepared_writer.SAMPLE_SCHEMA.equals(features.arrow_schema, check_metadata=True)
    assert features.to_dict() == prepared_writer.SAMPLE_FEATURES
    info = asdict(DatasetInfo(features=features))
    assert {key: info[key] for key in sorted(info)} == {
        "citation": "",
        "description": "",
        "features": prepared_writer.SAMPLE_FEATURES,
        "homepage": "",
        "license": "",
    }


def test_two_worker_processes_write_what_one_process_writes(make_settings, tmp_path, monkeypatch):
    """The record pass on two worker processes, in more tasks than workers, gives the same splits, tokens and report."""
    from core.infrastructure.data import record_store

    path = write_rows(tmp_path / "rows.jsonl", 60)
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"instruction": "Task 3", "output": "Result 3"}\n{"instruction": "no output"}\nnot json\n')
    settings = make_settings(**{"data.lenient": True})
    monkeypatch.setattr(record_store, "RECORDS_PER_WORKER", 10**9)
    one = prepare_data(settings, input_path=str(path), output_dir=tmp_path / "one")
    monkeypatch.setattr(record_store, "RECORDS_PER_WORKER", 10)
    monkeypatch.setattr(record_store, "SPOOL_BATCH", 8)  # 8 tasks
    monkeypatch.setattr(record_store, "available_cores", lambda: 2)
    assert record_store.worker_count(63) == 2
    two = prepare_data(settings, input_path=str(path), output_dir=tmp_path / "two")
    assert one.report["counts"] == two.report["counts"]
    assert one.report["counts"]["skipped"] == {"duplicate": 1, "malformed_json": 1, "missing_field": 1}
    assert one.report == two.report
    for split in ("train", "validation", "test"):
        assert one.conversations(split) == two.conversations(split)
        assert one.tokenized(split).to_dict() == two.tokenized(split).to_dict()


def test_spooled_records_come_back_equal_and_foreign_classes_are_refused():
    """The spool keeps raw records as tuples and outcomes whole; unpickling allows only this project's classes."""
    import os
    import pickle

    import pytest

    from core.infrastructure.data.problems import MALFORMED_JSON, Outcome, Problem
    from core.infrastructure.data.readers import RawRecord
    from core.infrastructure.data.record_pass import dump_payload, load_payload

    problem = Problem("f.jsonl:2", "record", "malformed JSON: x", MALFORMED_JSON)
    items = [
        RawRecord({"instruction": "Task", "output": "Done", "n": [1, 2.5, None]}, "f.jsonl:1", split="train"),
        RawRecord({}, "f.jsonl:2", problems=[problem]),
        Outcome("f.jsonl:3", problems=[problem], reason=MALFORMED_JSON),
    ]
    assert [load_payload(dump_payload(item)) for item in items] == items
    with pytest.raises(pickle.UnpicklingError, match=r"spool files hold no posix\.system"):
        load_payload(pickle.dumps(os.system))


def test_splits_are_written_one_record_batch_per_chunk_of_records(make_settings, tmp_path, monkeypatch):
    """Rows copied from several pass batches are written as one Arrow record batch per chunk, in order."""
    import pyarrow as pa

    from core.infrastructure.data import prepared_writer, record_store

    path = write_rows(tmp_path / "rows.jsonl", 90)
    monkeypatch.setattr(record_store, "PASS_BATCH", 7)
    monkeypatch.setattr(prepared_writer, "CHUNK_ROWS", 16)
    prepared = prepare_data(make_settings(), input_path=str(path), output_dir=tmp_path / "out")
    for split in ("train", "validation", "test"):
        with pa.memory_map(str(prepared.directory / "tokenized" / split / prepared_writer.DATA_FILE)) as source:
            sizes = [batch.num_rows for batch in pa.ipc.open_stream(source)]
        rows = prepared.report["counts"]["splits"][split]
        assert sizes == [min(16, rows - start) for start in range(0, rows, 16)], split
    monkeypatch.setattr(prepared_writer, "CHUNK_ROWS", 10**6)  # one chunk: the rows in order, nothing read ahead
    whole = prepare_data(make_settings(), input_path=str(path), output_dir=tmp_path / "whole")
    for split in ("train", "validation", "test"):
        assert prepared.tokenized(split).to_dict() == whole.tokenized(split).to_dict(), split
        assert prepared.conversations(split) == whole.conversations(split), split


def test_the_collector_is_paused_while_preparing_and_runs_again_after(make_settings, tmp_path, monkeypatch):
    """The cyclic garbage collector pauses for the tokenizer and the records, and runs again, also after a failure."""
    import gc

    import pytest

    from core.application import prepare_data as use_case
    from core.domain.errors import DataValidationError

    seen = []
    original = use_case._prepare

    def spied(*arguments):
        seen.append(gc.isenabled())
        return original(*arguments)

    monkeypatch.setattr(use_case, "_prepare", spied)
    assert gc.isenabled()
    prepare_data(make_settings(), input_path=str(write_rows(tmp_path / "rows.jsonl", 30)), output_dir=tmp_path / "a")
    assert seen == [False] and gc.isenabled()
    bad = write_rows(tmp_path / "bad.jsonl", 30)
    bad.write_text(bad.read_text(encoding="utf-8") + '{"instruction": "no output"}\n', encoding="utf-8")
    with pytest.raises(DataValidationError):
        prepare_data(make_settings(), input_path=str(bad), output_dir=tmp_path / "b")
    assert seen == [False, False] and gc.isenabled()


def test_pass_files_behind_both_writers_go_while_train_is_written(make_settings, tmp_path, monkeypatch):
    """A pass file both writers have gone past is deleted before train ends; the splits are those written without."""
    from core.infrastructure.data import prepared_writer, record_store, source_pipeline

    path = write_rows(tmp_path / "rows.jsonl", 90)
    monkeypatch.setattr(source_pipeline, "LINES_PER_TASK", 7)  # 13 pass files
    monkeypatch.setattr(prepared_writer, "CHUNK_ROWS", 16)
    original = record_store.RecordStore.discard_before
    monkeypatch.setattr(record_store.RecordStore, "discard_before", lambda store, row: None)
    kept = prepare_data(make_settings(), input_path=str(path), output_dir=tmp_path / "kept")
    calls = []

    def recording(store, row):
        original(store, row)
        calls.append((row, len(list(store.work_dir.glob("pass-*.arrow")))))

    monkeypatch.setattr(record_store.RecordStore, "discard_before", recording)
    deleted = prepare_data(make_settings(), input_path=str(path), output_dir=tmp_path / "deleted")
    last_train_row = 89
    assert any(row <= last_train_row and files < 13 for row, files in calls), calls  # some went before the end
    assert calls[-1][1] == 0
    for split in ("train", "validation", "test"):
        assert kept.tokenized(split).to_dict() == deleted.tokenized(split).to_dict(), split
        assert kept.conversations(split) == deleted.conversations(split), split
