"""Real files as people have them: damaged, compressed, misnamed, empty, minified, multimodal, preference pairs.

Each case runs strict (stops with ``file:line: field: problem``, exit 2, ``report.json`` with counts)
and lenient (keeps every readable record; ``read = kept + skipped``).
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
from pathlib import Path

import pytest

from core.application.prepare_data import prepare_data
from core.domain.errors import DataValidationError
from core.infrastructure.data.convert import convert_records
from core.infrastructure.data.readers import read_records

RECORDS = [{"instruction": f"Question number {index}?", "output": f"Answer number {index}."} for index in range(6)]


def _pretty(records=RECORDS) -> str:
    return json.dumps(records, indent=2)


def _jsonl(records=RECORDS) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def _strict_then_lenient(path: Path, make_settings, tmp_path: Path):
    output = tmp_path / "prepared"
    with pytest.raises(DataValidationError) as failure:
        prepare_data(make_settings(), input_path=path, output_dir=output)
    report = json.loads((output / "report.json").read_text(encoding="utf-8"))
    prepared = prepare_data(make_settings(), input_path=path, output_dir=output, lenient=True)
    counts = prepared.report["counts"]
    assert counts["read"] == counts["kept"] + counts["skipped_total"]
    return failure.value, report, counts


def test_a_truncated_array_reports_where_it_is_cut_and_lenient_keeps_every_complete_element(make_settings, tmp_path):
    text = _pretty()
    path = tmp_path / "truncated.json"
    path.write_text(text[: text.index('"Question number 4?"') + 8], encoding="utf-8")
    error, report, counts = _strict_then_lenient(path, make_settings, tmp_path)
    line = text[: text.index('"Question number 4?"')].count("\n")  # the line of the element's "{"
    assert error.problems == [f"{path}:{line}: record: malformed JSON: truncated: the file ends inside this element"]
    assert "read 5, valid 4, invalid 1 (malformed_json 1)" in str(error) and "report.json" in str(error)
    assert report["counts"] == {"read": 5, "valid": 4, "invalid": {"malformed_json": 1}, "invalid_total": 1}
    assert report["problems"] == error.problems and report["problems_total"] == 1
    assert counts["kept"] == 4 and counts["skipped"] == {"malformed_json": 1}


def test_a_syntax_error_mid_array_loses_only_that_element(make_settings, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text(_pretty().replace('"Question number 2?",', '"Question number 2?" oops,'), encoding="utf-8")
    error, _, counts = _strict_then_lenient(path, make_settings, tmp_path)
    assert len(error.problems) == 1 and "malformed JSON: Expecting ',' delimiter" in error.problems[0]
    assert counts["read"] == 6 and counts["kept"] == 5  # the elements after the damage are read too


def test_a_minified_array_names_the_element(tmp_path):
    path = tmp_path / "minified.json"
    path.write_text(json.dumps(RECORDS[:3]).replace('"Question number 1?"', "Question number 1?"), encoding="utf-8")
    records = read_records(path)
    assert [record.source for record in records] == [f"{path}:1 [element 1]", f"{path}:1 [element 2]"]
    assert records[1].problems and str(records[1].problems[0]).startswith(
        f"{path}:1 [element 2]: record: malformed JSON"
    )


def test_the_read_error_is_not_hidden_behind_format_detection(make_settings, tmp_path):
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(DataValidationError) as failure:
        prepare_data(make_settings(), input_path=corrupt, output_dir=tmp_path / "out")
    assert failure.value.problems[0].startswith(f"{corrupt}:1: record: unreadable Parquet")
    assert "cannot detect" not in str(failure.value)


@pytest.mark.parametrize("content", ["", "   \n\n\t\n"])
def test_an_empty_file_says_so(content, make_settings, tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataValidationError) as failure:
        prepare_data(make_settings(), input_path=path, lenient=True)
    assert failure.value.problems == [f"{path}:1: record: the file is empty (no records)"]


def test_misnamed_files_read_right(tmp_path):
    array_as_jsonl = tmp_path / "array.jsonl"
    array_as_jsonl.write_text(_pretty(), encoding="utf-8")
    lines_as_json = tmp_path / "lines.json"
    lines_as_json.write_text(_jsonl(), encoding="utf-8")
    for path in (array_as_jsonl, lines_as_json):
        records = read_records(path)
        assert [record.data for record in records] == RECORDS and not any(record.problems for record in records)


def test_compressed_inputs_read_like_plain_ones_and_a_cut_stream_keeps_what_came_before(make_settings, tmp_path):
    import zstandard

    csv_text = "instruction,output\n" + "".join(f"{r['instruction']},{r['output']}\n" for r in RECORDS)
    files = {
        "data.jsonl.gz": gzip.compress(_jsonl().encode()),
        "data.json.bz2": bz2.compress(_pretty().encode()),
        "data.csv.xz": lzma.compress(csv_text.encode()),
        "data.jsonl.zst": zstandard.ZstdCompressor().compress(_jsonl().encode()),
        "no-suffix.jsonl": gzip.compress(_jsonl().encode()),  # compressed, recognised by its first bytes
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        records = read_records(tmp_path / name)
        assert [record.data for record in records] == RECORDS, name

    big = [{"instruction": f"Question {index}?", "output": "An answer " * 20} for index in range(2000)]
    compressed = gzip.compress(_jsonl(big).encode())
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(compressed[: len(compressed) // 2])
    records = read_records(cut)
    complete = [record for record in records if not record.problems]
    assert 0 < len(complete) < 2000 and [record.data for record in complete] == big[: len(complete)]
    assert len(records) == len(complete) + 1 and "damaged gzip stream" in str(records[-1].problems[-1])


def test_an_unsupported_file_is_a_clear_error_with_exit_2(tmp_path, capfd):
    from core.cli import main

    path = tmp_path / "notes.txt"
    path.write_text("instruction: hi", encoding="utf-8")
    assert main(["prepare-data", "--input", str(path), f"paths.data_dir={tmp_path / 'data'}"]) == 2
    error = capfd.readouterr().err
    assert "unsupported file type .txt" in error and "Traceback" not in error


def test_a_file_that_fails_to_read_is_a_clear_error_with_exit_2(tmp_path, capfd):
    """A read failing with an I/O error (here /proc/self/mem, which gives EIO at offset 0) stops with its message."""
    from core.cli import main

    path = tmp_path / "rows.jsonl"
    path.symlink_to("/proc/self/mem")
    for extra in ([], ["--lenient"]):
        arguments = ["prepare-data", "--input", str(path), *extra, f"paths.data_dir={tmp_path / 'data'}"]
        assert main(arguments) == 2
        error = capfd.readouterr().err
        assert f"{path}:1: record: unreadable: [Errno 5] Input/output error" in error and "Traceback" not in error


def test_media_and_preference_records_are_refused_by_name(make_settings, tmp_path):
    chat = [{"role": "user", "content": "<image>What is shown?"}, {"role": "assistant", "content": "A cat."}]
    media = tmp_path / "media.jsonl"
    media.write_text(
        _jsonl([{"messages": chat, "images": ["cat.png"]}, {"messages": chat, "images": []}]), encoding="utf-8"
    )
    error, _, counts = _strict_then_lenient(media, make_settings, tmp_path)
    assert error.problems[0].startswith(f"{media}:1: images: text-only finetuning cannot use images")
    assert counts["kept"] == 1 and counts["skipped"] == {"unsupported_media": 1}

    preference = tmp_path / "preference.jsonl"
    preference.write_text(
        _jsonl([{"prompt": f"Pick one of {n}.", "chosen": "Good.", "rejected": "Bad."} for n in range(3)]),
        encoding="utf-8",
    )
    with pytest.raises(DataValidationError) as failure:
        prepare_data(make_settings(), input_path=preference, output_dir=tmp_path / "pref")
    assert failure.value.problems[0] == (
        f"{preference}:1: chosen/rejected: preference data (chosen/rejected) is not supervised finetuning data; "
        "use a preference trainer (DPO/ORPO), or train on the chosen answers with --format custom and "
        'data.field_mapping (e.g. {"instruction": "prompt", "output": "chosen"})'
    )
    assert "cannot detect" not in str(failure.value)
    mapped = prepare_data(
        make_settings(**{"data.field_mapping": {"instruction": "prompt", "output": "chosen"}}),
        input_path=preference,
        output_dir=tmp_path / "pref",
    )
    assert mapped.report["counts"]["kept"] == 3


def test_a_50k_element_array_cut_mid_record_keeps_every_complete_element(tmp_path):
    elements = [{"instruction": f"Question {index}?", "output": f"Answer {index}."} for index in range(50_000)]
    text = json.dumps(elements, indent=1)
    cut_at = text.index('"Question 49990?"') + 5
    path = tmp_path / "big.json"
    path.write_text(text[:cut_at], encoding="utf-8")
    outcomes = convert_records(read_records(path), "alpaca")
    kept = [outcome for outcome in outcomes if outcome.conversation is not None]
    assert len(outcomes) == 49_991 and len(kept) == 49_990
    assert kept[-1].conversation.messages[0].content == "Question 49989?"
