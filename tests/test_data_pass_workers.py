"""The record pass's workers: tasks handed out as workers free up, and a JSON Lines file read by the workers themselves."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pyarrow as pa
import pytest

from core.application.prepare_data import prepare_data
from core.domain.errors import DataValidationError
from core.infrastructure.data import pass_workers, record_store, source_pipeline
from core.infrastructure.data.jsonl_ranges import line_ranges, range_records
from core.infrastructure.data.readers import iter_records
from core.infrastructure.data.record_pass import PASS_SCHEMA, PassRow


def _damaged_file(path: Path, count: int) -> Path:
    """Alpaca rows with every kind of line the stream reads: BOM, CRLF, blank, not JSON, not UTF-8, not an object."""
    lines = [
        json.dumps({"instruction": f"Task {index}", "output": f"Result {index}"}).encode() for index in range(count)
    ]
    lines[0] = "\ufeff".encode() + lines[0]
    lines[5] += b"\r"
    lines[40:40] = [b"", b"   ", b'{"instruction": "cut', b'{"instruction": "bad \xff byte", "output": "x"}', b"[1, 2]"]
    lines[300:300] = [
        json.dumps({"instruction": "Task 7", "output": "Result 7"}).encode(),
        b'{"instruction": "no output"}',
    ]
    path.write_bytes(b"\n".join(lines))  # no newline after the last line
    return path


def _spy_on_lines(monkeypatch) -> list[int]:
    """Counts the passes whose workers read the file's lines themselves."""
    calls: list[int] = []
    original = record_store.RecordStore.process_lines

    def spied(self, ranges, record_pass):
        calls.append(len(ranges))
        return original(self, ranges, record_pass)

    monkeypatch.setattr(record_store.RecordStore, "process_lines", spied)
    return calls


def test_ranges_of_lines_give_the_records_of_the_stream(tmp_path):
    """Ranges of any size, the last without a newline, read back every record, source, split and problem."""
    path = _damaged_file(tmp_path / "train.jsonl", 260)
    streamed = list(iter_records(path))
    for lines_per_range in (1, 7, 1000):
        with path.open("rb") as handle:
            ranges = line_ranges(handle, lines_per_range)
            assert sum(line_range.lines for line_range in ranges) == path.read_bytes().count(b"\n") + 1
            assert [record for line_range in ranges for record in range_records(line_range)] == streamed
    assert {record.split for record in streamed} == {"train"}
    assert any(record.problems for record in streamed)


def test_ranges_read_the_file_measured_and_a_failed_read_is_an_unreadable_record(tmp_path):
    """Lines are read through the open file (its removal mid-run changes nothing); an I/O error is a record's problem."""
    path = _damaged_file(tmp_path / "rows.jsonl", 50)
    streamed = list(iter_records(path))
    with path.open("rb") as handle:
        ranges = line_ranges(handle, 10)
        path.unlink()
        path.write_text('{"instruction": "another file", "output": "x"}\n', encoding="utf-8")
        assert [record for line_range in ranges for record in range_records(line_range)] == streamed
    directory = os.open(tmp_path, os.O_RDONLY)  # reading a directory fails with EISDIR
    try:
        failed = range_records(dataclasses.replace(ranges[2], descriptor=directory))
    finally:
        os.close(directory)
    assert [(record.source, record.data) for record in failed] == [(f"{path}:21", {})]
    assert [problem.reason for problem in failed[0].problems] == ["unreadable"]
    assert "unreadable: [Errno 21] Is a directory" in failed[0].problems[0].message


def test_workers_reading_the_file_write_what_the_spool_writes(make_settings, tmp_path, monkeypatch):
    """Lenient and strict, a damaged JSON Lines file read by two workers in many tasks equals the spool's result."""
    path = _damaged_file(tmp_path / "rows.jsonl", 400)
    settings = make_settings(**{"data.lenient": True})
    calls = _spy_on_lines(monkeypatch)
    monkeypatch.setattr(source_pipeline, "LINES_PER_TASK", 37)
    monkeypatch.setattr(record_store, "RECORDS_PER_WORKER", 10)
    monkeypatch.setattr(record_store, "available_cores", lambda: 2)
    by_workers = prepare_data(settings, input_path=str(path), output_dir=tmp_path / "workers")
    with pytest.raises(DataValidationError) as by_workers_strict:
        prepare_data(make_settings(), input_path=str(path), output_dir=tmp_path / "workers-strict")
    assert calls == [11, 11]

    monkeypatch.setattr(source_pipeline, "streamed_jsonl_file", lambda source: None)
    monkeypatch.setattr(record_store, "RECORDS_PER_WORKER", 10**9)
    spooled = prepare_data(settings, input_path=str(path), output_dir=tmp_path / "spool")
    with pytest.raises(DataValidationError) as spooled_strict:
        prepare_data(make_settings(), input_path=str(path), output_dir=tmp_path / "spool-strict")
    assert calls == [11, 11]

    assert by_workers.report["counts"]["skipped"] == {
        "duplicate": 1,
        "malformed_json": 1,
        "missing_field": 1,
        "not_utf8": 1,
        "wrong_type": 1,
    }
    assert by_workers.report == spooled.report
    for split in ("train", "validation", "test"):
        assert by_workers.conversations(split) == spooled.conversations(split)
        assert by_workers.tokenized(split).to_dict() == spooled.tokenized(split).to_dict()
    assert by_workers_strict.value.problems == spooled_strict.value.problems
    assert any(":43: record: malformed JSON" in problem for problem in by_workers_strict.value.problems)


