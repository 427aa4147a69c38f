"""Conversations as people write them: tool calls and results (OpenAI and ShareGPT), content parts, per-turn training.

The token labels prove what is learned: the assistant's words and tool calls, never the user's
turns nor the tools' results -- with the fallback rendering (SmolLM2's template knows no tools)
and with a template that renders tool calls itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.application.prepare_data import prepare_data
from core.domain.errors import ConfigError, DataValidationError
from core.infrastructure.data.convert import convert_records
from core.infrastructure.data.readers import read_records
from core.infrastructure.data.tokenize import IGNORE_INDEX, tokenize_conversation

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def glaive_record(city: str) -> dict:
    """A ShareGPT tool-calling record as LLaMA-Factory's glaive_toolcall demo writes it."""
    return {
        "conversations": [
            {"from": "human", "value": f"What is the weather in {city}?"},
            {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": city}})},
            {"from": "observation", "value": json.dumps({"temperature_c": 21, "sky": "SECRET-RESULT"})},
            {"from": "gpt", "value": f"It is 21 degrees and clear in {city}."},
        ],
        "tools": json.dumps([WEATHER_TOOL]),
    }


def openai_tool_record(city: str) -> dict:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": json.dumps({"city": city})},
    }
    return {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "Weather in "}, {"type": "text", "text": f"{city}?"}],
            },
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "SECRET-RESULT: 21 C"},
            {"role": "assistant", "content": [{"type": "text", "text": f"It is 21 C in {city}."}]},
        ],
        "tools": [{"type": "function", "function": WEATHER_TOOL}],
    }


CITIES = ["Paris", "Lima", "Oslo", "Cairo", "Quito", "Perth"]


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def _trained_and_untrained(tokenizer, example) -> tuple[str, str]:
    trained = [token for token, label in zip(example.input_ids, example.labels, strict=True) if label != IGNORE_INDEX]
    untrained = [token for token, label in zip(example.input_ids, example.labels, strict=True) if label == IGNORE_INDEX]
    return tokenizer.decode(trained), tokenizer.decode(untrained)


@pytest.fixture(scope="module")
def tokenizer(embedded_model_dir):
    from core.infrastructure.models.loading import load_tokenizer

    return load_tokenizer(embedded_model_dir)


@pytest.mark.parametrize(("data_format", "make"), [("sharegpt", glaive_record), ("openai", openai_tool_record)])
def test_tool_calling_files_prepare_with_nothing_skipped(data_format, make, make_settings, tmp_path):
    path = _write(tmp_path / f"{data_format}-tools.jsonl", [make(city) for city in CITIES])
    prepared = prepare_data(make_settings(), input_path=path)  # strict: any problem would stop it
    counts = prepared.report["counts"]
    assert counts["read"] == counts["kept"] == len(CITIES) and counts["skipped_total"] == 0
    assert prepared.report["format"] == data_format


@pytest.mark.parametrize("make", [glaive_record, openai_tool_record])
def test_tool_calls_are_trained_and_tool_results_and_user_turns_are_not(make, tokenizer, tmp_path):
    path = _write(tmp_path / "tools.jsonl", [make("Paris")])
    (outcome,) = convert_records(read_records(path), "sharegpt" if make is glaive_record else "openai")
    conversation = outcome.conversation
    assert [message.role for message in conversation.messages] == ["user", "assistant", "tool", "assistant"]
    assert conversation.messages[1].tool_calls[0].arguments == {"city": "Paris"}
    assert conversation.tools == [WEATHER_TOOL]
    example = tokenize_conversation(tokenizer, conversation, max_length=1024)
    trained, untrained = _trained_and_untrained(tokenizer, example)
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in trained
    assert "21" in trained and "Paris." in trained  # the final answer
    assert "SECRET-RESULT" in untrained and "SECRET-RESULT" not in trained
    assert "Paris?" in untrained and "weather in" not in trained.lower()
    assert "<tools>" in untrained and "get_weather" in untrained  # the schemas, in the system prompt


NATIVE_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message.role }}\n"
    "{% if message.tool_calls %}{% for call in message.tool_calls %}"
    "CALL {{ call.function.name }} {{ call.function.arguments | tojson }}{% endfor %}"
    "{% else %}{{ message.content }}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_a_template_with_tool_support_renders_the_calls_itself(tokenizer, tmp_path):
    path = _write(tmp_path / "tools.jsonl", [openai_tool_record("Lima")])
    (outcome,) = convert_records(read_records(path), "openai")
    native = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    native.chat_template = NATIVE_TEMPLATE
    example = tokenize_conversation(native, outcome.conversation, max_length=1024)
    trained, untrained = _trained_and_untrained(native, example)
    assert 'CALL get_weather {"city": "Lima"}' in trained and "<tool_call>" not in trained + untrained
    assert "<|im_start|>tool\nSECRET-RESULT" in untrained and "SECRET-RESULT" not in trained


