"""The training benchmark: GEMM shapes and FLOPs, medians, figures, MFU; the probe and the tuned TRL side on a tiny model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from test_training_support import TINY_LORA_RUN
from transformers import LlamaConfig

from benchmarks import gemm_limit, training_throughput
from benchmarks.gpu_checks import LLAMA_1B_SHAPE
from benchmarks.throughput_probe import ThroughputProbe
from core.infrastructure.training.precision import choose_precision

SMOLLM2_135M_SHAPE = {
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "vocab_size": 49152,
}


def test_non_embedding_parameters_match_the_published_models() -> None:
    """Llama-3.2-1B: 1.236 B parameters minus the 262.7 M tied embedding; SmolLM2-135M: 134.5 M minus 28.3 M."""
    assert gemm_limit.non_embedding_parameters(LlamaConfig(**LLAMA_1B_SHAPE)) == 973_078_528
    assert gemm_limit.non_embedding_parameters(LlamaConfig(**SMOLLM2_135M_SHAPE)) == 106_168_320


def test_lora_flops_per_token_is_four_n_plus_the_trained_lm_head() -> None:
    config = LlamaConfig(**SMOLLM2_135M_SHAPE)
    parameters = gemm_limit.non_embedding_parameters(config)
    assert gemm_limit.lora_flops_per_token(config, 0.0) == 4 * parameters
    assert gemm_limit.lora_flops_per_token(config, 0.5) == 4 * parameters + 2 * 576 * 49152


def test_training_shapes_cover_every_projection_and_the_lm_head() -> None:
    shapes = gemm_limit.training_shapes(LlamaConfig(**SMOLLM2_135M_SHAPE), 460, 80)
    by_name = {shape.name: shape for shape in shapes}
    assert (by_name["k_proj"].in_features, by_name["k_proj"].out_features, by_name["k_proj"].count) == (576, 192, 30)
    assert (by_name["down_proj"].rows, by_name["down_proj"].in_features) == (460, 1536)
    assert (by_name["lm_head"].rows, by_name["lm_head"].out_features, by_name["lm_head"].count) == (80, 49152, 1)
    step_flops = sum(shape.flops * shape.count for shape in shapes)
    assert step_flops == pytest.approx(
        gemm_limit.lora_flops_per_token(LlamaConfig(**SMOLLM2_135M_SHAPE), 80 / 460) * 460
    )


def test_measure_limit_times_tiny_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gemm_limit, "MINIMUM_SECONDS", 0.001)
    config = LlamaConfig(
        hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2, vocab_size=1000
    )
    limit = gemm_limit.measure_limit(config, 64, 16, "fp32")
    assert [row["name"] for row in limit["shapes"]][-1] == "lm_head"
    assert limit["aggregate_gflops"] > 0


def _side(tokens_per_second: float, memory: float, loss: float, tokens_per_step: float = 500.0) -> dict[str, Any]:
    return {
        "tokens_per_second": tokens_per_second,
        "tokens_per_step": tokens_per_step,
        "trained_positions_per_step": 90.0,
        "peak_memory_mb": memory,
        "final_loss": loss,
        "padding_waste": 0.0,
        "batch_size": 2,
    }


def _rounds() -> list[dict[str, Any]]:
    rounds = []
    for ours_speed in (300.0, 320.0, 310.0):
        measured = {
            "ours": _side(ours_speed, 2800, 0.330),
            "trl_tuned": _side(150.0, 3000, 0.332, tokens_per_step=480.0),
            "trl_defaults": _side(100.0, 2900, 0.600),
        }
        rounds.append(
            {"order": list(measured), "ratio": ours_speed / 150.0, "ratio_defaults": ours_speed / 100.0, **measured}
        )
    return rounds


def test_summary_reports_the_tuned_comparison_and_references() -> None:
    shared = {
        "model_path": "m",
        "precision": "bf16",
        "max_length": 256,
        "lora": {},
        "hyper": {},
        "trl_tuned_batch_size": 2,
        "eval_samples": 8,
    }
    outcome = training_throughput.summarize(_rounds(), shared, steps=4, quick=True)
    figures = {figure["name"]: figure for figure in outcome["figures"]}
    speed = figures["effective tokens/s vs tuned TRL SFTTrainer (median ratio)"]
    assert speed["value"].startswith("2.07x") and speed["met"] is True
    assert figures["real tokens per optimizer step, ours vs tuned TRL (measured)"]["value"] == "500 vs 480 (ratio 1.04)"
    assert figures["peak memory MB, ours vs tuned TRL"]["met"] is True
    assert figures["final response loss, ours vs tuned TRL (relative difference)"]["met"] is True
    assert outcome["medians"]["ours_tokens_per_step"] == 500.0


def test_mfu_figure_divides_model_flops_by_the_limit() -> None:
    mfu = {
        "flops_per_token": 4.5e8,
        "gemm_limit": {"aggregate_gflops": 1000.0, "precision": "bf16"},
        "utilisation": {"ours": 0.135, "trl_tuned": 0.07},
    }
    figure = training_throughput.mfu_figure(mfu)
    assert figure["value"].startswith("ours 13.5%, tuned TRL 7.0%")
    assert figure["met"] is False


@pytest.fixture(scope="module")
def tiny_prepared(tmp_path_factory: pytest.TempPathFactory, embedded_model_dir: Path) -> Path:
    from test_training_support import make_prepared

    return make_prepared(tmp_path_factory.mktemp("prepared") / "synthetic", embedded_model_dir, n_validation=4)


def test_probe_counts_our_trained_positions_from_logits_to_keep(make_settings, tiny_llama_dir, tiny_prepared) -> None:
    from core.application.train import train

    settings = make_settings(
        **{
            "model.name": str(tiny_llama_dir),
            "data.dataset": str(tiny_prepared),
            **TINY_LORA_RUN,
            "training.max_steps": 3,
        }
    )
    probe = ThroughputProbe([], pad_token_id=0)
    train(settings, extra_callbacks=[probe])
    summary = probe.summary()
    assert summary["padding_waste"] == 0.0
    assert 0 < summary["trained_positions_per_step"] < summary["tokens_per_step"]


def test_tuned_trl_side_trains_padding_free_on_cpu(tmp_path: Path, tiny_llama_dir: Path, tiny_prepared: Path) -> None:
    """The TRL side passes use_cpu=True (bf16 on a CPU is rejected otherwise) and packs padding-free."""
    from benchmarks.trl_sides import run_trl_tuned, tuned_batch_size

    spec = {
        "side": "trl_tuned",
        "work_dir": str(tmp_path),
        "data_dir": str(tiny_prepared),
        "model_path": str(tiny_llama_dir),
        "eval_samples": 2,
        "pad_token_id": 0,
        "precision": choose_precision("auto", torch.device("cpu")).name,
        "cuda": False,
        "max_length": 128,
        "trl_tuned_batch_size": tuned_batch_size(tiny_prepared, 4, 128)["batch_size"],
        "lora": {"rank": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
        "hyper": {"max_steps": 3, "learning_rate": 1e-3, "lr_scheduler": "constant", "warmup": 0.0, "seed": 0},
    }
    result = run_trl_tuned(spec)
    assert result["padding_free"] and result["packing"] and not result["gradient_checkpointing"]
    assert result["padding_waste"] == 0.0
    assert 0 < result["trained_positions_per_step"] < result["tokens_per_step"]
    assert result["final_loss"] is not None


def test_chunked_loss_benchmark_sides_train_to_the_same_loss() -> None:
    from benchmarks import chunked_loss

    chunked, whole = chunked_loss.child("on", 64), chunked_loss.child("off", 64)
    assert chunked["precision"] == whole["precision"] == choose_precision("auto", torch.device("cpu")).name
    assert abs(chunked["loss"] - whole["loss"]) <= 1e-3 * whole["loss"]
    assert chunked["step_s"] > 0 and chunked["peak_rss_mb"] > 0
