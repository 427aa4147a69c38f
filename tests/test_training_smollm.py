"""Short real runs of every technique on the embedded SmolLM2-135M: held-out loss goes down."""

from __future__ import annotations

import pytest
from test_training_support import make_prepared

from core.application.train import train
from core.domain.manifest import RunManifest, read_metrics

LEARNING_RATES = {"full": 1e-4, "lora": 2e-3, "qlora": 2e-3, "prefix": 3e-2}


@pytest.fixture(scope="module")
def prepared_135m(tmp_path_factory, embedded_model_dir):
    return make_prepared(
        tmp_path_factory.mktemp("smollm") / "synthetic", embedded_model_dir, n_train=24, n_validation=6
    )


@pytest.mark.slow
@pytest.mark.parametrize("technique", ["full", "lora", "qlora", "prefix"])
def test_short_run_lowers_eval_loss(technique, make_settings, prepared_135m):
    overrides = {
        "model.name": "smollm2-135m-instruct",
        "data.dataset": str(prepared_135m),
        "technique": technique,
        "run_name": f"smollm-{technique}",
        "training.max_steps": 4,
        "training.per_device_batch_size": 4,
        "training.eval_batch_size": 6,
        "training.learning_rate": LEARNING_RATES[technique],
        "training.warmup_ratio": 0.0,
        "training.eval_steps": 4,
        "training.save_steps": 4,
    }
    if technique == "qlora":
        overrides["technique.compute_dtype"] = "float32"
    run_dir = train(make_settings(**overrides))
    manifest = RunManifest.load(run_dir)
    assert manifest.status == "completed"
    evals = [row["eval_loss"] for row in read_metrics(run_dir) if "eval_loss" in row]
    assert evals[-1] < evals[0] - 0.05, evals
    assert manifest.metrics["final_eval_loss"] < manifest.metrics["initial_eval_loss"]
