"""One render per conversation: the verbatim spans and sliced turn-split windows equal the exact (prefix-render) way.

Every record is tokenized twice: as ``prepare-data`` does it (one render, windows sliced from the
whole conversation's tokens where the template allows), and the exact way (the template profile
and the slicing probe forced off, so every answer's prefixes and every window are rendered).
Labels, ids, counts and reasons must be identical, for varied records (system prompts, tool turns,
untrained answers, repeated and tricky contents, records longer than ``max_seq_length``) under
every truncation mode and with several templates.
"""

from __future__ import annotations

import dataclasses
import random

import pytest

from core.domain.records import Conversation, Message, ToolCall
from core.infrastructure.data import tokenize as tokenize_module
from core.infrastructure.data import turn_split, verbatim
from core.infrastructure.data.comparison_keys import comparison_keys, exact_key, normalized_key, prompt_key
from core.infrastructure.data.turn_split import tokenize_record
from core.infrastructure.data.verbatim import locate_verbatim, template_profile
from core.infrastructure.models.loading import load_tokenizer

CUSTOM_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '[' + message['role'] + ']\\n' + message['content'] + eos_token + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '[assistant]\\n' }}{% endif %}"
)
TRIMMING_TEMPLATE = (  # rewrites contents: the verbatim location must fail and fall back
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] | trim + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
WORDS = ["river", "stone", "cloud", "assistant", "user", "system", "im_start", "lamp", "Yes", "copper", "tea"]
TRICKY = ["assistant", "user", "Yes", "Yes", "  padded answer  ", "line one\nline two", "é ü 字 🙂", "<tool_call>"]
WEATHER_TOOL = {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


def _text(generator: random.Random, low: int, high: int) -> str:
    if generator.random() < 0.15:
        return generator.choice(TRICKY)
    return " ".join(generator.choice(WORDS) for _ in range(generator.randint(low, high)))


def _assistant(generator: random.Random, long: bool) -> Message:
    calls = [ToolCall(name="get_weather", arguments={"city": "Oslo"})] if generator.random() < 0.05 else []
    content = _text(generator, 20, 60) if long else _text(generator, 1, 15)
    return Message(role="assistant", content=content, tool_calls=calls, trained=generator.random() > 0.15)


def varied_conversation(generator: random.Random, index: int) -> Conversation:
    """A random conversation: maybe a system prompt, 1 to 6 exchanges, tool turns, untrained answers."""
    long = generator.random() < 0.3
    messages = [Message(role="system", content=_text(generator, 2, 10))] if generator.random() < 0.3 else []
    for _ in range(generator.randint(2, 6) if long else generator.randint(1, 3)):
        messages.append(Message(role="user", content=_text(generator, 2, 30 if long else 10)))
        if generator.random() < 0.05:
            messages.append(Message(role="tool", content='{"temperature_c": 21}'))
        messages.append(_assistant(generator, long))
    tools = [WEATHER_TOOL] if generator.random() < 0.05 else []
    return Conversation(messages=messages, source=f"varied:{index}", tools=tools)


def exact_record(monkeypatch: pytest.MonkeyPatch, *args, **kwargs) -> turn_split.RecordSamples:
    """``tokenize_record`` the exact way: every answer's prefixes and every window rendered."""
    with monkeypatch.context() as patched:
        patched.setattr(tokenize_module, "template_profile", lambda tokenizer: None)
        patched.setattr(turn_split, "_slicing_agrees", lambda tokenizer: False)
        return tokenize_record(*args, **kwargs)


@pytest.fixture(scope="module")
def tokenizers(embedded_model_dir):
    return {
        name: load_tokenizer(embedded_model_dir, template)
        for name, template in {
            "model": None,
            "chatml": "chatml",
            "alpaca": "alpaca",
            "custom": CUSTOM_TEMPLATE,
            "trimming": TRIMMING_TEMPLATE,
        }.items()
    }


@pytest.mark.parametrize("name", ["model", "chatml", "alpaca", "custom", "trimming"])
def test_one_render_equals_exact_way(tokenizers, name, monkeypatch):
    tokenizer, generator = tokenizers[name], random.Random(name)
    for index in range(100):
        conversation = varied_conversation(generator, index)
        max_length, train_on_prompt = generator.choice([48, 128, 512]), generator.random() < 0.3
        for truncation in ("split_turns", "keep_first", "drop"):
            arguments = (tokenizer, conversation, max_length, train_on_prompt, truncation)
            assert tokenize_record(*arguments) == exact_record(monkeypatch, *arguments), (name, index, truncation)


def test_chatml_templates_take_the_one_render_way(tokenizers):
    """The model's ChatML template is located verbatim and split by slices; a content it rewrites is not located."""
    assert template_profile(tokenizers["model"]).user_header == "<|im_start|>user\n"
    assert turn_split._slicing_agrees(tokenizers["model"]) and turn_split._slicing_agrees(tokenizers["chatml"])
    assert not turn_split._slicing_agrees(tokenizers["alpaca"])
    trimming = tokenizers["trimming"]
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": " padded "}]
    assert locate_verbatim(trimming, template_profile(trimming), messages) is None


def test_a_chat_template_replaced_on_a_tokenizer_is_probed_again(embedded_model_dir):
    """The probes are kept per tokenizer while its chat template stays; replacing the template probes again."""
    tokenizer = load_tokenizer(embedded_model_dir, "chatml")
    assert template_profile(tokenizer).generation_header == "<|im_start|>assistant\n"
    tokenizer.chat_template = CUSTOM_TEMPLATE
    assert template_profile(tokenizer).generation_header == "[assistant]\n"
    assert turn_split._slicing_agrees(tokenizer) == turn_split._slicing_agrees(
        load_tokenizer(embedded_model_dir, CUSTOM_TEMPLATE)
    )
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yes"}]
    assert (
        locate_verbatim(tokenizer, template_profile(tokenizer), messages).text
        == "[user]\nHi<|im_end|>\n[assistant]\nYes<|im_end|>\n"
    )


def test_a_long_conversation_is_rendered_once(tokenizers):
    tokenizer = tokenizers["model"]
    conversation = Conversation(
        messages=[
            Message(role=role, content=f"{role} {number} " + " ".join(WORDS * 3))
            for number in range(6)
            for role in ("user", "assistant")
        ],
        source="long:1",
    )
    profile = template_profile(tokenizer)  # probed once per template, beforehand
    turn_split._slicing_agrees(tokenizer)
    assert profile.render is not None  # the compiled template gave apply_chat_template's text on the probes
    renders = []
    original = type(tokenizer).apply_chat_template

    def counting(self, *args, **kwargs):
        renders.append("apply_chat_template")
        return original(self, *args, **kwargs)

    def counting_direct(messages):
        renders.append("compiled template")
        return profile.render(messages)

    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(type(tokenizer), "apply_chat_template", counting)
        patched.setitem(
            verbatim._PROFILES,
            next(key for key, value in verbatim._PROFILES.items() if value is profile),
            dataclasses.replace(profile, render=counting_direct),
        )
        samples = tokenize_record(tokenizer, conversation, 128)
    assert renders == ["compiled template"]
    assert samples.cut and len(samples.examples) > 1 and samples.assistant_turns_trained == 6


def test_comparison_keys_equal_the_separate_keys():
    generator = random.Random(3)
    for index in range(200):
        conversation = varied_conversation(generator, index)
        expected = (exact_key(conversation), normalized_key(conversation), prompt_key(conversation))
        assert comparison_keys(conversation) == expected
