"""Shared fixtures: the embedded 135M model, tiny in-process models per family, isolated settings.

Tiny models (two layers, hidden size 64; llama, mistral and phi with four query heads and one
key/value head) use the
embedded model's real tokenizer and chat template, so data preparation, masking and templates are
exercised exactly as in production while each test step takes milliseconds. Their linear layers
mix shapes that bitsandbytes' packed AVX512-BF16 CPU kernel runs (q/o and MLP projections) with
ones it cannot (k/v: 16 outputs, not a multiple of 32), so a 4-bit load meets both cases.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL_CACHE = Path(os.environ.get("FINETUNE_PATHS__MODEL_CACHE", REPO_ROOT / ".cache" / "models"))
TINY_FAMILIES = ("llama", "mistral", "phi", "gpt2")


def pytest_configure(config: pytest.Config) -> None:
    """Limits torch threads so parallel work on a 2-core machine stays predictable."""
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def embedded_model_dir() -> Path:
    """Local safetensors checkpoint of SmolLM2-135M-Instruct (converted once from the GGUF)."""
    from core.domain.catalog import CATALOG, EMBEDDED_MODEL_NAME
    from core.infrastructure.models.embedded import ensure_embedded_model

    return ensure_embedded_model(CATALOG[EMBEDDED_MODEL_NAME], MODEL_CACHE)


def build_tiny_model(family: str, tokenizer_dir: Path, destination: Path, seed: int = 0) -> Path:
    """Builds and saves a randomly initialised tiny model of a family with the embedded tokenizer.

    Args:
        family: ``llama``, ``mistral``, ``phi`` or ``gpt2``.
        tokenizer_dir: Directory of the tokenizer to save beside the model.
        destination: Output directory.
        seed: Initialisation seed.

    Returns:
        The destination directory.
    """
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        GPT2Config,
        LlamaConfig,
        MistralConfig,
        PhiConfig,
    )

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    special = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    common: dict[str, Any] = {"vocab_size": len(tokenizer), **special}
    if family == "llama":
        config = LlamaConfig(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=1,
            max_position_embeddings=512,
            tie_word_embeddings=True,
            **common,
        )
    elif family == "mistral":
        config = MistralConfig(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=1,
            max_position_embeddings=512,
            sliding_window=None,
            **common,
        )
    elif family == "phi":
        config = PhiConfig(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=1,
            max_position_embeddings=512,
            **common,
        )
    elif family == "gpt2":
        config = GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=512, **common)
    else:
        raise ValueError(f"unknown tiny family {family!r}")
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    destination.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(destination, safe_serialization=True)
    tokenizer.save_pretrained(destination)
    return destination


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory: pytest.TempPathFactory, embedded_model_dir: Path) -> dict[str, Path]:
    """Tiny llama, mistral, phi and gpt2 checkpoints (see the module docstring), keyed by family."""
    root = tmp_path_factory.mktemp("tiny-models")
    return {family: build_tiny_model(family, embedded_model_dir, root / family) for family in TINY_FAMILIES}


@pytest.fixture
def tiny_llama_dir(tiny_model_dirs: dict[str, Path]) -> Path:
    """The tiny llama checkpoint."""
    return tiny_model_dirs["llama"]


@pytest.fixture
def make_settings(tmp_path: Path):
    """Factory of validated settings isolated from the environment, with paths under ``tmp_path``.

    Usage: ``settings = make_settings(technique="lora", **{"model.name": str(tiny_llama_dir)})``.
    Keys are what the CLI accepts as overrides.
    """
    from core.domain.config import load_settings, parse_overrides

    def factory(config_file: str | Path | None = None, **overrides: Any):
        pairs = [
            f"paths.runs_dir={tmp_path / 'runs'}",
            f"paths.model_cache={MODEL_CACHE}",
            f"paths.data_dir={tmp_path / 'data'}",
            f"paths.registry_dir={tmp_path / 'registry'}",
            "monitoring.tensorboard=false",
        ]
        nested = parse_overrides(pairs)
        extra = parse_overrides(
            [f"{key}={value}" for key, value in overrides.items() if not isinstance(value, list | dict)]
        )
        for key, value in overrides.items():
            if isinstance(value, list | dict):
                section, _, field = key.partition(".")
                extra.setdefault(section, {})[field] = value
        for section, values in extra.items():
            if isinstance(values, dict) and isinstance(nested.get(section), dict):
                nested[section] = {**nested[section], **values}
            else:
                nested[section] = values
        return load_settings(config_file, nested, read_environment=False)

    return factory


def stop_process(process, timeout_s: float = 20) -> None:
    """Terminates a child process started by a test, killing it if it does not exit in time."""
    import subprocess

    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
