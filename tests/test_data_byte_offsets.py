"""Byte-level token spans from the ids alone equal the Rust tokenizer's offsets, and only qualifying tokenizers use them.

``prepare-data`` encodes a byte-level BPE tokenizer's texts without offset tracking and computes
every token's span from a table of token byte lengths. The spans, the answer ranges, and every
sample ``tokenize_record`` builds must be exactly what the tokenizer's own offsets give; a
tokenizer whose token bytes depend on context (a normalizer, a prefix space, whitespace-stripping
added tokens, trimmed offsets, a sentencepiece vocabulary) must not get a table.
"""

from __future__ import annotations

import json
import random
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_data_verbatim import CUSTOM_TEMPLATE, varied_conversation
from tokenizers import Tokenizer, models, pre_tokenizers

from core.infrastructure.data import tokenize as tokenize_module
from core.infrastructure.data.byte_offsets import (
    byte_length_table,
    byte_lengths,
    byte_positions,
    char_offsets,
    fast_ids_with_byte_ends,
)
from core.infrastructure.data.token_offsets import TokenOffsets, answer_token_ranges
from core.infrastructure.data.turn_split import tokenize_record
from core.infrastructure.models.loading import load_tokenizer

PIECES = [
    "Hello",
    " world",
    "é",
    "字",
    "🙂",
    "\n",
    "  ",
    "<|im_end|>",
    "<|im_start|>",
    "x",
    "12",
    "\t",
    "ñandú",
    "\u0301",
]


@pytest.fixture(scope="module")
def tokenizer(embedded_model_dir):
    return load_tokenizer(embedded_model_dir)


def _with_backend_change(tokenizer, change) -> Tokenizer:
    """A copy of the tokenizer's Rust backend with one change made to its JSON."""
    description = json.loads(tokenizer._tokenizer.to_str())
    change(description)
    return Tokenizer.from_str(json.dumps(description))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(st.sampled_from(PIECES), max_size=40), cuts=st.lists(st.integers(0, 300), max_size=8))
def test_spans_from_byte_lengths_equal_the_tokenizers_offsets(tokenizer, pieces, cuts):
    """Ids, every token's character span, the answer ranges and the tokens starting at each position, multi-byte characters and special tokens included."""
    backend = tokenizer._tokenizer
    text = "".join(pieces)
    encoding = backend.encode(text, add_special_tokens=False)
    ids, byte_ends = fast_ids_with_byte_ends(backend, byte_lengths(tokenizer, backend), text)
    assert ids == encoding.ids
    assert char_offsets(text, byte_ends) == [tuple(span) for span in encoding.offsets]
    bounds = sorted({cut % (len(text) + 1) for cut in cuts})
    spans = [(start, end) for start, end in zip(bounds[::2], bounds[1::2], strict=False) if end > start]
    from_bytes = TokenOffsets(ids, byte_ends=byte_ends, text=text).answer_ranges(spans)
    assert from_bytes == answer_token_ranges(encoding.offsets, spans)
    every_position = list(range(len(text) + 1))
    offsets = [tuple(span) for span in encoding.offsets]
    starting = TokenOffsets(ids, offsets).tokens_starting_at(every_position)
    assert TokenOffsets(ids, byte_ends=byte_ends, text=text).tokens_starting_at(every_position) == starting
    for position, token in zip(every_position, starting, strict=True):
        if token is not None:  # the rule, stated plainly: the token starts there and the one before ends by then
            assert offsets[token][0] == position and (token == 0 or offsets[token - 1][1] <= position)


LLAMA3_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"


def _llama3_pipeline(description):
    """Llama 3's pipeline: its split regex before a regex-less ByteLevel, offsets kept untrimmed."""
    description["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        ],
    }
    description["post_processor"] = {
        "type": "Sequence",
        "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
            description["post_processor"],
        ],
    }


@pytest.fixture(scope="module")
def llama3_backend(tokenizer):
    backend = _with_backend_change(tokenizer, _llama3_pipeline)
    return backend, byte_length_table(backend)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(st.sampled_from([*PIECES, "don't", "1234567", " \n\n ", "?!"]), max_size=40))
def test_a_llama3_shaped_pipeline_gets_a_table_and_the_same_spans(llama3_backend, pieces):
    backend, table = llama3_backend
    assert table is not None
    text = "".join(pieces)
    encoding = backend.encode(text, add_special_tokens=False)
    ids, byte_ends = fast_ids_with_byte_ends(backend, table, text)
    assert ids == encoding.ids
    assert char_offsets(text, byte_ends) == [tuple(span) for span in encoding.offsets]


