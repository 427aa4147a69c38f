"""Response loss: token-weighted, padding-free with logits only at trained positions, equal to the old
right-padded full-logits loop (kept outside core, as the baseline of ``benchmarks/eval_decode.py``)."""

from __future__ import annotations

import math
import random

import pytest
import torch
from evaluation_runs import sort_conversation
from transformers import AutoModelForCausalLM

from benchmarks.eval_decode import padded_full_logits_loss  # the old right-padded full-logits loop
from core.domain.catalog import LLAMA
from core.domain.technique_specs.prefix import PrefixTechnique
from core.infrastructure.data.tokenize import IGNORE_INDEX, tokenize_conversation
from core.infrastructure.evaluation.loss import packs_by_default, packs_sequences, response_loss
from core.infrastructure.models.loading import load_tokenizer
from core.infrastructure.techniques import technique_for
from core.infrastructure.training.loss import accepts_logits_mask


def varied_rows(tokenizer, count: int = 7) -> list[dict]:
    """Sort-the-numbers records of different lengths (some prompts made much longer)."""
    rows = []
    for index in range(count):
        conversation = sort_conversation(index * 13)
        if index % 3 == 0:  # vary the lengths so batches need padding
            conversation.messages[0].content += " Please answer with the sorted list only." * (index + 1)
        example = tokenize_conversation(tokenizer, conversation, max_length=256)
        rows.append({"input_ids": example.input_ids, "labels": example.labels})
    return rows


@pytest.fixture
def model_and_rows(tiny_llama_dir):
    tokenizer = load_tokenizer(tiny_llama_dir)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir), dtype=torch.float32)
    return model, varied_rows(tokenizer), tokenizer.pad_token_id


class ProjectedRows:
    """Counts the positions the output projection (``lm_head``) is applied to."""

    def __init__(self, model) -> None:
        self.rows = 0
        self.handle = model.get_output_embeddings().register_forward_hook(self._count)

    def _count(self, module, inputs, output) -> None:
        self.rows += inputs[0].reshape(-1, inputs[0].shape[-1]).shape[0]


class WithoutLogitsMask(torch.nn.Module):
    """A causal LM whose ``forward`` has no ``logits_to_keep`` (as some wrappers)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model
        self.config = model.config

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=None):
        return self.model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=use_cache
        )


def assert_equals_reference(model, rows, pad_id, batch_size=3, **options) -> tuple:
    """Checks ``response_loss`` against the reference; returns its result and the positions it projected."""
    expected_loss, expected_tokens = padded_full_logits_loss(model, rows, batch_size, pad_id)
    projected = ProjectedRows(model.model if isinstance(model, WithoutLogitsMask) else model)
    result = response_loss(model, rows, batch_size=batch_size, pad_token_id=pad_id, show_progress=False, **options)
    projected.handle.remove()
    assert result.tokens == expected_tokens
    assert result.sequences == len(rows)
    assert result.loss == pytest.approx(expected_loss, rel=1e-5)
    return result, projected.rows


def independent_mean_loss(model, rows, masked=True):
    """One sequence at a time, no padding: sum of -log p(label) over labelled tokens / count."""
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            input_ids = torch.tensor([row["input_ids"]])
            log_probs = torch.log_softmax(model(input_ids=input_ids).logits[0].double(), dim=-1)
            targets = torch.tensor(row["labels"] if masked else row["input_ids"])[1:]
            keep = targets != IGNORE_INDEX
            picked = log_probs[:-1][keep].gather(1, targets[keep].unsqueeze(1))
            total -= picked.sum().item()
            count += int(keep.sum())
    return total / count, count


def test_perplexity_is_exp_of_mean_masked_token_loss(model_and_rows):
    model, rows, pad_id = model_and_rows
    expected_loss, expected_tokens = independent_mean_loss(model, rows)
    result = response_loss(model, rows, batch_size=3, pad_token_id=pad_id, show_progress=False)
    assert result.tokens == expected_tokens
    assert result.sequences == len(rows)
    assert result.loss == pytest.approx(expected_loss, rel=1e-5)
    assert result.perplexity == pytest.approx(math.exp(expected_loss), rel=1e-4)
    everything, all_tokens = independent_mean_loss(model, rows, masked=False)
    assert all_tokens > expected_tokens  # prompt tokens are excluded ...
    assert abs(everything - result.loss) > 1e-3  # ... and that changes the value


@pytest.mark.parametrize("family", ["llama", "mistral", "phi", "gpt2"])
@pytest.mark.parametrize("packing", [True, None])
def test_padding_free_loss_equals_the_padded_full_logits_loss(family, packing, tiny_model_dirs):
    """Packed (forced) and as chosen (right-padded with sdpa): the reference's loss, logits only where trained."""
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dirs[family]), dtype=torch.float32)
    tokenizer = load_tokenizer(tiny_model_dirs[family])
    rows = varied_rows(tokenizer)
    assert packs_sequences(model) and accepts_logits_mask(model)
    assert not packs_by_default(model)  # sdpa: a packed row would attend through a dense mask
    result, projected_rows = assert_equals_reference(model, rows, tokenizer.pad_token_id, packing=packing)
    assert projected_rows == result.tokens  # logits only at the trained positions
    assert result.tokens < sum(len(row["input_ids"]) for row in rows) / 4


