"""Perplexity equals exp of the mean masked token loss, computed independently here."""

from __future__ import annotations

import math

import pytest
import torch
from evaluation_runs import sort_conversation
from transformers import AutoModelForCausalLM

from core.infrastructure.data.tokenize import IGNORE_INDEX, tokenize_conversation
from core.infrastructure.evaluation.loss import response_loss
from core.infrastructure.models.loading import load_tokenizer


@pytest.fixture
def model_and_rows(tiny_llama_dir):
    tokenizer = load_tokenizer(tiny_llama_dir)
    rows = []
    for index in range(7):
        conversation = sort_conversation(index * 13)
        if index % 3 == 0:  # vary the lengths so batches need padding
            conversation.messages[0].content += " Please answer with the sorted list only." * (index + 1)
        example = tokenize_conversation(tokenizer, conversation, max_length=256)
        rows.append({"input_ids": example.input_ids, "labels": example.labels})
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir), dtype=torch.float32)
    return model, rows, tokenizer.pad_token_id


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


def test_loss_does_not_depend_on_batching(model_and_rows):
    model, rows, pad_id = model_and_rows
    one = response_loss(model, rows, batch_size=1, pad_token_id=pad_id, show_progress=False)
    many = response_loss(model, rows, batch_size=8, pad_token_id=pad_id, show_progress=False)
    assert one.tokens == many.tokens
    assert many.loss == pytest.approx(one.loss, rel=1e-5)


def test_no_trained_tokens_gives_nan(model_and_rows):
    model, rows, pad_id = model_and_rows
    masked = [{"input_ids": row["input_ids"], "labels": [IGNORE_INDEX] * len(row["labels"])} for row in rows[:2]]
    result = response_loss(model, masked, pad_token_id=pad_id, show_progress=False)
    assert result.tokens == 0 and math.isnan(result.perplexity)