def test_turns_marked_untrained_are_context_only(tokenizer, tmp_path):
    record = {
        "messages": [
            {"role": "user", "content": "First question?"},
            {"role": "assistant", "content": "CONTEXT-ONLY answer.", "train": False},
            {"role": "user", "content": "Second question?"},
            {"role": "assistant", "content": "WEIGHTED-OUT answer.", "weight": 0},
            {"role": "user", "content": "Third question?"},
            {"role": "assistant", "content": "The trained answer."},
        ]
    }
    (outcome,) = convert_records(read_records(_write(tmp_path / "weights.jsonl", [record])), "openai")
    trained, untrained = _trained_and_untrained(tokenizer, tokenize_conversation(tokenizer, outcome.conversation, 1024))
    assert "The trained answer." in trained
    assert "CONTEXT-ONLY" in untrained and "WEIGHTED-OUT" in untrained
    assert "CONTEXT-ONLY" not in trained and "WEIGHTED-OUT" not in trained


def test_a_non_text_content_part_is_refused_by_name(make_settings, tmp_path):
    record = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "x"}},
                ],
            },
            {"role": "assistant", "content": "A cat."},
        ]
    }
    path = _write(tmp_path / "parts.jsonl", [record])
    with pytest.raises(DataValidationError) as failure:
        prepare_data(make_settings(), input_path=path)
    assert failure.value.problems == [
        f"{path}:1: messages[0].content[1]: text-only finetuning cannot use a content part of type 'image_url'; remove it"
    ]


def test_a_conversation_ending_in_a_tool_result_says_so(tmp_path):
    record = glaive_record("Oslo")
    record["conversations"] = record["conversations"][:3]
    (outcome,) = convert_records(read_records(_write(tmp_path / "cut.jsonl", [record])), "sharegpt")
    assert outcome.reason == "broken_order"
    assert "ends with a tool call or result instead of an assistant answer" in str(outcome.problems[0])


def test_conversations_under_other_names_are_mapped(make_settings, tmp_path):
    records = [
        {
            "dialog": [
                {"speaker": "Customer", "text": f"Where is parcel {n}?"},
                {"speaker": "Agent", "text": "Today."},
            ],
            "preamble": "Be brief.",
        }
        for n in range(4)
    ]
    path = _write(tmp_path / "dialog.jsonl", records)
    mapping = {
        "messages": "dialog",
        "role": "speaker",
        "content": "text",
        "user_role": "customer",
        "assistant_role": "agent",
        "system": "preamble",
    }
    prepared = prepare_data(make_settings(**{"data.field_mapping": mapping}), input_path=path)
    assert prepared.report["counts"]["kept"] == 4 and prepared.report["format"] == "custom"
    conversation = next(iter(prepared.conversations("train")))
    assert [(message.role, message.content) for message in conversation.messages] == [
        ("system", "Be brief."),
        ("user", conversation.messages[1].content),
        ("assistant", "Today."),
    ]
    with pytest.raises(ConfigError, match="unknown keys \\['speaker_tag'\\]"):
        prepare_data(make_settings(**{"data.field_mapping": {**mapping, "speaker_tag": "x"}}), input_path=path)


def test_train_on_last_assistant_leaves_earlier_answers_as_context(make_settings, tokenizer, tmp_path):
    record = {
        "messages": [
            {"role": "user", "content": "First question?"},
            {"role": "assistant", "content": "EARLIER answer."},
            {"role": "user", "content": "Second question?"},
            {"role": "assistant", "content": "The LAST answer."},
        ]
    }
    path = _write(tmp_path / "turns.jsonl", [record] * 4)
    settings = make_settings(
        **{"data.train_on": "last_assistant", "data.validation_fraction": 0, "data.test_fraction": 0}
    )
    row = prepare_data(settings, input_path=path).tokenized("train")[0]
    trained = tokenizer.decode(
        [token for token, label in zip(row["input_ids"], row["labels"], strict=True) if label != IGNORE_INDEX]
    )
    assert "LAST answer." in trained and "EARLIER" not in trained
