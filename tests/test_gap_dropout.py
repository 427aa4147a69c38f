"""Dropout drawn as geometric gaps: the law of nn.Dropout's masks, its scaling and its gradient."""

from __future__ import annotations

import math

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from core.infrastructure.training.gap_dropout import GapDropout, dropped_positions, use_gap_dropout


@pytest.mark.parametrize("probability", [0.05, 0.1, 0.25])
def test_masks_follow_independent_bernoulli_draws(probability):
    torch.manual_seed(0)
    count = 400_000
    dropped = torch.zeros(count, dtype=torch.bool)
    dropped[dropped_positions(count, probability)] = True
    sigma = math.sqrt(probability * (1 - probability) / count)
    assert abs(dropped.float().mean().item() - probability) < 5 * sigma
    # neighbours independent: both dropped with probability p^2
    both = (dropped[:-1] & dropped[1:]).float().mean().item()
    assert abs(both - probability**2) < 5 * math.sqrt(probability**2 / count)
    # the first drop lands at k with probability (1 - p)^k p, as for nn.Dropout's masks
    trials = 4000
    firsts = [dropped_positions(50, probability)[:1].tolist() for _ in range(trials)]
    for position in (0, 1, 2):
        expected = (1 - probability) ** position * probability
        observed = sum(first == [position] for first in firsts) / trials
        assert abs(observed - expected) < 5 * math.sqrt(expected / trials)


def test_positions_are_sorted_in_range_and_continue_past_short_draws():
    torch.manual_seed(1)
    positions = dropped_positions(10_000, 0.3, draws=7)  # far too few gaps per draw: the process continues
    assert positions.dtype == torch.int64 and torch.all(positions[1:] > positions[:-1])
    assert positions[0] >= 0 and positions[-1] < 10_000
    assert abs(len(positions) / 10_000 - 0.3) < 5 * math.sqrt(0.21 / 10_000)
    assert dropped_positions(0, 0.1).numel() == 0


def test_output_and_gradient_scale_kept_elements_and_zero_dropped_ones():
    torch.manual_seed(2)
    inputs = torch.randn(64, 96).t().requires_grad_()  # not contiguous
    layer = GapDropout(0.1).train()
    output = layer(inputs)
    kept = output != 0
    torch.testing.assert_close(output[kept], inputs.detach()[kept] / 0.9)
    assert 0.05 < 1 - kept.float().mean().item() < 0.15
    weights = torch.randn_like(output)
    (output * weights).sum().backward()
    torch.testing.assert_close(inputs.grad, torch.where(kept, weights / 0.9, torch.zeros_like(weights)))


def test_seeded_identical_and_off_outside_training():
    layer = GapDropout(0.05).train()
    inputs = torch.randn(32, 128)
    torch.manual_seed(3)
    first = layer(inputs)
    torch.manual_seed(3)
    assert torch.equal(layer(inputs), first)
    assert torch.equal(layer.eval()(inputs), inputs)
    assert torch.equal(GapDropout(0.0).train()(inputs), inputs)


def test_lora_dropout_layers_are_swapped(tiny_llama_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    targets = ["q_proj", "v_proj"]
    model = get_peft_model(model, LoraConfig(r=4, lora_dropout=0.05, target_modules=targets))
    layers = model.config.num_hidden_layers
    assert use_gap_dropout(model) == layers * len(targets)
    dropouts = [module for name, module in model.named_modules() if name.endswith("lora_dropout.default")]
    assert len(dropouts) == layers * len(targets) and all(type(module) is GapDropout for module in dropouts)
    assert all(module.p == 0.05 for module in dropouts)
    kept = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Dropout(0.0), torch.nn.Dropout(0.1, inplace=True))
    assert use_gap_dropout(kept) == 0
