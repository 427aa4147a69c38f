"""The train use case on tiny models: run-directory contract, stop requests, NaN policy, monitoring."""

from __future__ import annotations

import json
import math
import struct
import threading
from pathlib import Path

import pytest
import torch
from loguru import logger
from safetensors.torch import load_file
from test_training_support import TINY_LORA_RUN, make_prepared
from transformers import TrainerCallback

from core.application.train import train
from core.domain.errors import CheckpointError
from core.domain.manifest import RunManifest, read_metrics
from core.infrastructure.training.checkpoints import (
    CHECKPOINT_MANIFEST,
    check_resumable,
    newest_complete_checkpoint,
    sha256_file,
    verify_checkpoint,
)
from core.infrastructure.training.trainer import TrainingDivergedError

TRAIN_ROW_KEYS = {"step", "epoch", "loss", "learning_rate", "grad_norm", "tokens_per_second", "elapsed_s", "memory_mb"}


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory, embedded_model_dir) -> Path:
    return make_prepared(tmp_path_factory.mktemp("prepared") / "synthetic", embedded_model_dir, n_train=16)


@pytest.fixture
def tiny_settings(make_settings, tiny_llama_dir, prepared_dir):
    def factory(**overrides):
        values = {"model.name": str(tiny_llama_dir), "data.dataset": str(prepared_dir), **TINY_LORA_RUN, **overrides}
        return make_settings(**values)

    return factory


class CallAt(TrainerCallback):
    """Calls ``action(model)`` at the beginning of a given optimizer step (fault/stop injection)."""

    def __init__(self, step: int, action) -> None:
        self.step, self.action, self.handles = step, action, []

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step + 1 == self.step:
            self.handles.append(self.action(kwargs["model"]))

    def on_step_end(self, args, state, control, **kwargs):
        for handle in self.handles:
            if hasattr(handle, "remove"):
                handle.remove()
        self.handles = []


def nan_logits(model):
    return model.get_output_embeddings().register_forward_hook(lambda module, inputs, output: output * math.nan)


def test_run_directory_contract(tiny_settings):
    settings = tiny_settings(
        **{"training.sample_every_steps": 2, "monitoring.tensorboard": True},
        **{"training.sample_prompts": ["Describe item 3."]},
    )
    run_dir = train(settings)

    rows = read_metrics(run_dir)
    assert rows[0]["step"] == 0 and "eval_loss" in rows[0], "an evaluation before the first update"
    train_rows = [row for row in rows if "loss" in row]
    assert [row["step"] for row in train_rows] == [1, 2, 3, 4]
    assert all(set(row) == TRAIN_ROW_KEYS for row in train_rows)
    assert all(row["tokens_per_second"] > 0 and row["memory_mb"] > 0 for row in train_rows)
    eval_rows = [row for row in rows if "eval_loss" in row]
    assert [row["step"] for row in eval_rows] == [0, 2, 4]
    assert all(row["eval_perplexity"] == pytest.approx(math.exp(row["eval_loss"])) for row in eval_rows)
    sample_rows = [row for row in rows if "samples" in row]
    assert [row["step"] for row in sample_rows] == [2, 4]
    assert sample_rows[0]["samples"][0]["prompt"] == "Describe item 3." and "output" in sample_rows[0]["samples"][0]
    assert rows[-1] == {"step": 4, "event": "end", "status": "completed"}

    manifest = RunManifest.load(run_dir)
    assert manifest.status == "completed" and manifest.final_path == "final"
    assert 0 < manifest.trainable_parameters < manifest.total_parameters
    metrics = manifest.metrics
    assert metrics["initial_eval_loss"] == eval_rows[0]["eval_loss"]
    assert metrics["final_eval_loss"] == eval_rows[-1]["eval_loss"] < metrics["initial_eval_loss"]
    assert metrics["best_eval_loss"] == min(row["eval_loss"] for row in eval_rows)
    for key in ("peak_memory_mb", "tokens_per_second", "train_runtime_s"):
        assert metrics[key] > 0
    assert manifest.technique["name"] == "lora" and manifest.technique["saves_adapter_only"]
    assert manifest.data_fingerprint and manifest.chat_template and manifest.versions["torch"]
    assert Path(manifest.base_model_path).is_dir()

    final = run_dir / "final"
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "chat_template.jinja"):
        assert (final / name).is_file(), name
    assert not (final / "training_args.bin").exists()
    assert (run_dir / "chat_template.jinja").read_text() == manifest.chat_template
    assert (run_dir / "train.log").stat().st_size > 0

    checkpoints = sorted((run_dir / "checkpoints").glob("checkpoint-*"))
    assert [path.name for path in checkpoints] == ["checkpoint-2", "checkpoint-4"]
    for checkpoint in checkpoints:
        assert verify_checkpoint(checkpoint) is None
        sealed = json.loads((checkpoint / CHECKPOINT_MANIFEST).read_text())["files"]
        for name in (
            "adapter_model.safetensors",
            "optimizer.pt",
            "scheduler.pt",
            "rng_state.pth",
            "trainer_state.json",
            "training_config.json",
            "data_position.json",
        ):
            assert sealed[name]["sha256"] == sha256_file(checkpoint / name)
        assert not (checkpoint / "training_args.bin").exists()
        assert json.loads((checkpoint / "data_position.json").read_text())["global_step"] == int(checkpoint.name[11:])

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert {"train/loss", "eval/loss", "train/learning_rate"} <= set(events.Tags()["scalars"])
    assert [event.step for event in events.Scalars("train/loss")] == [1, 2, 3, 4]
    assert events.Scalars("train/loss")[-1].value == pytest.approx(train_rows[-1]["loss"], rel=1e-6)

    # damaged checkpoints are detected and skipped with a clear log line
    messages: list[str] = []
    sink = logger.add(lambda message: messages.append(str(message)), level="WARNING")
    try:
        newest = run_dir / "checkpoints" / "checkpoint-4"
        weights = newest / "adapter_model.safetensors"
        weights.write_bytes(weights.read_bytes()[:-10])
        assert newest_complete_checkpoint(run_dir / "checkpoints") == run_dir / "checkpoints" / "checkpoint-2"
        (run_dir / "checkpoints" / "checkpoint-2" / CHECKPOINT_MANIFEST).unlink()
        assert newest_complete_checkpoint(run_dir / "checkpoints") is None
    finally:
        logger.remove(sink)
    assert any("checkpoint-4" in message and "truncated" in message for message in messages)
    assert any("checkpoint-2" in message and "incomplete" in message for message in messages)