@pytest.mark.parametrize("template", [None, "alpaca", CUSTOM_TEMPLATE])
def test_samples_equal_those_built_from_the_tokenizers_offsets(embedded_model_dir, template, monkeypatch):
    """Every sample, label and count of ``tokenize_record`` is the same with the byte-length spans as without."""
    tokenizer, generator = load_tokenizer(embedded_model_dir, template), random.Random(str(template))
    for index in range(80):
        conversation = varied_conversation(generator, index)
        max_length, train_on_prompt = generator.choice([48, 128, 512]), generator.random() < 0.3
        for truncation in ("split_turns", "keep_first", "drop"):
            arguments = (tokenizer, conversation, max_length, train_on_prompt, truncation)
            fast = tokenize_record(*arguments)
            with monkeypatch.context() as patched:
                patched.setattr(tokenize_module, "byte_lengths", lambda tokenizer, backend: None)
                assert fast == tokenize_record(*arguments), (template, index, truncation)


def test_the_embedded_tokenizer_gets_a_table_of_its_token_bytes(tokenizer):
    table = byte_lengths(tokenizer, tokenizer._tokenizer)
    assert table is not None and len(table) == len(tokenizer)
    assert table[tokenizer.convert_tokens_to_ids("<|im_end|>")] == len("<|im_end|>")
    assert table[tokenizer.convert_tokens_to_ids("Ġworld")] == len(" world")
    assert table[tokenizer.convert_tokens_to_ids("Ã©")] == len("é".encode())


def _nfc(description):
    description["normalizer"] = {"type": "NFC"}


def _lowercase(description):
    description["normalizer"] = {"type": "Lowercase"}


def _nfkc_after_nfc(description):
    description["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "NFKC"}]}


def _prefix_space(description):
    description["pre_tokenizer"]["add_prefix_space"] = True


def _stripping_token(description):
    description["added_tokens"][2]["rstrip"] = True


def _trimmed_offsets(description):
    description["post_processor"] = {
        "type": "ByteLevel",
        "add_prefix_space": False,
        "trim_offsets": True,
        "use_regex": True,
    }


@pytest.mark.parametrize("change", [_lowercase, _nfkc_after_nfc, _prefix_space, _stripping_token, _trimmed_offsets])
def test_a_tokenizer_whose_token_bytes_depend_on_context_gets_no_table(tokenizer, change):
    backend = _with_backend_change(tokenizer, change)
    assert byte_length_table(backend) is None


@pytest.fixture(scope="module")
def nfc_backend(tokenizer):
    return _with_backend_change(tokenizer, _nfc)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(st.sampled_from([*PIECES, "q", "\u0307", "\u0323", "A\u030a", "\u212b"]), max_size=40))
def test_an_nfc_tokenizer_gets_spans_only_for_texts_nfc_leaves_as_they_are(nfc_backend, pieces):
    """Qwen's normalizer: a text NFC changes (composed, reordered marks) takes the tokenizer's offsets; others match."""
    table = byte_length_table(nfc_backend)
    assert table is not None
    text = "".join(pieces)
    fast = fast_ids_with_byte_ends(nfc_backend, table, text)
    if unicodedata.normalize("NFC", text) != text:
        assert fast is None
        return
    encoding = nfc_backend.encode(text, add_special_tokens=False)
    assert fast is not None and fast[0] == encoding.ids
    assert char_offsets(text, fast[1]) == [tuple(span) for span in encoding.offsets]


def test_an_nfc_tokenizer_refuses_reordered_marks_of_the_same_byte_length(nfc_backend):
    """NFC reorders q + dot above + dot below without changing the byte length: the lengths alone would add up."""
    table = byte_length_table(nfc_backend)
    assert fast_ids_with_byte_ends(nfc_backend, table, "q\u0307\u0323 x") is None
    assert fast_ids_with_byte_ends(nfc_backend, table, "q\u0323\u0307 x") is not None


def test_a_sentencepiece_style_vocabulary_gets_no_table():
    backend = Tokenizer(models.BPE({"▁a": 0, "b": 1, "<unk>": 2}, [], unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.ByteLevel()])
    assert byte_length_table(backend) is None


def test_a_text_whose_token_lengths_do_not_add_up_takes_the_offsets(tokenizer):
    backend = tokenizer._tokenizer
    table = [2 * length for length in byte_lengths(tokenizer, backend)]
    assert fast_ids_with_byte_ends(backend, table, "Hello world") is None
    assert fast_ids_with_byte_ends(backend, table, "") == ([], [])
    encoded = tokenize_module._encode(tokenizer, "Hello é")
    assert encoded.ids == backend.encode("Hello é", add_special_tokens=False).ids
    assert encoded.offsets == [tuple(span) for span in backend.encode("Hello é", add_special_tokens=False).offsets]


@settings(max_examples=200, deadline=None)
@given(pieces=st.lists(st.sampled_from(PIECES), max_size=30), picks=st.lists(st.integers(0, 400), max_size=12))
def test_byte_positions_of_unordered_and_repeated_character_positions(pieces, picks):
    """One pass over the text gives each position's UTF-8 offset, whatever the order of the positions."""
    text = "".join(pieces)
    positions = [pick % (len(text) + 1) for pick in picks]
    assert byte_positions(text, positions) == [len(text[:position].encode("utf-8")) for position in positions]
