"""Loss masks, templates and EOS: properties over random conversations, train/serve parity, learning to stop."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.domain.records import Conversation, Message
from core.infrastructure.data.tokenize import (
    IGNORE_INDEX,
    render_prompt_ids,
    tokenize_conversation,
    tokenize_with_reason,
)
from core.infrastructure.models.loading import load_tokenizer

DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
CUSTOM_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '[' + message['role'] + ']\\n' + message['content'] + eos_token + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '[assistant]\\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizers(embedded_model_dir):
    return {
        "model": load_tokenizer(embedded_model_dir),
        "chatml": load_tokenizer(embedded_model_dir, "chatml"),
        "alpaca": load_tokenizer(embedded_model_dir, "alpaca"),
        "custom": load_tokenizer(embedded_model_dir, CUSTOM_TEMPLATE),
    }


def conversation(*turns: tuple[str, str]) -> Conversation:
    return Conversation(messages=[Message(role=role, content=content) for role, content in turns], source="test:1")


text = (
    st.text(
        alphabet=st.characters(
            categories=("Lu", "Ll", "Nd", "Po", "Zs", "Lo", "So"),
            include_characters="\n\t{}[]\"':",
            exclude_characters="<|",
        ),
        min_size=1,
        max_size=30,
    )
    .map(str.strip)
    .filter(bool)
)


@st.composite
def conversations(draw) -> Conversation:
    turns: list[tuple[str, str]] = []
    if draw(st.booleans()):
        turns.append(("system", draw(text)))
    for _ in range(draw(st.integers(1, 3))):
        turns += [("user", draw(text)), ("assistant", draw(text))]
    return conversation(*turns)


def chatml_regions(messages: list[Message], default_system: str | None) -> tuple[str, list[tuple[int, int]]]:
    """Independent oracle: the ChatML text and the character spans that must be trained (answer + <|im_end|>)."""
    rendered, spans = "", []
    if default_system is not None and messages[0].role != "system":
        rendered += f"<|im_start|>system\n{default_system}<|im_end|>\n"
    for message in messages:
        rendered += f"<|im_start|>{message.role}\n"
        start = len(rendered)
        rendered += message.content + "<|im_end|>"
        if message.role == "assistant":
            spans.append((start, len(rendered)))
        rendered += "\n"
    return rendered, spans


@pytest.mark.parametrize("template", ["model", "chatml"])
def test_masking_properties_on_random_conversations(tokenizers, template):
    tokenizer = tokenizers[template]

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(conversations())
    def check(sample: Conversation) -> None:
        expected_text, spans = chatml_regions(sample.messages, DEFAULT_SYSTEM if template == "model" else None)
        assert tokenizer.apply_chat_template([m.model_dump() for m in sample.messages], tokenize=False) == expected_text
        example = tokenize_conversation(tokenizer, sample, max_length=4096)
        encoded = tokenizer(expected_text, add_special_tokens=False, return_offsets_mapping=True)
        assert example.input_ids == encoded["input_ids"]
        for token_id, label, (start, end) in zip(
            example.input_ids, example.labels, encoded["offset_mapping"], strict=True
        ):
            inside = any(span_start <= start and end <= span_end for span_start, span_end in spans)
            if inside:
                assert label == token_id, f"assistant token {tokenizer.decode([token_id])!r} is masked"
            else:
                assert label == IGNORE_INDEX, f"prompt token {tokenizer.decode([token_id])!r} is trained"
        trained_text = tokenizer.decode([label for label in example.labels if label != IGNORE_INDEX])
        assert trained_text == "".join(expected_text[start:end] for start, end in spans)
        assert example.trained_tokens == sum(label != IGNORE_INDEX for label in example.labels)

    check()


@settings(max_examples=15, deadline=None)
@given(conversations())
def test_train_on_prompt_trains_every_token(tokenizers, sample):
    example = tokenize_conversation(tokenizers["chatml"], sample, max_length=4096, train_on_prompt=True)
    assert example.labels == example.input_ids


@pytest.mark.parametrize("template", ["model", "chatml", "alpaca", "custom"])
def test_training_and_serving_paths_give_identical_prompt_ids(tokenizers, template):
    tokenizer = tokenizers[template]
    sample = conversation(
        ("system", "Answer briefly."),
        ("user", "What is the capital of France?"),
        ("assistant", "Paris."),
        ("user", 'Reply with JSON: {"city": ...}'),
        ("assistant", '{"city": "Rome"}'),
    )
    example = tokenize_conversation(tokenizer, sample, max_length=4096)
    messages = [message.model_dump() for message in sample.messages]
    for answer_index in (2, 4):
        prompt_ids = render_prompt_ids(tokenizer, messages[:answer_index])
        assert example.input_ids[: len(prompt_ids)] == prompt_ids
        assert example.labels[len(prompt_ids) - 1] == IGNORE_INDEX  # the assistant header is not trained
        assert example.labels[len(prompt_ids)] == example.input_ids[len(prompt_ids)]  # the answer's first token is
    trained = [label for label in example.labels if label != IGNORE_INDEX]
    assert trained.count(tokenizer.eos_token_id) == 2  # every answer ends with a trained EOS
    assert trained[-1] == tokenizer.eos_token_id


def test_eos_is_appended_when_the_template_does_not_close_answers(tokenizers, embedded_model_dir):
    plain = (
        "{% for message in messages %}{{ message['role'] + ': ' + message['content'] + '\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
    )
    tokenizer = load_tokenizer(embedded_model_dir, plain)
    example = tokenize_conversation(tokenizer, conversation(("user", "Hi"), ("assistant", "Hello")), max_length=64)
    assert example.input_ids[-1] == tokenizer.eos_token_id
    assert example.labels[-1] == tokenizer.eos_token_id
    # the generation prompt ends with a space that merges into " Hello": that token is trained, "\n" is not
    assert tokenizer.decode([label for label in example.labels if label != IGNORE_INDEX]) == " Hello<|im_end|>"


def test_truncation_keeps_prompt_end_and_answer_start_or_drops(tokenizers):
    tokenizer = tokenizers["chatml"]
    long_prompt = " ".join(f"word{index}" for index in range(200))
    sample = conversation(("user", long_prompt + " final question?"), ("assistant", "The answer is short."))
    example, reason = tokenize_with_reason(tokenizer, sample, max_length=48)
    assert reason is None and example.truncated and len(example.input_ids) == 48
    decoded = tokenizer.decode(example.input_ids)
    assert "final question?" in decoded and decoded.endswith("The answer is short.<|im_end|>\n")
    assert (
        tokenizer.decode([label for label in example.labels if label != IGNORE_INDEX])
        == "The answer is short.<|im_end|>"
    )

    long_answer = conversation(("user", "Count."), ("assistant", long_prompt))
    example, _ = tokenize_with_reason(tokenizer, long_answer, max_length=48)
    assert tokenizer.decode(example.input_ids).startswith("<|im_start|>user\nCount.<|im_end|>")  # prompt kept whole
    assert example.trained_tokens > 0

    assert tokenize_with_reason(tokenizer, sample, max_length=48, truncation="drop") == (None, "too_long")
    assert tokenize_conversation(tokenizer, sample, max_length=48, truncation="drop") is None


def test_template_that_hides_answers_gives_an_empty_loss_mask(embedded_model_dir):
    users_only = "{% for m in messages %}{% if m['role'] == 'user' %}{{ m['content'] + '\\n' }}{% endif %}{% endfor %}"
    tokenizer = load_tokenizer(embedded_model_dir, users_only)
    result = tokenize_with_reason(tokenizer, conversation(("user", "Hi"), ("assistant", "Hello")), max_length=64)
    assert result == (None, "empty_loss_mask")


def test_model_whose_pad_is_eos_learns_to_stop(tiny_llama_dir):
    import torch
    from transformers import AutoModelForCausalLM, DataCollatorWithFlattening

    tokenizer = load_tokenizer(tiny_llama_dir, "chatml")  # ChatML without a default system prompt: short rows
    assert tokenizer.pad_token_id == tokenizer.eos_token_id  # the risky case: a pad mask would also hide EOS
    samples = [
        conversation(("user", f"Repeat: {word}"), ("assistant", word))
        for word in ("apple", "river", "stone", "cloud", "tiger", "lemon", "forest", "garden")
    ]
    examples = [tokenize_conversation(tokenizer, sample, max_length=128) for sample in samples]
    for example in examples:
        trained = [label for label in example.labels if label != IGNORE_INDEX]
        assert trained[-1] == tokenizer.eos_token_id  # EOS closes every answer and carries a label

    # P(EOS) at the position right after each answer, i.e. predicted from the answer's last token
    eos_positions = [max(i for i, label in enumerate(e.labels) if label == tokenizer.eos_token_id) for e in examples]

    def eos_probability(model) -> float:
        probabilities = []
        with torch.no_grad():
            for example, position in zip(examples, eos_positions, strict=True):
                logits = model(input_ids=torch.tensor([example.input_ids[:position]])).logits[0, -1]
                probabilities.append(torch.softmax(logits, dim=-1)[tokenizer.eos_token_id].item())
        return sum(probabilities) / len(probabilities)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a hidden-size-16 model gains nothing from threads; on a busy CPU they cost 20x
    try:
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir), dtype=torch.float32)
        before = eos_probability(model)
        batch = DataCollatorWithFlattening(return_position_ids=True)(
            [{"input_ids": e.input_ids, "labels": e.labels} for e in examples]
        )
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-2)
        model.train()
        for _ in range(40):
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        model.eval()
        after = eos_probability(model)
    finally:
        torch.set_num_threads(threads)
    assert before < 0.01
    assert after > 0.25 and after > 1000 * before, (before, after)


class _EmptyOffsetEncoding:
    """An encoding whose second token has an empty offset at the span start (the rule counts it one character wide)."""

    offsets = ((0, 2), (2, 2), (2, 5), (5, 7))

    def char_to_token(self, position: int) -> int | None:
        return next((index for index, (start, end) in enumerate(self.offsets) if start <= position < end), None)

    def token_to_chars(self, index: int) -> tuple[int, int]:
        return self.offsets[index]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pieces=st.lists(
        st.sampled_from(["Hello", " world", "é", "字", "🙂", "\n", "  ", "<|im_end|>", "x", "12"]), max_size=30
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=8),
)
def test_answer_ranges_from_span_ends_equal_the_offsets_rule(tokenizers, pieces, cuts):
    """The Rust encoding's span-end ranges give exactly the rule's ranges (multi-byte characters included)."""
    from core.infrastructure.data.token_offsets import TokenOffsets, answer_token_ranges

    text = "".join(pieces)
    encoding = tokenizers["model"]._tokenizer.encode(text, add_special_tokens=False)
    bounds = sorted({cut % (len(text) + 1) for cut in cuts})
    spans = [(start, end) for start, end in zip(bounds[::2], bounds[1::2], strict=False) if end > start]
    fast = TokenOffsets(encoding.ids, encoding=encoding).answer_ranges(spans)
    assert fast == answer_token_ranges(encoding.offsets, spans)


def test_answer_ranges_fall_back_to_the_offsets_rule_at_an_empty_offset():
    from core.infrastructure.data.token_offsets import TokenOffsets, answer_token_ranges

    encoding = _EmptyOffsetEncoding()
    ranges = TokenOffsets([1, 2, 3, 4], encoding=encoding).answer_ranges([(2, 5)])
    assert ranges == answer_token_ranges(encoding.offsets, [(2, 5)]) == [(1, 3)]
