"""sdpa one sequence at a time over a packed row: the same outputs and gradients as sdpa's block mask."""

from __future__ import annotations

import json

import pytest
import torch
from test_training_packing import features
from transformers import AutoModelForCausalLM, MistralConfig, MistralForCausalLM

from core.infrastructure.models.packed_attention import PACKED_SDPA, sequence_bounds, use_packed_attention
from core.infrastructure.training.collators import PackingCollator, PaddingCollator


def _load(path, implementation: str = "sdpa"):
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
    model.config.use_cache = False
    if implementation == PACKED_SDPA:
        assert use_packed_attention(model) == PACKED_SDPA
    return model


def _outputs_and_gradients(model, batch):
    model.zero_grad()
    output = model(**batch, use_cache=False)
    output.loss.backward()
    gradients = {
        name: parameter.grad.clone() for name, parameter in model.named_parameters() if parameter.grad is not None
    }
    return output.logits.detach(), gradients


@pytest.mark.parametrize("family", ["llama", "mistral", "phi", "gpt2"])
def test_packed_row_gives_the_outputs_and_gradients_of_the_block_mask(family, tiny_model_dirs):
    batch = PackingCollator()(features(count=5))
    reference = _outputs_and_gradients(_load(tiny_model_dirs[family]), batch)
    packed = _outputs_and_gradients(_load(tiny_model_dirs[family], PACKED_SDPA), batch)
    torch.testing.assert_close(packed[0], reference[0], atol=1e-5, rtol=1e-5)
    assert packed[1].keys() == reference[1].keys() and packed[1]
    for name, gradient in reference[1].items():
        torch.testing.assert_close(packed[1][name], gradient, atol=1e-5, rtol=1e-4, msg=name)


def test_grouped_query_attention_equals_each_sequence_alone():
    torch.manual_seed(0)
    config = MistralConfig(
        vocab_size=4000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=8, num_key_value_heads=2, sliding_window=None, use_cache=False,
    )  # fmt: skip
    model = MistralForCausalLM(config).eval()
    rows = features(count=4, seed=3)
    packed = PackingCollator()(rows)
    use_packed_attention(model)
    with torch.no_grad():
        packed_logits = model(**packed).logits[0]
        alone = [model(input_ids=torch.tensor([row["input_ids"]])).logits[0] for row in rows]
    torch.testing.assert_close(packed_logits, torch.cat(alone), atol=1e-5, rtol=1e-5)


def test_masks_other_than_one_packed_row_go_to_plain_sdpa(tiny_model_dirs):
    rows = features(count=4)
    padded = PaddingCollator(pad_token_id=2)(rows)
    with torch.no_grad():
        reference = _load(tiny_model_dirs["llama"])(**padded).logits
        packed_model = _load(tiny_model_dirs["llama"], PACKED_SDPA)
        torch.testing.assert_close(packed_model(**padded).logits, reference, atol=1e-5, rtol=1e-5)
    # a sliding window shorter than the sequences: the mask is not block-causal, so sdpa gets it as is
    torch.manual_seed(0)
    config = MistralConfig(
        vocab_size=4000, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, sliding_window=3, use_cache=False,
    )  # fmt: skip
    windowed = MistralForCausalLM(config).eval()
    batch = PackingCollator()(rows)
    with torch.no_grad():
        reference = windowed(**batch).logits
        use_packed_attention(windowed)
        torch.testing.assert_close(windowed(**batch).logits, reference, atol=1e-5, rtol=1e-5)


def test_sequence_bounds_only_for_an_exact_block_causal_mask():
    lengths = [3, 1, 4]
    ids = torch.repeat_interleave(torch.arange(3), torch.tensor(lengths))
    block = ((ids[:, None] == ids[None, :]) & torch.ones(8, 8, dtype=torch.bool).tril())[None, None]
    assert sequence_bounds(block) == [(0, 3), (3, 4), (4, 8)]
    assert sequence_bounds(torch.ones(8, 8, dtype=torch.bool).tril()[None, None]) == [(0, 8)]
    leaky = block.clone()
    leaky[0, 0, 5, 1] = True  # one token sees into the previous sequence
    assert sequence_bounds(leaky) is None
    assert sequence_bounds(block.expand(2, 1, 8, 8)) is None  # several rows
    assert sequence_bounds(block[..., :6]) is None  # not square (a cache)
    assert sequence_bounds(block.float()) is None and sequence_bounds(None) is None


def test_the_choice_stays_in_memory_and_only_replaces_sdpa(tiny_model_dirs, tmp_path):
    model = _load(tiny_model_dirs["llama"], PACKED_SDPA)
    model.save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert PACKED_SDPA not in json.dumps(saved)
    assert _load(tmp_path / "saved").config._attn_implementation == "sdpa"
    eager = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["llama"], attn_implementation="eager")
    assert use_packed_attention(eager) == "eager"


def test_a_mask_freed_between_forwards_is_not_taken_for_the_next_one():
    lengths = torch.repeat_interleave(torch.arange(2), torch.tensor([2, 3]))
    block = ((lengths[:, None] == lengths[None, :]) & torch.ones(5, 5, dtype=torch.bool).tril())[None, None]
    assert sequence_bounds(block) == [(0, 2), (2, 5)]
    del block  # its weak reference now answers None, as a forward without a mask passes None
    assert sequence_bounds(None) is None


@pytest.mark.parametrize("length", [66, 300])
def test_under_bf16_autocast_short_sequences_attend_in_fp32(length):
    from core.infrastructure.models.packed_attention import FP32_ATTENTION_MAX_LENGTH, _attend

    generator = torch.Generator().manual_seed(4)
    query, key, value = (torch.randn(1, 4, length, 32, generator=generator) for _ in range(3))
    options = {"dropout_p": 0.0, "scale": None, "is_causal": True}
    attend = torch.nn.functional.scaled_dot_product_attention
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = _attend(query, key, value, options)
        in_bf16 = attend(query, key, value, is_causal=True)  # what plain sdpa runs under autocast
    assert output.dtype == torch.bfloat16 == in_bf16.dtype
    if length <= FP32_ATTENTION_MAX_LENGTH:
        assert torch.equal(output, attend(query, key, value, is_causal=True).to(torch.bfloat16))
    else:
        assert torch.equal(output, in_bf16)


def test_packed_training_step_under_bf16_autocast_stays_within_bf16_of_fp32(tiny_model_dirs):
    batch = PackingCollator()(features(count=5))
    reference = _outputs_and_gradients(_load(tiny_model_dirs["llama"]), batch)
    model = _load(tiny_model_dirs["llama"], PACKED_SDPA)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, gradients = _outputs_and_gradients(model, batch)
    torch.testing.assert_close(logits.float(), reference[0], atol=0.05, rtol=0.05)
    for name, gradient in reference[1].items():
        scale = gradient.abs().max().item()
        assert (gradients[name].float() - gradient).abs().max().item() <= 0.03 * scale + 1e-6, name
