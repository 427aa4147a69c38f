"""Every input format and file type converts to the expected conversations; detection explains itself."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from core.application.inspect_data import detect_format, preview_records
from core.domain.errors import ConfigError
from core.infrastructure.data.convert import choose_format, convert_records
from core.infrastructure.data.readers import read_records


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def turns(outcome) -> list[tuple[str, str]]:
    return [(message.role, message.content) for message in outcome.conversation.messages]


def convert(path: Path, data_format: str, **options):
    outcomes = convert_records(read_records(path), data_format, **options)
    assert all(not outcome.problems for outcome in outcomes), [str(p) for o in outcomes for p in o.problems]
    return outcomes


def test_alpaca_with_input_system_and_history(tmp_path):
    path = write_jsonl(
        tmp_path / "alpaca.jsonl",
        [
            {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
            {"instruction": " Say hi ", "input": "", "output": " hi ", "system": "Be brief."},
            {
                "instruction": "And now 4 + 4?",
                "input": "",
                "output": "8",
                "history": [["What is 1 + 1?", "2"], ["And 2 + 2?", "4"]],
                "category": "math",
            },
        ],
    )
    first, second, third = convert(path, "alpaca")
    assert turns(first) == [("user", "Add the numbers.\n\n2 and 3"), ("assistant", "5")]
    assert turns(second) == [("system", "Be brief."), ("user", "Say hi"), ("assistant", "hi")]
    assert turns(third) == [
        ("user", "What is 1 + 1?"),
        ("assistant", "2"),
        ("user", "And 2 + 2?"),
        ("assistant", "4"),
        ("user", "And now 4 + 4?"),
        ("assistant", "8"),
    ]
    assert third.conversation.metadata == {"category": "math"}
    assert [outcome.source for outcome in (first, second, third)] == [f"{path}:1", f"{path}:2", f"{path}:3"]


def test_dolly_keeps_context_and_category(tmp_path):
    path = write_jsonl(
        tmp_path / "dolly.jsonl",
        [
            {"instruction": "Who wrote it?", "context": "Dune was written by Frank Herbert.", "response": "Frank Herbert", "category": "closed_qa"},
            {"instruction": "Name a colour.", "context": "", "response": "Blue", "category": "brainstorming"},
        ],
    )  # fmt: skip
    first, second = convert(path, "dolly")
    assert turns(first) == [
        ("user", "Who wrote it?\n\nDune was written by Frank Herbert."),
        ("assistant", "Frank Herbert"),
    ]
    assert first.conversation.metadata == {"category": "closed_qa"}
    assert turns(second) == [("user", "Name a colour."), ("assistant", "Blue")]


def test_sharegpt_roles_seen_in_the_wild_and_multi_turn(tmp_path):
    path = write_jsonl(
        tmp_path / "sharegpt.jsonl",
        [
            {
                "conversations": [
                    {"from": "system", "value": "You are terse."},
                    {"from": "human", "value": "Hi"},
                    {"from": "gpt", "value": "Hello"},
                    {"from": "user", "value": "Capital of France?"},
                    {"from": "chatgpt", "value": "Paris"},
                ]
            },
            {"messages": [{"from": "Human", "value": "2+2"}, {"from": "bot", "value": "4"}], "system": "Math only."},
            {"conversations": [{"from": "user", "value": "x"}, {"from": "model", "value": "y"}]},
            {"conversations": [{"role": "user", "content": "ping"}, {"from": "assistant", "value": "pong"}]},
        ],
    )
    first, second, third, fourth = convert(path, "sharegpt")
    assert turns(first) == [
        ("system", "You are terse."),
        ("user", "Hi"),
        ("assistant", "Hello"),
        ("user", "Capital of France?"),
        ("assistant", "Paris"),
    ]
    assert turns(second) == [("system", "Math only."), ("user", "2+2"), ("assistant", "4")]
    assert turns(third) == [("user", "x"), ("assistant", "y")]
    assert turns(fourth) == [("user", "ping"), ("assistant", "pong")]


def test_openai_messages_with_system_and_content_parts(tmp_path):
    path = write_jsonl(
        tmp_path / "openai.jsonl",
        [
            {
                "messages": [
                    {"role": "system", "content": "Answer in French."},
                    {"role": "user", "content": "Hello"},
                    {"role": "assistant", "content": "Bonjour"},
                    {"role": "user", "content": [{"type": "text", "text": "Thanks"}]},
                    {"role": "assistant", "content": "De rien"},
                ]
            }
        ],
    )
    (only,) = convert(path, "openai")
    assert turns(only) == [
        ("system", "Answer in French."),
        ("user", "Hello"),
        ("assistant", "Bonjour"),
        ("user", "Thanks"),
        ("assistant", "De rien"),
    ]


def oasst_rows() -> list[dict]:
    def row(message_id, parent_id, role, text, rank=None, lang="en", tree="t1"):
        return {
            "message_id": message_id,
            "parent_id": parent_id,
            "role": role,
            "text": text,
            "rank": rank,
            "lang": lang,
            "message_tree_id": tree,
            "deleted": False,
        }

    return [
        row("a", None, "prompter", "Tell me a fact."),
        row("b", "a", "assistant", "Worse answer.", rank=1),
        row("c", "a", "assistant", "Best answer.", rank=0),
        row("d", "c", "prompter", "Another one?", rank=0),
        row("e", "d", "assistant", "Second fact.", rank=0),
        row("f", "b", "prompter", "Follow-up on the worse answer."),
        row("g", None, "prompter", "Bonjour ?", lang="fr", tree="t2"),
        row("h", "g", "assistant", "Salut !", rank=0, lang="fr", tree="t2"),
        row("i", None, "prompter", "Unanswered question", tree="t3"),
        row("j", "e", "prompter", "Trailing question without answer"),
    ]


def test_oasst_rebuilds_best_ranked_thread_with_language_filter(tmp_path):
    path = write_jsonl(tmp_path / "oasst.jsonl", oasst_rows())
    outcomes = convert_records(read_records(path), "oasst", oasst_language="en")
    kept = [outcome for outcome in outcomes if outcome.conversation is not None]
    assert len(kept) == 1
    assert turns(kept[0]) == [
        ("user", "Tell me a fact."),
        ("assistant", "Best answer."),
        ("user", "Another one?"),
        ("assistant", "Second fact."),
    ]
    assert kept[0].conversation.metadata == {"lang": "en", "message_tree_id": "t1"}
    skipped = sorted((outcome.source, outcome.reason) for outcome in outcomes if outcome.conversation is None)
    assert skipped == [(f"{path}:7", "language_filter"), (f"{path}:9", "no_answer")]
    all_languages = convert_records(read_records(path), "oasst", oasst_language=None)
    assert sum(outcome.conversation is not None for outcome in all_languages) == 2


def test_custom_mapping_from_csv_with_multiline_cells(tmp_path):
    path = tmp_path / "qa.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["question", "details", "answer", "persona"])
        writer.writerow(["What is 2+2?", "", "4", "You are a calculator."])
        writer.writerow(["Write two lines", "about cats", "Cats nap.\nCats purr.", ""])
        writer.writerow(["Last", "", "row", ""])
    mapping = {"instruction": "question", "input": "details", "output": "answer", "system": "persona"}
    first, second, third = convert(path, "custom", field_mapping=mapping)
    assert turns(first) == [("system", "You are a calculator."), ("user", "What is 2+2?"), ("assistant", "4")]
    assert turns(second) == [("user", "Write two lines\n\nabout cats"), ("assistant", "Cats nap.\nCats purr.")]
    # the CSV row that holds a line break spans lines 3-4, so the next row starts on line 5
    assert [outcome.source for outcome in (first, second, third)] == [f"{path}:2", f"{path}:3", f"{path}:5"]


def test_custom_mapping_must_name_instruction_and_output(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"q": "a", "a": "b"}])
    with pytest.raises(ConfigError, match=r"data\.field_mapping: the custom format needs output"):
        convert_records(read_records(path), "custom", field_mapping={"instruction": "q"})


def test_parquet_and_json_array_sources(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"instruction": f"Q{index}", "input": "", "output": f"A{index}"} for index in range(3)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data.parquet")
    parquet = convert(tmp_path / "data.parquet", "alpaca")
    assert [outcome.source for outcome in parquet] == [f"{tmp_path / 'data.parquet'}:{n}" for n in (1, 2, 3)]
    assert turns(parquet[2]) == [("user", "Q2"), ("assistant", "A2")]

    array = tmp_path / "data.json"
    array.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    from_json = convert(array, "alpaca")
    # json.dumps(indent=2): "[" on line 1, each 5-line element starts on lines 2, 7, 12
    assert [outcome.source for outcome in from_json] == [f"{array}:2", f"{array}:7", f"{array}:12"]


def test_directory_with_split_files_and_split_field(tmp_path):
    folder = tmp_path / "dataset"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [{"instruction": "a", "output": "b"}])
    write_jsonl(folder / "test.jsonl", [{"instruction": "c", "output": "d"}])
    write_jsonl(folder / "extra.jsonl", [{"instruction": "e", "output": "f", "split": "valid"}])
    (folder / "notes.txt").write_text("ignored", encoding="utf-8")
    outcomes = convert(folder, "alpaca")
    assert {outcome.source.split("/")[-1]: outcome.split for outcome in outcomes} == {
        "extra.jsonl:1": "validation",
        "test.jsonl:1": "test",
        "train.jsonl:1": "train",
    }


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([{"instruction": "a", "input": "", "output": "b"}], "alpaca"),
        ([{"instruction": "a", "context": "", "response": "b", "category": "qa"}], "dolly"),
        ([{"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}], "sharegpt"),
        ([{"messages": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}], "sharegpt"),
        ([{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}], "openai"),
        (oasst_rows(), "oasst"),
    ],
)
def test_detect_format_names_the_format_and_the_reason(tmp_path, rows, expected):
    path = write_jsonl(tmp_path / "data.jsonl", rows)
    data_format, reason = detect_format(path)
    assert data_format == expected
    assert reason.startswith(f"{expected}: {len(rows)} of {len(rows)} inspected records have ")


def test_detect_format_ambiguous_and_unknown_ask_for_a_format(tmp_path):
    mixed = write_jsonl(
        tmp_path / "mixed.jsonl",
        [{"instruction": "a", "output": "b"}, {"instruction": "a", "response": "b"}],
    )
    with pytest.raises(ConfigError) as error:
        detect_format(mixed)
    assert str(error.value) == (
        f"data.format: {mixed} is ambiguous: it fits alpaca (1 record(s) with instruction and output fields); "
        "dolly (1 record(s) with instruction and response fields); name the format with --format / data.format "
        "(alpaca, dolly, sharegpt, openai, oasst, custom)"
    )
    unknown = write_jsonl(tmp_path / "unknown.jsonl", [{"question": "a", "answer": "b"}])
    with pytest.raises(ConfigError, match=r"cannot detect the format of .*unknown.jsonl \(fields: answer, question\)"):
        detect_format(unknown)


def test_explicit_format_wins_and_hub_ids_map_to_their_formatter():
    assert choose_format([], "x", "dolly") == ("dolly", "dolly: named explicitly")
    assert choose_format([], "x", hub_id="tatsu-lab/alpaca") == ("alpaca", "alpaca: known Hub dataset tatsu-lab/alpaca")
    assert detect_format("databricks/databricks-dolly-15k")[0] == "dolly"
    assert detect_format("OpenAssistant/oasst1")[0] == "oasst"
    assert detect_format("demo") == (
        "alpaca",
        "alpaca: 200 of 200 inspected records have instruction and output fields",
    )
    with pytest.raises(ConfigError, match="unknown format 'yaml'"):
        choose_format([], "x", "yaml")


def test_preview_shows_converted_records_and_problems(tmp_path, make_settings):
    path = write_jsonl(
        tmp_path / "data.jsonl",
        [{"instruction": "Hi", "output": "Hello"}, {"instruction": "Hi", "output": "  "}],
    )
    settings = make_settings(**{"data.system_prompt": "Be nice."})
    rows = preview_records(settings, path, limit=5)
    assert [row["source"] for row in rows] == [f"{path}:1", f"{path}:2"]
    assert rows[0]["system"] == "Be nice." and rows[0]["prompt"] == "Hi" and rows[0]["response"] == "Hello"
    assert rows[0]["turns"] == 3 and rows[0]["problems"] == ""
    assert rows[1]["problems"] == "output: empty or whitespace-only response"
    assert len(preview_records(settings, "demo", limit=7)) == 7
