"""Batch inference (resumable JSONL), the interactive chat loop and the generate/chat CLI."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from conftest import MODEL_CACHE
from inference_run_factory import make_run

from core.domain.config import settings_from_dict
from core.domain.errors import DataValidationError

RECORDS = [
    {"id": "q1", "prompt": "hi"},
    {"id": "q2", "prompt": "Name three colours of the rainbow, please, in a list."},
    {"prompt": "What is two plus two?"},
    {"id": "q4", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why?"}]},
    {"id": "q5", "prompt": "Tell me a very short story about a cat who learned to read books."},
    {"id": "q6", "prompt": "ok", "system": "You are terse."},
    {"id": "q7", "prompt": "Translate 'good morning' to French and Spanish and German."},
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, tiny_model_dirs: dict[str, Path]) -> dict:
    root = tmp_path_factory.mktemp("batch")
    runs_dir = root / "runs"
    make_run(runs_dir, "tiny-lora", tiny_model_dirs["llama"], "lora", seed=3)
    paths = {
        "runs_dir": str(runs_dir),
        "model_cache": str(MODEL_CACHE),
        "registry_dir": str(root / "registry"),
        "data_dir": str(root / "data"),
    }
    settings = settings_from_dict({"model": {"name": str(tiny_model_dirs["llama"])}, "paths": paths})
    from core.infrastructure.inference.loading import load_for_inference
    from core.infrastructure.inference.predictor import Predictor

    input_file = root / "prompts.jsonl"
    input_file.write_text("".join(json.dumps(record) + "\n" for record in RECORDS))
    overrides = [f"paths.{key}={value}" for key, value in paths.items()]
    return {
        "settings": settings,
        "predictor": Predictor(load_for_inference("tiny-lora", settings)),
        "input": input_file,
        "overrides": overrides,
    }


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_interrupted_batch_job_resumes_without_duplicates(setup, tmp_path):
    from core.infrastructure.inference.batch import run_batch_inference
    from core.infrastructure.inference.predictor import SamplingOptions

    options = SamplingOptions(max_new_tokens=5)
    predictor = setup["predictor"]
    complete = tmp_path / "complete.jsonl"
    summary = run_batch_inference(predictor, setup["input"], complete, options, batch_size=2)
    assert (summary.total, summary.already_done, summary.generated) == (7, 0, 7)
    reference = {row["id"]: row for row in _rows(complete)}
    # generated longest first in batches, written back in input order with the input and the settings
    assert [row["id"] for row in _rows(complete)] == ["q1", "q2", "line-3", "q4", "q5", "q6", "q7"]
    assert reference["q2"]["prompt"] == RECORDS[1]["prompt"] and reference["q6"]["system"] == "You are terse."
    assert reference["q4"]["messages"] == RECORDS[3]["messages"] and "prompt" not in reference["q4"]
    assert reference["q1"]["settings"] == {
        "max_new_tokens": 5,
        "temperature": 0.0,
        "top_p": 1.0,
        "seed": None,
        "stop": [],
        "do_sample": None,
    }

    class Crash(Exception):
        pass

    def crash_after_two_batches(written: int) -> None:
        if written >= 4:
            raise Crash

    resumed = tmp_path / "resumed.jsonl"
    with pytest.raises(Crash):
        run_batch_inference(predictor, setup["input"], resumed, options, batch_size=2, on_batch=crash_after_two_batches)
    assert len(_rows(resumed)) == 4
    with resumed.open("a") as handle:  # the crash also left half a line behind
        handle.write('{"id": "q7", "output": "trunc')

    summary = run_batch_inference(predictor, setup["input"], resumed, options, batch_size=2)
    assert (summary.already_done, summary.generated) == (4, 3)
    rows = _rows(resumed)
    assert [row["id"] for row in rows] == list(reference)  # each id exactly once, in input order
    assert {row["id"]: row["output"] for row in rows} == {key: row["output"] for key, row in reference.items()}
    again = run_batch_inference(predictor, setup["input"], resumed, options, batch_size=2)
    assert (again.already_done, again.generated) == (7, 0)


def test_invalid_batch_input_lists_every_bad_line(tmp_path):
    from core.infrastructure.inference.batch import read_batch_input

    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"prompt": "ok"}\nnot json\n{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", '
        '"content": "b"}]}\n{"foo": 1}\n{"id": "x", "prompt": "a"}\n{"id": "x", "prompt": "b"}\n'
    )
    with pytest.raises(DataValidationError) as error:
        read_batch_input(bad)
    problems = error.value.problems
    assert [problem.split(": ")[0].rsplit(":", 1)[1] for problem in problems] == ["2", "3", "4", "6"]
    assert "end with a user turn" in problems[1] and "duplicate id 'x'" in problems[3]


def test_chat_loop_keeps_history_and_reset_starts_over(setup):
    from core.application.chat import chat_loop

    predictor = setup["predictor"]
    user_input = io.StringIO("hello\n/reset\nhi again\n\nsecond question\n/exit\nnever read\n")
    output = io.StringIO()
    answers = chat_loop(predictor, user_input, output, max_new_tokens=4)
    assert answers == 3
    text = output.getvalue()
    assert "(conversation reset)" in text and "never read" not in text
    # A reply may itself hold newlines: it runs from "assistant> " to the newline before the next "you> ".
    replies = [part.split("\nyou> ", 1)[0] for part in text.split("assistant> ")[1:]]
    fresh = predictor.generate([[{"role": "user", "content": "hi again"}]], max_new_tokens=4)[0]
    assert replies[1] == fresh  # after /reset the history is empty
    with_history = predictor.generate(
        [
            [
                {"role": "user", "content": "hi again"},
                {"role": "assistant", "content": fresh},
                {"role": "user", "content": "second question"},
            ]
        ],
        max_new_tokens=4,
    )[0]
    assert replies[2] == with_history


def test_generate_and_chat_cli(setup, tmp_path, capsys, monkeypatch):
    from core.cli import main

    overrides = setup["overrides"]
    assert main(["generate", "--run", "tiny-lora", "--prompt", "hi", "--max-new-tokens", "4", *overrides]) == 0
    expected = setup["predictor"].generate([[{"role": "user", "content": "hi"}]], max_new_tokens=4)[0]
    assert capsys.readouterr().out == expected + "\n"

    output = tmp_path / "out.jsonl"
    batch_arguments = ["--input-file", str(setup["input"]), "--output-file", str(output), "--max-new-tokens", "3"]
    code = main(["generate", "--run", "tiny-lora", *batch_arguments, "--batch-size", "4", *overrides])
    assert code == 0 and len(_rows(output)) == len(RECORDS)
    assert main(["generate", "--run", "tiny-lora", "--input-file", str(setup["input"]), *overrides]) == 2

    monkeypatch.setattr(sys, "stdin", io.StringIO("hi\n/exit\n"))
    assert main(["chat", "--run", "tiny-lora", "--max-new-tokens", "4", *overrides]) == 0
    assert f"assistant> {expected}\n" in capsys.readouterr().out
