"""DDP: the same run under ``accelerate launch`` with 2 CPU processes (gloo) matches one process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from test_training_support import REPO_ROOT, isolated_overrides, make_prepared, train_in_subprocess

from core.domain.manifest import RunManifest, read_metrics


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def as_cli_pairs(nested: dict, prefix: str = "") -> list[str]:
    pairs = []
    for key, value in nested.items():
        if isinstance(value, dict):
            pairs += as_cli_pairs(value, f"{prefix}{key}.")
        else:
            pairs.append(f"{prefix}{key}={value}")
    return pairs


def test_two_process_ddp_matches_single_process(tmp_path, tiny_llama_dir, embedded_model_dir):
    prepared = make_prepared(tmp_path / "prepared", embedded_model_dir, n_train=16, n_validation=4)
    common = {
        "model.name": str(tiny_llama_dir),
        "data.dataset": str(prepared),
        "technique": "lora",
        "technique.rank": 4,
        "technique.dropout": 0.0,
        "training.precision": "fp32",
        "training.group_by_length": False,
        "training.max_steps": 3,
        "training.learning_rate": 5e-3,
        "training.eval_steps": 3,
        "training.save_steps": 3,
    }
    single = isolated_overrides(tmp_path, run_name="single", **common, **{"training.per_device_batch_size": 4})
    result = train_in_subprocess(single)
    assert result.returncode == 0, result.stderr[-3000:]

    distributed = isolated_overrides(tmp_path, run_name="ddp", **common, **{"training.per_device_batch_size": 2})
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
        "-m", "core.cli", "train", *as_cli_pairs(distributed),
    ]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT), "CUDA_VISIBLE_DEVICES": ""}
    launched = subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=300)
    assert launched.returncode == 0, launched.stderr[-4000:]

    single_dir, ddp_dir = tmp_path / "runs" / "single", tmp_path / "runs" / "ddp"
    assert RunManifest.load(ddp_dir).hardware.get("device") == "cpu"
    assert "world_size" in (ddp_dir / "checkpoints" / "checkpoint-3" / "data_position.json").read_text()
    assert '"world_size": 2' in (ddp_dir / "checkpoints" / "checkpoint-3" / "data_position.json").read_text()
    single_losses = [row["loss"] for row in read_metrics(single_dir) if "loss" in row]
    ddp_losses = [row["loss"] for row in read_metrics(ddp_dir) if "loss" in row]
    assert len(single_losses) == len(ddp_losses) == 3
    assert ddp_losses == pytest.approx(single_losses, rel=1e-4)
    single_eval = [row["eval_loss"] for row in read_metrics(single_dir) if "eval_loss" in row]
    ddp_eval = [row["eval_loss"] for row in read_metrics(ddp_dir) if "eval_loss" in row]
    assert ddp_eval == pytest.approx(single_eval, rel=1e-4)
    single_adapter = load_file(single_dir / "final" / "adapter_model.safetensors")
    ddp_adapter = load_file(ddp_dir / "final" / "adapter_model.safetensors")
    for name, tensor in single_adapter.items():
        torch.testing.assert_close(ddp_adapter[name], tensor, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["ddp.yaml", "fsdp.yaml", "deepspeed-zero3.yaml"])
def test_shipped_accelerate_configs_are_valid(name):
    from accelerate.commands.config.config_args import ClusterConfig

    path = REPO_ROOT / "examples" / "accelerate" / name
    config = ClusterConfig.from_yaml_file(str(path))
    assert config.num_processes == yaml.safe_load(Path(path).read_text())["num_processes"]


def test_an_fsdp_config_on_a_cpu_machine_is_said_to_run_as_ddp(monkeypatch):
    """accelerate applies FSDP only across GPUs; on a CPU the run says so instead of passing silently."""
    from loguru import logger

    from core.infrastructure.training.setup import process_state

    if torch.cuda.is_available():
        pytest.skip("the warning is for CPU machines")
    messages: list[str] = []
    sink = logger.add(lambda message: messages.append(str(message)), level="WARNING")
    try:
        monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
        process_state()
        monkeypatch.setenv("ACCELERATE_USE_FSDP", "false")
        process_state()
    finally:
        logger.remove(sink)
    assert len(messages) == 1
    assert "asks for FSDP" in messages[0] and "one process" in messages[0] and "whole model" in messages[0]
