"""Memory estimator: arithmetic properties, the README table, and a measured peak on a tiny model."""

from __future__ import annotations

import json

import pytest
from test_training_support import REPO_ROOT, isolated_overrides, make_prepared, train_in_subprocess

from core.domain.catalog import CATALOG, LLAMA, CatalogEntry
from core.domain.memory import GB, estimate_memory, format_memory_table, memory_table
from core.domain.model_shapes import lora_parameters

SMOLLM = CATALOG["smollm2-135m-instruct"]


def test_components_follow_the_technique():
    full = estimate_memory(SMOLLM, "full", 256, 4, precision="fp32")
    lora = estimate_memory(SMOLLM, "lora", 256, 4, precision="fp32")
    qlora = estimate_memory(SMOLLM, "qlora", 256, 4, precision="fp32")
    assert full.trainable_parameters == SMOLLM.parameters
    assert full.optimizer_states == 2 * full.gradients == 8 * SMOLLM.parameters
    assert lora.trainable_parameters == lora_parameters(SMOLLM, 16) < SMOLLM.parameters / 20
    assert qlora.weights < lora.weights / 2
    assert estimate_memory(SMOLLM, "lora", 256, 8).activations > lora.activations / 2
    checkpointed = estimate_memory(SMOLLM, "full", 256, 4, precision="fp32", gradient_checkpointing=True)
    assert checkpointed.activations < full.activations
    with pytest.raises(ValueError, match="unknown technique"):
        estimate_memory(SMOLLM, "no-such-technique", 256, 4)


def test_lora_parameter_count_matches_the_real_135m_adapter():
    # SmolLM2-135M, rank 16 on q,k,v,o,gate,up,down (value printed by PEFT for the real model)
    assert lora_parameters(SMOLLM, 16) == 4_884_480


def test_prefix_parameter_count_matches_the_real_135m_prefix():
    # 20 virtual tokens x 30 layers x keys and values x 3 key/value heads of 64 (value printed by PEFT)
    assert estimate_memory(SMOLLM, "prefix", 256, 4, num_virtual_tokens=20).trainable_parameters == 230_400


def test_hardware_table_7b_qlora_fits_16gb():
    rows = memory_table()
    by_key = {(row["model"], row["technique"]): row for row in rows}
    assert by_key[("mistral-7b", "qlora")]["smallest_gpu_gb"] == 16
    assert by_key[("mistral-7b", "full")]["estimated_gb"] > 80
    assert (
        by_key[("llama-3.2-1b-instruct", "qlora")]["estimated_gb"]
        < by_key[("llama-3.2-1b-instruct", "lora")]["estimated_gb"]
    )
    assert "| mistral-7b | qlora |" in format_memory_table(rows)


def test_estimate_close_to_measured_peak_on_tiny_model(tmp_path, tiny_llama_dir, embedded_model_dir):
    prepared = make_prepared(tmp_path / "prepared", embedded_model_dir, n_train=8, n_validation=4, max_length=64)
    overrides = isolated_overrides(
        tmp_path,
        run_name="memory",
        **{
            "model.name": str(tiny_llama_dir),
            "data.dataset": str(prepared),
            "technique": "lora",
            "technique.rank": 4,
            "training.precision": "fp32",
            "training.packing": "'off'",
            "training.max_steps": 2,
            "training.per_device_batch_size": 4,
            "training.eval_steps": 2,
            "training.save_steps": 2,
        },
    )
    result = train_in_subprocess(overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    measured_mb = json.loads((tmp_path / "runs" / "memory" / "manifest.json").read_text())["metrics"]["peak_memory_mb"]
    tiny = CatalogEntry(
        name="tiny",
        hub_id="tiny",
        architecture=LLAMA,
        parameters=791_120,
        num_layers=2,
        hidden_size=16,
        intermediate_size=32,
        num_attention_heads=2,
        num_key_value_heads=1,
        vocab_size=49152,
        max_context=512,
    )
    estimate = estimate_memory(tiny, "lora", 64, 4, precision="fp32", lora_rank=4, device="cpu")
    ratio = estimate.total_bytes / GB * 1024 / measured_mb
    # On a tiny model the peak is dominated by the process baseline (torch + transformers loaded):
    # 1.1 GB measured alone, but 2.1 GB was once measured inside the full suite on a shared machine,
    # so the lower bound is loose here; the 135M checks (benchmarks/memory_estimator.py) hold 25 %.
    assert 0.45 < ratio < 1.3, (estimate.breakdown_gb(), measured_mb)


def test_peak_memory_is_the_processs_own_not_its_parents():
    """A run started by a large process (the studio) reports its own peak, not the parent's (ru_maxrss would)."""
    import subprocess
    import sys

    held = bytearray(2048 * 2**20)
    held[::4096] = b"\x01" * len(held[::4096])  # make the parent's 2 GiB resident
    code = "from core.infrastructure.training.resources import peak_memory_mb; print(peak_memory_mb())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    del held
    child_peak_mb = float(result.stdout.strip().splitlines()[-1])
    assert 0 < child_peak_mb < 1500, child_peak_mb
