"""Loss at trained positions only: equal to transformers' loss and gradients, with fewer logits."""

from __future__ import annotations

import pytest
import torch
from test_training_packing import features
from transformers import AutoModelForCausalLM

from core.domain.catalog import LLAMA
from core.domain.technique_specs.lora import LoraTechnique
from core.domain.technique_specs.prefix import PrefixTechnique
from core.infrastructure.techniques import technique_for
from core.infrastructure.training.collators import PackingCollator, PaddingCollator
from core.infrastructure.training.loss import accepts_logits_mask, masked_causal_lm_loss, trained_positions


def load(directory):
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32, attn_implementation="sdpa")
    model.config.use_cache = False
    return model


def gradients(model):
    return {name: parameter.grad.clone() for name, parameter in model.named_parameters() if parameter.grad is not None}


def test_trained_positions_predict_the_next_labelled_token():
    labels = torch.tensor([[-100, -100, 7, 8, -100], [-100, 5, -100, -100, 9]])
    mask, targets = trained_positions(labels)
    assert mask.tolist() == [[False, True, True, False, False], [True, False, False, True, False]]
    assert targets.tolist() == [7, 8, 5, 9]


@pytest.mark.parametrize("family", ["llama", "mistral", "phi", "gpt2"])
@pytest.mark.parametrize("collator", ["packed", "padded"])
def test_masked_loss_and_gradients_equal_the_full_logits_loss(family, collator, tiny_model_dirs):
    model = load(tiny_model_dirs[family])
    assert accepts_logits_mask(model)
    batch = (PackingCollator() if collator == "packed" else PaddingCollator(pad_token_id=2))(features())
    label_tokens = int((batch["labels"][:, 1:] != -100).sum())

    reference = model(**batch).loss  # transformers' ForCausalLMLoss over all logits (mean)
    reference.backward()
    expected = gradients(model)
    model.zero_grad()
    loss, outputs = masked_causal_lm_loss(model, batch)
    loss.backward()

    assert outputs.logits.shape[0] == label_tokens  # only trained positions were projected
    assert abs(loss.item() - reference.item()) < 1e-5
    for name, gradient in gradients(model).items():
        torch.testing.assert_close(gradient, expected[name], atol=1e-6, rtol=1e-4, msg=name)

    summed, _ = masked_causal_lm_loss(model, batch, num_items_in_batch=torch.tensor(label_tokens * 2))
    assert abs(summed.item() - reference.item() / 2) < 1e-5  # sum reduction over the accumulation window


@pytest.mark.parametrize("technique", ["lora", "prefix"])
def test_masked_loss_through_peft_wrappers(technique, tiny_model_dirs):
    base = load(tiny_model_dirs["llama"])
    settings = LoraTechnique() if technique == "lora" else PrefixTechnique(num_virtual_tokens=4)
    model = technique_for(technique).prepare(base, settings, LLAMA, False)
    assert accepts_logits_mask(model)
    batch = PaddingCollator(pad_token_id=2)(features())
    with torch.no_grad():
        reference = model(**batch).loss
        loss, _ = masked_causal_lm_loss(model, batch)
    assert abs(loss.item() - reference.item()) < 1e-5
