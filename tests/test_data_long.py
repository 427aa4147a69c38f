"""Conversations longer than max_seq_length: split at turn boundaries, every answer trained once, lengths reported."""

from __future__ import annotations

import json
import re
from pathlib import Path

from core.application.prepare_data import prepare_data
from core.infrastructure.data.tokenize import IGNORE_INDEX

EXCHANGES = 6


def long_chats(path: Path, count: int = 8) -> Path:
    records = []
    for record in range(count):
        messages = [{"role": "system", "content": "SYSTEM-PROMPT: answer briefly."}]
        for turn in range(EXCHANGES):
            messages.append({"role": "user", "content": f"USER-{record}-{turn} asks about topic {turn} in detail?"})
            messages.append({"role": "assistant", "content": f"ANSWER-{record}-{turn} says topic {turn} is fine."})
        records.append({"messages": messages})
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def _settings(make_settings, **extra):
    return make_settings(
        **{"data.max_seq_length": 128, "data.validation_fraction": 0, "data.test_fraction": 0, **extra}
    )


def _texts(prepared, tokenizer) -> list[tuple[str, str]]:
    samples = []
    for row in prepared.tokenized("train"):
        pairs = list(zip(row["input_ids"], row["labels"], strict=True))
        trained = tokenizer.decode([token for token, label in pairs if label != IGNORE_INDEX])
        context = tokenizer.decode([token for token, label in pairs if label == IGNORE_INDEX])
        samples.append((trained, context))
    return samples


def test_split_turns_trains_every_answer_exactly_once_with_whole_turns(make_settings, embedded_model_dir, tmp_path):
    from core.infrastructure.models.loading import load_tokenizer

    prepared = prepare_data(_settings(make_settings), input_path=long_chats(tmp_path / "long.jsonl"))
    report = prepared.report
    assert report["assistant_turns"] == report["assistant_turns_trained"] == 8 * EXCHANGES
    assert report["records_truncated"] == 8 and report["counts"]["kept"] == 8
    assert report["counts"]["samples"] > 8 and report["counts"]["read"] == 8
    assert all(len(row["input_ids"]) <= 128 for row in prepared.tokenized("train"))
    before = report["lengths_before_truncation"]
    assert before["max"] > 128 and before["suggested_max_seq_length"] % 64 == 0
    assert before["suggested_max_seq_length"] >= before["p95"]
    assert report["warnings"] and "8 of 8 records (100%)" in report["warnings"][0]

    tokenizer = load_tokenizer(embedded_model_dir)
    trained_answers: list[str] = []
    for trained, context in _texts(prepared, tokenizer):
        assert "USER-" not in trained and "SYSTEM-PROMPT" not in trained  # never a prompt token
        assert "SYSTEM-PROMPT" in context  # every sample keeps the system prompt
        answers = re.findall(r"ANSWER-\d+-\d+", trained)
        for answer in answers:  # whole turns: the answer's full text is trained
            turn = answer.split("-")[2]
            assert f"{answer} says topic {turn} is fine." in trained
        trained_answers += answers
    assert sorted(trained_answers) == sorted(f"ANSWER-{r}-{t}" for r in range(8) for t in range(EXCHANGES))


def test_keep_first_and_drop_are_named_options_and_count_what_they_lose(make_settings, tmp_path):
    path = long_chats(tmp_path / "long.jsonl")
    kept = prepare_data(_settings(make_settings, **{"data.truncation": "keep_first"}), input_path=path).report
    assert kept["counts"]["samples"] == 8 and kept["assistant_turns_trained"] < kept["assistant_turns"]
    assert "later answers are lost" in kept["warnings"][0]
    short = tmp_path / "mixed.jsonl"
    chats = path.read_text(encoding="utf-8").splitlines()
    one_turns = [
        json.dumps({"messages": [{"role": "user", "content": f"Hi {n}?"}, {"role": "assistant", "content": "Hello."}]})
        for n in range(4)
    ]
    short.write_text("\n".join([*chats[:2], *one_turns]) + "\n", encoding="utf-8")
    dropped = prepare_data(
        _settings(make_settings, **{"data.truncation": "drop", "data.lenient": True}), input_path=short
    ).report
    assert dropped["counts"]["kept"] == 4 and dropped["counts"]["skipped"] == {"too_long": 2}