def test_a_file_whose_sample_needs_more_lines_is_spooled(make_settings, tmp_path, monkeypatch):
    """Format detection sees the same sample either way: when it is not complete early, the spool reads the file."""
    path = _damaged_file(tmp_path / "rows.jsonl", 260)
    calls = _spy_on_lines(monkeypatch)
    monkeypatch.setattr(source_pipeline, "SAMPLE_LINES", 150)
    prepared = prepare_data(make_settings(**{"data.lenient": True}), input_path=str(path), output_dir=tmp_path / "out")
    assert calls == []
    assert prepared.report["counts"]["read"] == 265


def test_a_worker_that_dies_stops_the_pass_with_a_clear_error(make_settings, tmp_path, monkeypatch):
    """A worker killed mid-pass (out of memory, kill -9) ends prepare-data with a message, not a hang or a traceback."""
    import os

    from core.domain.errors import FinetuneStudioError
    from core.infrastructure.data.record_pass import RecordPass

    path = _damaged_file(tmp_path / "rows.jsonl", 400)
    parent, table = os.getpid(), RecordPass.table

    def dies_in_a_worker(self, items):
        return table(self, items) if os.getpid() == parent else os._exit(9)

    monkeypatch.setattr(RecordPass, "table", dies_in_a_worker)
    monkeypatch.setattr(record_store, "RECORDS_PER_WORKER", 10)
    monkeypatch.setattr(record_store, "available_cores", lambda: 2)
    with pytest.raises(FinetuneStudioError, match="a worker process of the record pass stopped"):
        prepare_data(make_settings(**{"data.lenient": True}), input_path=str(path), output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.work-*"))  # the work directory is removed


def test_forked_workers_hash_keys_as_the_process_that_forks_them(make_settings, tmp_path, monkeypatch):
    """Key hashes (Python's string hash, keyed per process) agree between the workers and the main process.

    Duplicates and leaks are found by comparing hashes made in different workers; a hash keyed per
    worker would make them all differ.
    """
    path = _damaged_file(tmp_path / "rows.jsonl", 200)
    monkeypatch.setattr(source_pipeline, "LINES_PER_TASK", 37)
    monkeypatch.setattr(record_store, "RECORDS_PER_WORKER", 10)
    monkeypatch.setattr(record_store, "available_cores", lambda: 2)
    compared = []

    def keys(paths):
        tables = [pa.ipc.open_stream(str(path)).read_all() for path in paths]
        return pa.concat_tables(tables).select(["dedup_key", "exact_key", "normalized_key", "prompt_key"])

    def spied(inputs, record_pass, stem, batch_size, workers):
        files = pass_workers.run_pass(inputs, record_pass, stem, batch_size, workers)
        here = pass_workers.run_pass(inputs, record_pass, stem.with_name(f"{stem.name}-here"), batch_size, None)
        compared.append((workers, keys(files), keys(here)))
        return files

    monkeypatch.setattr(record_store, "run_pass", spied)
    result = prepare_data(make_settings(**{"data.lenient": True}), input_path=str(path), output_dir=tmp_path / "out")
    ((workers, by_workers, here),) = compared
    assert workers == 2
    assert by_workers.equals(here)
    assert len(set(here.column("exact_key").to_pylist())) > 150
    assert result.report["counts"]["skipped"]["duplicate"] == 1  # line 301 repeats line 8, in another task


def test_pass_rows_are_the_pass_columns_in_order():
    """A row's fields are the schema's columns, in order (the pass turns rows into columns by position)."""
    assert PassRow._fields == tuple(PASS_SCHEMA.names)
