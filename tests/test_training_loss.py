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


def chunked_and_masked(model, batch, monkeypatch, num_items_in_batch=None, autocast=False):
    """(loss, gradients) of the chunked loss (16 positions per chunk) and of the masked loss."""
    from core.infrastructure.training import chunked_loss

    monkeypatch.setattr(chunked_loss, "CHUNK_LOGITS", 16 * model.config.vocab_size)
    layer = chunked_loss.chunkable_output_layer(model)
    assert layer is not None and layer.positions_per_chunk == 16
    results = []
    for output_layer in (layer, None):
        model.zero_grad()
        torch.manual_seed(0)  # the same LoRA dropout masks on both sides
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss, outputs = masked_causal_lm_loss(model, batch, num_items_in_batch, output_layer)
        loss.backward()
        results.append((loss.item(), gradients(model), outputs.logits.shape[-1]))
    return results


@pytest.mark.parametrize("family", ["llama", "mistral", "gpt2"])
@pytest.mark.parametrize("collator", ["packed", "padded"])
def test_chunked_loss_and_gradients_equal_the_masked_loss(family, collator, tiny_model_dirs, monkeypatch):
    model = load(tiny_model_dirs[family])  # every weight trained, the output layer (tied or not) included
    batch = (PackingCollator() if collator == "packed" else PaddingCollator(pad_token_id=2))(features(count=8))
    label_tokens = int((batch["labels"][:, 1:] != -100).sum())
    assert label_tokens > 3 * 16  # several chunks, the last one partial
    for count in (None, torch.tensor(label_tokens * 2)):
        (chunked, chunked_grads, width), (masked, masked_grads, _) = chunked_and_masked(
            model, batch, monkeypatch, count
        )
        assert width == model.config.hidden_size  # the output layer was bypassed: hidden states, not logits
        assert abs(chunked - masked) < 1e-5
        assert chunked_grads.keys() == masked_grads.keys()
        for name, gradient in chunked_grads.items():
            torch.testing.assert_close(gradient, masked_grads[name], atol=1e-6, rtol=1e-4, msg=name)


def test_chunked_loss_under_bf16_autocast_and_through_lora(tiny_model_dirs, monkeypatch):
    model = technique_for("lora").prepare(load(tiny_model_dirs["llama"]), LoraTechnique(), LLAMA, False)
    batch = PaddingCollator(pad_token_id=2)(features(count=8))
    (chunked, chunked_grads, _), (masked, masked_grads, _) = chunked_and_masked(
        model, batch, monkeypatch, autocast=True
    )
    assert chunked_grads and all("lora_" in name for name in chunked_grads)  # the frozen output layer gets none
    assert abs(chunked - masked) < 2e-3 * abs(masked)  # bf16 matmuls on both sides, fp32 softmax
    for name, gradient in chunked_grads.items():  # within bf16 rounding (masked bf16 vs fp32 differs by ~1 %)
        scale = masked_grads[name].abs().max()
        assert (gradient - masked_grads[name]).abs().max() <= 2e-2 * scale, name


def test_only_plain_output_layers_are_chunked(tiny_model_dirs):
    from core.infrastructure.training.chunked_loss import chunkable_output_layer

    assert chunkable_output_layer(load(tiny_model_dirs["phi"])) is None  # its output layer has a bias
    hooked = load(tiny_model_dirs["llama"])
    hooked.lm_head.register_forward_hook(lambda module, args, output: output)
    assert chunkable_output_layer(hooked) is None  # a device map or offloading hook must run
    softcapped = load(tiny_model_dirs["llama"])
    softcapped.config.final_logit_softcapping = 30.0
    assert chunkable_output_layer(softcapped) is None  # the family's forward changes the logits


def test_training_with_the_chunked_loss_logs_the_same_losses(
    make_settings, tiny_llama_dir, embedded_model_dir, tmp_path, monkeypatch
):
    from loguru import logger
    from test_training_support import THREE_STEP_FULL_RUN, make_prepared

    from core.application.train import train
    from core.domain.manifest import read_metrics
    from core.infrastructure.training import loss as loss_module

    chunked_calls = []
    original = loss_module.ChunkedLinearCrossEntropy.apply
    monkeypatch.setattr(
        loss_module.ChunkedLinearCrossEntropy, "apply", lambda *args: chunked_calls.append(1) or original(*args)
    )
    prepared = make_prepared(tmp_path / "prepared", embedded_model_dir, n_train=12, n_validation=4)
    losses, messages = {}, []
    sink = logger.add(lambda message: messages.append(str(message)), level="INFO")
    try:
        for chunked in (True, False):
            settings = make_settings(
                **{
                    "model.name": str(tiny_llama_dir),
                    "data.dataset": str(prepared),
                    **THREE_STEP_FULL_RUN,  # Full: the output layer (tied to the embeddings) is trained too
                    "run_name": f"chunked-{chunked}",
                    "training.chunked_loss": chunked,
                }
            )
            rows = read_metrics(train(settings))
            losses[chunked] = [
                row.get("loss", row.get("eval_loss")) for row in rows if "loss" in row or "eval_loss" in row
            ]
    finally:
        logger.remove(sink)
    assert any("Loss: vocabulary projection and cross-entropy a chunk of positions at a time" in m for m in messages)
    assert len(chunked_calls) == 3  # every training batch of the chunked run (none when evaluating or not chunked)
    assert len(losses[True]) == len(losses[False]) == 5
    for chunked, masked in zip(losses[True], losses[False], strict=True):
        assert abs(chunked - masked) < 1e-4