@pytest.mark.parametrize("how", ["event", "file"])
def test_stop_request_saves_checkpoint_then_resume_completes(how, tiny_settings):
    settings = tiny_settings(**{"training.max_steps": 6, "training.save_steps": 4, "training.eval_steps": 4})
    stop_event = threading.Event()
    run_dir = Path(settings.paths.runs_dir) / "tiny"

    def request_stop(model):
        if how == "event":
            stop_event.set()
        else:
            (run_dir / "STOP").write_text("stop")

    train(settings, stop_event=stop_event, extra_callbacks=[CallAt(3, request_stop)])
    manifest = RunManifest.load(run_dir)
    assert manifest.status == "stopped"
    assert [path.name for path in (run_dir / "checkpoints").glob("checkpoint-*")] == ["checkpoint-3"]
    assert max(row["step"] for row in read_metrics(run_dir)) == 3
    assert (run_dir / "final" / "adapter_model.safetensors").is_file()

    # a changed configuration is refused, naming every changed key
    changed = tiny_settings(**{"training.max_steps": 6, "training.learning_rate": 5e-3, "technique.rank": 8})
    with pytest.raises(CheckpointError) as error:
        check_resumable(run_dir / "checkpoints" / "checkpoint-3", changed.to_plain_dict())
    assert "training.learning_rate" in str(error.value) and "technique.rank" in str(error.value)
    assert "training.max_steps" not in str(error.value)

    train(tiny_settings(**{"training.max_steps": 6, "training.save_steps": 4, "training.eval_steps": 4}))
    manifest = RunManifest.load(run_dir)
    assert manifest.status == "completed" and manifest.metrics["global_step"] == 6
    steps = [row["step"] for row in read_metrics(run_dir) if "loss" in row]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert not (run_dir / "STOP").exists()


