"""IA3, added through the technique registry alone: it trains, evaluates, merges, compares and chats.

The commit that added IA3 touched three source files (its spec, its implementation, one registry
line); everything below works because the rest of the product reads the registry.
"""

from __future__ import annotations

import json

from test_training_support import make_prepared

from core.domain.catalog import CATALOG, EMBEDDED_MODEL_NAME
from core.domain.memory import estimate_memory
from core.domain.techniques import technique_names, traits_for


def test_ia3_is_registered_with_its_traits_and_memory_rule():
    assert "ia3" in technique_names()
    traits = traits_for("ia3")
    assert traits.can_merge and traits.saves_adapter_only and traits.peft_type == "IA3"
    # keys (3 heads x 64) + values (3 x 64) + down_proj inputs (1,536) on 30 layers: PEFT's count for the real model
    estimate = estimate_memory(CATALOG[EMBEDDED_MODEL_NAME], "ia3", 256, 4, precision="fp32")
    assert estimate.trainable_parameters == 57_600


def test_ia3_trains_evaluates_merges_compares_and_chats(make_settings, tiny_llama_dir, embedded_model_dir, tmp_path):
    from core.application.compare import compare
    from core.application.evaluate import evaluate
    from core.application.merge import merge
    from core.application.train import train
    from core.infrastructure.inference.loading import load_for_inference
    from core.infrastructure.inference.predictor import Predictor

    prepared = make_prepared(tmp_path / "prepared", embedded_model_dir, n_train=16)
    settings = make_settings(
        **{
            "model.name": str(tiny_llama_dir),
            "data.dataset": str(prepared),
            "technique": "ia3",
            "run_name": "tiny-ia3",
            "training.max_steps": 4,
            "training.per_device_batch_size": 4,
            "training.learning_rate": 5e-2,
            "training.eval_steps": 2,
            "training.save_steps": 2,
            "evaluation.max_samples": 3,
            "evaluation.max_new_tokens": 4,
        }
    )
    run_dir = train(settings)
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["status"] == "completed" and manifest["technique"]["name"] == "ia3"
    adapter = json.loads((run_dir / "final" / "adapter_config.json").read_text(encoding="utf-8"))
    assert adapter["peft_type"] == "IA3"
    metrics = manifest["metrics"]
    assert metrics["final_eval_loss"] < metrics["initial_eval_loss"]
    assert manifest["trainable_parameters"] == 2 * (16 + 16 + 128)  # 2 layers x (k, v outputs + down_proj inputs)

    evaluation = evaluate(settings, run="tiny-ia3", show_progress=False)
    assert evaluation["metrics"]["eval_loss"] > 0

    merged = merge(settings, "tiny-ia3")
    lineage = json.loads((merged / "lineage.json").read_text(encoding="utf-8"))
    assert lineage["technique"] == "ia3" and (merged / "config.json").is_file()
    assert lineage["verification"]["max_abs_diff"] <= lineage["verification"]["tolerance"]

    report = compare(settings, ["tiny-ia3"], output=tmp_path / "report")
    rows = json.loads((report / "comparison.json").read_text(encoding="utf-8"))["models"]
    assert [row["technique"] for row in rows if not row["is_base"]] == ["ia3"]

    predictor = Predictor(load_for_inference("tiny-ia3", settings))
    [answer] = predictor.generate([[{"role": "user", "content": "Hi"}]], max_new_tokens=3)
    assert isinstance(answer, str)
