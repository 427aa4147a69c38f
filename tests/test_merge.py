"""Merging adapters into their base: logit equivalence across model families, QLoRA, DoRA, Prefix refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import MODEL_CACHE
from inference_run_factory import make_run

from core.domain.config import settings_from_dict
from core.domain.errors import UnsupportedOperationError


def _settings(root: Path, base: Path):
    return settings_from_dict(
        {
            "model": {"name": str(base)},
            "paths": {
                "runs_dir": str(root / "runs"),
                "model_cache": str(MODEL_CACHE),
                "registry_dir": str(root / "registry"),
                "data_dir": str(root / "data"),
            },
        }
    )


@pytest.mark.parametrize("family", ["llama", "mistral", "phi", "gpt2"])
def test_lora_merge_is_equivalent_across_families(family, tiny_model_dirs, tmp_path):
    from core.application.merge import merge
    from core.infrastructure.inference.loading import load_for_inference

    settings = _settings(tmp_path, tiny_model_dirs[family])
    make_run(tmp_path / "runs", "run", tiny_model_dirs[family], "lora", seed=5)
    merged_dir = merge(settings, "run")
    assert merged_dir == tmp_path / "runs" / "run" / "merged"
    lineage = json.loads((merged_dir / "lineage.json").read_text())
    verification = lineage["verification"]
    assert verification["atol_rtol"] == [1e-4, 1e-5]
    assert verification["max_abs_diff"] <= verification["tolerance"] < 2e-4

    with_adapter = load_for_inference("run", settings)
    merged = load_for_inference(merged_dir, settings)
    base = load_for_inference(tiny_model_dirs[family], settings)
    ids = torch.tensor([with_adapter.tokenizer("Merging keeps the answers the same, right?")["input_ids"]])
    logits = {}
    for name, loaded in (("adapter", with_adapter), ("merged", merged), ("base", base)):
        with loaded.activated() as module, torch.no_grad():
            logits[name] = module(input_ids=ids).logits
    assert float((logits["adapter"] - logits["merged"]).abs().max()) <= 1e-4
    assert float((logits["adapter"] - logits["base"]).abs().max()) > 1e-2  # the adapter changed the model


def test_merge_output_has_weights_tokenizer_template_generation_config_and_card(tiny_model_dirs, tmp_path):
    from core.application.merge import merge

    settings = _settings(tmp_path, tiny_model_dirs["llama"])
    run_dir = make_run(tmp_path / "runs", "card", tiny_model_dirs["llama"], "dora", seed=6)
    output = merge(settings, run_dir, tmp_path / "exported")
    files = {path.name for path in output.iterdir()}
    assert {
        "model.safetensors",
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
        "README.md",
        "lineage.json",
    } <= files
    assert not list(output.glob("*.bin")) and not list(output.glob("adapter_*"))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert (output / "chat_template.jinja").read_text() == manifest["chat_template"]
    generation = json.loads((output / "generation_config.json").read_text())
    assert generation["eos_token_id"] == 2
    card = (output / "README.md").read_text()
    assert str(tiny_model_dirs["llama"]) not in card  # a local base is named, never its machine path
    for fact in (
        "| Base model | `llama` |",
        "fingerprint-test-0001",
        "| Technique | lora |",
        "final_eval_loss",
        "1.25",
    ):
        assert fact in card
    assert "use_dora | True" in card and "Merge verification" in card
    assert not list(tmp_path.glob(".exported*"))  # no staging directory left behind


def test_qlora_merges_into_full_precision_base_and_documents_the_drift(tiny_model_dirs, tmp_path):
    from core.application.merge import merge

    settings = _settings(tmp_path, tiny_model_dirs["llama"])
    make_run(tmp_path / "runs", "q", tiny_model_dirs["llama"], "qlora", seed=7)
    merged_dir = merge(settings, "q")
    verification = json.loads((merged_dir / "lineage.json").read_text())["verification"]
    assert verification["atol_rtol"] == [1e-3, 1e-4] and verification["max_abs_diff"] <= verification["tolerance"]
    assert verification["quantization_drift"] > verification["max_abs_diff"]  # NF4 base differs from fp32 base
    assert "QLoRA approximation" in (merged_dir / "README.md").read_text()
    config = json.loads((merged_dir / "config.json").read_text())
    assert "quantization_config" not in config  # a plain full-precision checkpoint


def test_prefix_tuning_refuses_to_merge_but_stays_servable(tiny_model_dirs, tmp_path):
    from core.application.merge import merge
    from core.cli import main
    from core.infrastructure.inference.loading import load_for_inference
    from core.infrastructure.inference.predictor import Predictor

    settings = _settings(tmp_path, tiny_model_dirs["llama"])
    make_run(tmp_path / "runs", "prefix", tiny_model_dirs["llama"], "prefix", seed=8)
    with pytest.raises(UnsupportedOperationError, match=r"Prefix Tuning cannot be merged.*Serve it as an adapter"):
        merge(settings, "prefix")
    assert not (tmp_path / "runs" / "prefix" / "merged").exists()
    code = main(["merge", "--run", "prefix", f"paths.runs_dir={tmp_path / 'runs'}", f"paths.model_cache={MODEL_CACHE}"])
    assert code == 2
    answer = Predictor(load_for_inference("prefix", settings)).generate([[{"role": "user", "content": "hi"}]], 3)
    assert len(answer) == 1


def test_a_merge_that_fails_verification_is_not_written(tiny_model_dirs, tmp_path, monkeypatch):
    from core.application.merge import merge
    from core.infrastructure.inference import merging

    settings = _settings(tmp_path, tiny_model_dirs["llama"])
    make_run(tmp_path / "runs", "strict", tiny_model_dirs["llama"], "lora", seed=9)
    monkeypatch.setitem(merging.FLOAT32_TOLERANCES, False, (-1.0, 0.0))  # no difference can pass
    with pytest.raises(merging.MergeVerificationError, match="merge was not written"):
        merge(settings, "strict")
    assert not (tmp_path / "runs" / "strict" / "merged").exists()
    assert not list((tmp_path / "runs" / "strict").glob(".merged*"))


def test_full_finetuning_runs_have_nothing_to_merge(tiny_model_dirs, tmp_path):
    from core.application.merge import merge

    settings = _settings(tmp_path, tiny_model_dirs["llama"])
    make_run(tmp_path / "runs", "full", tiny_model_dirs["llama"], "full")
    with pytest.raises(UnsupportedOperationError, match="already a full model"):
        merge(settings, "full")
