"""End-to-end inference on the embedded SmolLM2-135M-Instruct model (slow)."""

from __future__ import annotations

import json

import pytest
from conftest import MODEL_CACHE
from inference_run_factory import make_run

from core.domain.config import settings_from_dict

pytestmark = pytest.mark.slow


def test_base_model_streams_a_correct_answer(embedded_model_dir):
    from core.infrastructure.inference.loading import load_for_inference
    from core.infrastructure.inference.predictor import Predictor

    settings = settings_from_dict({"paths": {"model_cache": str(MODEL_CACHE)}})
    loaded = load_for_inference("smollm2-135m-instruct", settings)
    stream = Predictor(loaded).stream(
        [{"role": "user", "content": "What is the capital of France?"}], max_new_tokens=40
    )
    chunks = list(stream)
    answer = "".join(chunks)
    assert "Paris" in answer and len(chunks) > 1
    assert stream.finish_reason == "stop" and stream.completion_tokens < 40  # ended at <|im_end|>


def test_lora_merge_on_the_embedded_model_is_within_tolerance(embedded_model_dir, tmp_path):
    from core.application.merge import merge

    make_run(tmp_path / "runs", "smol-lora", embedded_model_dir, "lora", seed=1, scale=0.02)
    settings = settings_from_dict({"paths": {"runs_dir": str(tmp_path / "runs"), "model_cache": str(MODEL_CACHE)}})
    merged = merge(settings, "smol-lora")
    verification = json.loads((merged / "lineage.json").read_text())["verification"]
    assert verification["atol_rtol"] == [1e-4, 1e-5] and verification["max_abs_diff"] <= verification["tolerance"]
    assert verification["tolerance"] < 1e-3
