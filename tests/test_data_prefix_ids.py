"""Reusing the ids of a prefix met before gives exactly the tokenizer's ids, and only where its split makes that true.

``prepare-data`` encodes a rendered record's start (the system turn, up to the end of an added
token) once and reuses its ids for every record that starts the same way. The ids must equal
``backend.encode(text).ids`` for every text, also when added tokens overlap (the longest wins, as
in the tokenizer) or a text repeats only part of a prefix; tokenizers whose split is not that
simple get no reuse.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_data_byte_offsets import _with_backend_change
from test_data_byte_offsets import tokenizer as tokenizer  # the embedded tokenizer (a module fixture)
from tokenizers import AddedToken, Tokenizer

from core.infrastructure.data.byte_offsets import byte_length_table, fast_ids_with_byte_ends
from core.infrastructure.data.prefix_ids import PrefixIds, prefix_ids, split_pattern

SYSTEM_TURNS = [
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n",
    "<|im_start|>system\nYou are a careful assistant.<|im_end|>\n",
    "<|im_start|>system\nYou are a careful assistant.<|im_end|><|im_end|>",
    "",
]
PIECES = [
    "<|im_start|>",
    "<|im_end|>",
    "user\n",
    "assistant\n",
    "Hello",
    " world",
    "é",
    "字",
    "\n",
    "  ",
    "12",
    "<|a|>",
    "b",
]


@pytest.fixture(scope="module")
def overlapping_backend(tokenizer):
    """The embedded tokenizer with two more special tokens, one the other's prefix (``<|a|>`` and ``<|a|>b``)."""
    backend = Tokenizer.from_str(tokenizer._tokenizer.to_str())
    backend.add_special_tokens([AddedToken("<|a|>", normalized=False), AddedToken("<|a|>b", normalized=False)])
    return backend


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=st.lists(
        st.tuples(st.sampled_from(SYSTEM_TURNS), st.lists(st.sampled_from(PIECES), max_size=20)), min_size=1, max_size=8
    )
)
def test_ids_equal_the_tokenizers_for_texts_sharing_prefixes(overlapping_backend, texts):
    """Every text of a stream, its prefix reused from earlier texts or not, gets the tokenizer's ids and byte ends."""
    backend = overlapping_backend
    encoder, table = PrefixIds(backend, split_pattern(backend)), byte_length_table(backend)
    assert table is not None
    for system, pieces in [*texts, *texts]:  # every prefix is met at least twice
        text = system + "".join(pieces)
        expected = backend.encode(text, add_special_tokens=False).ids
        assert encoder.ids(text) == expected, text
        fast = fast_ids_with_byte_ends(backend, table, text, encoder)
        assert fast is not None and fast[0] == expected


def test_the_longest_added_token_wins_where_two_overlap(overlapping_backend):
    """``<|a|>bx``: the tokenizer matches ``<|a|>b``; a split after ``<|a|>`` would encode ``b`` as text."""
    backend = overlapping_backend
    encoder = PrefixIds(backend, split_pattern(backend))
    for _ in range(3):
        assert encoder.ids("<|a|>bx") == backend.encode("<|a|>bx", add_special_tokens=False).ids
    assert backend.token_to_id("<|a|>b") in encoder.ids("<|a|>bx")


def test_a_system_turn_met_twice_is_encoded_once_and_reused(tokenizer):
    backend = tokenizer._tokenizer
    encoder = PrefixIds(backend, split_pattern(backend))
    calls = []
    real = backend.encode_batch_fast

    class Counting:
        def encode_batch_fast(self, texts, add_special_tokens):
            calls.append(texts[0])
            return real(texts, add_special_tokens=add_special_tokens)

    encoder._backend = Counting()
    system = SYSTEM_TURNS[0]
    records = [f"{system}<|im_start|>user\nQuestion {index}<|im_end|>\n" for index in range(6)]
    calls_per_record = []
    for text in records:
        before = len(calls)
        assert encoder.ids(text) == backend.encode(text, add_special_tokens=False).ids
        calls_per_record.append(calls[before:])
    # a prefix is kept on its second sighting, one added token further each record, until the first user turn
    assert calls_per_record[0] == [records[0]]
    assert calls_per_record[-1] == [records[-1].removeprefix(system + "<|im_start|>")]
    assert calls_per_record[-2] == [records[-2].removeprefix(system + "<|im_start|>")]


def test_the_prepare_pass_uses_one_encoder_per_tokenizer(tokenizer):
    assert prefix_ids(tokenizer, tokenizer._tokenizer) is prefix_ids(tokenizer, tokenizer._tokenizer)


def _single_word(description):
    description["added_tokens"][2]["single_word"] = True


def _left_stripping(description):
    description["added_tokens"][1]["lstrip"] = True


@pytest.mark.parametrize("change", [_single_word, _left_stripping])
def test_added_tokens_that_match_by_context_give_no_reuse(tokenizer, change):
    assert split_pattern(_with_backend_change(tokenizer, change)) is None


def test_special_tokens_encoded_as_text_give_no_reuse(tokenizer):
    backend = Tokenizer.from_str(tokenizer._tokenizer.to_str())
    backend.encode_special_tokens = True
    assert split_pattern(backend) is None
