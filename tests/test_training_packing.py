"""Padding-free packing: sequences in one row never see each other, so losses equal padded batches."""

from __future__ import annotations

import pytest
import torch
from test_training_support import THREE_STEP_FULL_RUN, make_prepared
from transformers import AutoModelForCausalLM

from core.application.train import train
from core.domain.catalog import GPT2, LLAMA, ArchitectureDefaults
from core.domain.manifest import read_metrics
from core.domain.techniques import TECHNIQUE_TRAITS
from core.infrastructure.training.collators import PackingCollator, PaddingCollator, packing_decision


def features(count: int = 4, seed: int = 0) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for index in range(count):
        length = 5 + 4 * index
        ids = torch.randint(10, 4000, (length,), generator=generator).tolist()
        labels = [-100] * (length // 2) + ids[length // 2 :]
        rows.append({"input_ids": ids, "labels": labels, "length": length})
    return rows


@pytest.mark.parametrize("family", ["llama", "mistral", "phi", "gpt2"])
def test_packed_and_padded_losses_agree(family, tiny_model_dirs):
    model = AutoModelForCausalLM.from_pretrained(
        tiny_model_dirs[family], dtype=torch.float32, attn_implementation="sdpa"
    )
    model.config.use_cache = False
    batch = features()
    packed = PackingCollator()(batch)
    padded = PaddingCollator(pad_token_id=2)(batch)
    assert packed["input_ids"].shape[0] == 1 and "attention_mask" not in packed
    with torch.no_grad():
        packed_out = model(**packed, use_cache=False)
        padded_out = model(**padded, use_cache=False)
    assert abs(packed_out.loss.item() - padded_out.loss.item()) < 1e-4
    # the second sequence's logits are the same alone and packed behind the first one
    start, length = len(batch[0]["input_ids"]), len(batch[1]["input_ids"])
    torch.testing.assert_close(
        packed_out.logits[0, start : start + length], padded_out.logits[1, :length], atol=1e-5, rtol=1e-5
    )


def test_packing_decision():
    assert packing_decision("auto", LLAMA, TECHNIQUE_TRAITS["lora"])[0]
    assert packing_decision("auto", GPT2, TECHNIQUE_TRAITS["full"])[0]
    assert not packing_decision("auto", LLAMA, TECHNIQUE_TRAITS["prefix"])[0]
    assert not packing_decision("off", LLAMA, TECHNIQUE_TRAITS["lora"])[0]
    unknown = ArchitectureDefaults(family="odd", lora_target_modules=("all-linear",), supports_padding_free=False)
    assert not packing_decision("auto", unknown, TECHNIQUE_TRAITS["lora"])[0]
    assert packing_decision("on", unknown, TECHNIQUE_TRAITS["lora"])[0]


def test_packed_and_padded_training_runs_log_the_same_losses(
    make_settings, tiny_llama_dir, embedded_model_dir, tmp_path
):
    from loguru import logger

    prepared = make_prepared(tmp_path / "prepared", embedded_model_dir, n_train=12, n_validation=4)
    losses, messages = {}, []
    sink = logger.add(lambda message: messages.append(str(message)), level="INFO")
    for packing in ("on", "off"):
        settings = make_settings(
            **{
                "model.name": str(tiny_llama_dir),
                "data.dataset": str(prepared),
                **THREE_STEP_FULL_RUN,
                "run_name": f"packing-{packing}",
                "training.packing": f"'{packing}'",  # quoted: YAML reads bare on/off as booleans
                "training.group_by_length": False,
            }
        )
        run_dir = train(settings)
        losses[packing] = [
            row.get("loss", row.get("eval_loss"))
            for row in read_metrics(run_dir)
            if "step" in row and ("loss" in row or "eval_loss" in row)
        ]
    logger.remove(sink)
    assert sum("Attention: sdpa_packed" in message for message in messages) == 1  # the packed run only
    assert len(losses["on"]) == len(losses["off"]) == 5
    for packed, padded in zip(losses["on"], losses["off"], strict=True):
        assert abs(packed - padded) < 1e-4