def test_training_a_completed_run_again_is_a_no_op_until_the_budget_is_raised(tiny_settings):
    run_dir = train(tiny_settings(**{"training.max_steps": 2}))
    metrics_before = (run_dir / "metrics.jsonl").read_text()
    manifest_before = (run_dir / "manifest.json").read_text()

    train(tiny_settings(**{"training.max_steps": 2}))  # e.g. `make train-lora` twice
    assert (run_dir / "metrics.jsonl").read_text() == metrics_before  # no extra step past the budget
    assert (run_dir / "manifest.json").read_text() == manifest_before
    assert [path.name for path in (run_dir / "checkpoints").glob("checkpoint-*")] == ["checkpoint-2"]

    train(tiny_settings(**{"training.max_steps": 4}))  # a raised budget continues from the last checkpoint
    assert [row["step"] for row in read_metrics(run_dir) if "loss" in row] == [1, 2, 3, 4]
    assert RunManifest.load(run_dir).metrics["global_step"] == 4


def test_changed_config_refused_by_train(tiny_settings):
    train(tiny_settings(**{"training.max_steps": 2}))
    with pytest.raises(CheckpointError, match=r"training\.weight_decay"):
        train(tiny_settings(**{"training.max_steps": 4, "training.weight_decay": 0.1}))


def nan_hidden_states(model):
    """NaN from the final norm on: the output layer keeps no hook, so the chunked loss stays in use."""
    norm = model.get_base_model().model.norm
    return norm.register_forward_hook(lambda module, inputs, output: output * math.nan)


@pytest.mark.parametrize("poison", [nan_logits, nan_hidden_states], ids=["logits", "hidden-states"])
def test_nan_loss_skips_the_update_and_counts_it(tiny_settings, poison):
    settings = tiny_settings(**{"training.nan_policy": "skip", "training.eval_steps": 4, "training.save_steps": 4})
    weights_at_step_1 = {}

    def remember_then_poison(model):
        weights_at_step_1.update({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad})
        return poison(model)

    class CheckUnchanged(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                current = {n: p for n, p in kwargs["model"].named_parameters() if p.requires_grad}
                assert all(torch.equal(current[name], value) for name, value in weights_at_step_1.items())

    run_dir = train(settings, extra_callbacks=[CallAt(2, remember_then_poison), CheckUnchanged()])
    manifest = RunManifest.load(run_dir)
    assert manifest.status == "completed" and manifest.metrics["skipped_updates"] == 1
    rows = [row for row in read_metrics(run_dir) if "loss" in row]
    assert rows[1].get("skipped_updates") == 1 and math.isnan(rows[1]["grad_norm"])
    adapter = load_file(run_dir / "final" / "adapter_model.safetensors")
    assert all(torch.isfinite(tensor).all() for tensor in adapter.values())


def test_nan_loss_stops_with_a_clear_error(tiny_settings):
    settings = tiny_settings(**{"training.nan_policy": "stop"})
    with pytest.raises(TrainingDivergedError, match=r"step 2.*nan_policy=stop"):
        train(settings, extra_callbacks=[CallAt(2, nan_logits)])
    manifest = RunManifest.load(Path(settings.paths.runs_dir) / "tiny")
    assert manifest.status == "failed" and "TrainingDivergedError" in manifest.error


def test_early_stopping_on_eval_loss(tiny_settings):
    settings = tiny_settings(
        **{
            "training.max_steps": 12,
            "training.eval_steps": 1,
            "training.save_steps": 1,
            "training.learning_rate": 1e-7,
            "training.early_stopping_patience": 2,
            "training.early_stopping_threshold": 0.5,
        }
    )
    run_dir = train(settings)
    manifest = RunManifest.load(run_dir)
    assert manifest.metrics["global_step"] <= 4 and manifest.metrics["early_stopped"]
    assert manifest.metrics["best_checkpoint"] is not None


def wandb_records(path: Path):
    """Yields the protobuf records of a ``.wandb`` transaction log (LevelDB log format)."""
    from wandb.proto import wandb_internal_pb2

    data, position, pending = path.read_bytes(), 7, b""
    while position + 7 <= len(data):
        left = 32768 - position % 32768
        if left < 7:
            position += left
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if length == 0 and kind == 0:
            position += left
            continue
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending + chunk if kind == 4 else chunk)
            pending = b""
            yield record


def test_wandb_offline_run_files(tiny_settings):
    run_dir = train(tiny_settings(**{"monitoring.wandb": True, "monitoring.wandb_mode": "offline"}))
    logs = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(logs) == 1
    history_keys = set()
    for record in wandb_records(logs[0]):
        if record.WhichOneof("record_type") == "history":
            history_keys.update(item.key or "/".join(item.nested_key) for item in record.history.item)
    assert {"train/loss", "eval/loss", "train/learning_rate"} <= history_keys