def test_only_a_variable_length_attention_kernel_packs_by_default(tiny_llama_dir):
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir), dtype=torch.float32)
    assert model.config._attn_implementation == "sdpa" and not packs_by_default(model)
    model.config._attn_implementation = "flash_attention_2"
    assert packs_by_default(model)


@pytest.mark.parametrize("packing", [True, None])
def test_embedded_model_loss_equals_the_padded_full_logits_loss(embedded_model_dir, packing):
    model = AutoModelForCausalLM.from_pretrained(str(embedded_model_dir), dtype=torch.float32)
    tokenizer = load_tokenizer(embedded_model_dir)
    rows = varied_rows(tokenizer, count=6)
    assert packs_sequences(model)
    assert_equals_reference(model, rows, tokenizer.pad_token_id, batch_size=4, packing=packing)


@pytest.mark.parametrize("packing", [None, False])
def test_models_without_logits_to_keep_give_the_same_loss(model_and_rows, packing):
    model, rows, pad_id = model_and_rows
    wrapped = WithoutLogitsMask(model)
    assert not accepts_logits_mask(wrapped)
    _, projected_rows = assert_equals_reference(wrapped, rows, pad_id, packing=packing)
    assert projected_rows >= sum(len(row["input_ids"]) for row in rows)  # every position projected


def test_prefix_tuning_is_evaluated_padded_with_the_same_loss(tiny_llama_dir):
    tokenizer = load_tokenizer(tiny_llama_dir)
    rows = varied_rows(tokenizer)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir), dtype=torch.float32)
    model = technique_for("prefix").prepare(base, PrefixTechnique(num_virtual_tokens=4), LLAMA, False)
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn_like(parameter))
    model.eval()
    assert not packs_sequences(model)
    assert_equals_reference(model, rows, tokenizer.pad_token_id)
    with model.disable_adapter():
        base_loss = response_loss(model, rows, pad_token_id=tokenizer.pad_token_id, show_progress=False).loss
    prefixed = response_loss(model, rows, pad_token_id=tokenizer.pad_token_id, show_progress=False).loss
    assert abs(prefixed - base_loss) > 1e-3  # the prefix is part of the evaluated model


def test_loss_does_not_depend_on_order_or_batching(model_and_rows):
    model, rows, pad_id = model_and_rows
    one = response_loss(model, rows, batch_size=1, pad_token_id=pad_id, show_progress=False)
    many = response_loss(model, rows, batch_size=3, pad_token_id=pad_id, show_progress=False)
    shuffled = list(rows)
    random.Random(3).shuffle(shuffled)
    reordered = response_loss(model, shuffled, batch_size=3, pad_token_id=pad_id, show_progress=False)
    assert one.tokens == many.tokens == reordered.tokens
    assert many.loss == pytest.approx(one.loss, rel=1e-5)
    assert reordered.loss == many.loss  # the same batches, whatever the order of the rows


def test_no_trained_tokens_gives_nan(model_and_rows):
    model, rows, pad_id = model_and_rows
    masked = [{"input_ids": row["input_ids"], "labels": [IGNORE_INDEX] * len(row["labels"])} for row in rows[:2]]
    result = response_loss(model, masked, pad_token_id=pad_id, show_progress=False)
    assert result.tokens == 0 and math.isnan(result.perplexity)
