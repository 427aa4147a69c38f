"""Helpers shared by the training tests (no tests here): small prepared datasets and subprocess runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]

COLORS = ["red", "blue", "green", "yellow", "purple", "orange", "black", "white"]
ANIMALS = ["cat", "dog", "horse", "owl", "fox", "bear", "frog", "whale"]


def synthetic_pairs(count: int, offset: int = 0, answer_repeat: int = 1) -> list[tuple[str, str]]:
    """Instruction/answer pairs with a fixed, easily learned answer style."""
    pairs = []
    for index in range(offset, offset + count):
        color, animal = COLORS[index % len(COLORS)], ANIMALS[(index * 3) % len(ANIMALS)]
        number = index % 9 + 1
        question = f"Describe item {index}: a {color} {animal} with {number} spots."
        answer = " ".join([f"Item {index} is a {color} {animal}. It has {number} spots."] * answer_repeat) + " Done."
        pairs.append((question, answer))
    return pairs


def make_prepared(
    directory: Path,
    tokenizer_dir: Path,
    n_train: int = 24,
    n_validation: int = 8,
    max_length: int = 128,
    answer_repeat: int = 1,
) -> Path:
    """Tokenizes synthetic conversations with the model's chat template into a prepared dataset."""
    from core.domain.records import Conversation, Message
    from core.infrastructure.data.prepared import save_prepared
    from core.infrastructure.data.tokenize import tokenize_conversation
    from core.infrastructure.models.loading import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_dir)
    conversations: dict[str, list[Conversation]] = {}
    tokenized: dict[str, list[dict[str, Any]]] = {}
    for split, pairs in (
        ("train", synthetic_pairs(n_train, answer_repeat=answer_repeat)),
        ("validation", synthetic_pairs(n_validation, offset=1000, answer_repeat=answer_repeat)),
        ("test", synthetic_pairs(4, offset=2000, answer_repeat=answer_repeat)),
    ):
        conversations[split] = [
            Conversation(
                messages=[Message(role="user", content=question), Message(role="assistant", content=answer)],
                source=f"synthetic[{index}]",
            )
            for index, (question, answer) in enumerate(pairs)
        ]
        rows = []
        for conversation in conversations[split]:
            example = tokenize_conversation(tokenizer, conversation, max_length)
            rows.append({"input_ids": example.input_ids, "labels": example.labels})
        tokenized[split] = rows
    fingerprint = f"synthetic-{n_train}-{n_validation}-{max_length}-{answer_repeat}"
    save_prepared(directory, fingerprint, tokenizer.chat_template, conversations, tokenized, {"source": "synthetic"})
    return directory


def run_python(code: str, *, timeout: int = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Runs Python code in a fresh interpreter from the repository root (one torch thread)."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=timeout
    )


TRAIN_SCRIPT = """
import json, os, sys, torch
torch.set_num_threads(1)
from core.domain.config import load_settings
from core.application.train import train
from core.logging_setup import configure_logging
configure_logging("WARNING")
overrides = json.loads(sys.argv[1] if len(sys.argv) > 1 else os.environ["TRAIN_OVERRIDES"])
callbacks = []
kill_step = int(os.environ.get("KILL_AT_STEP", "0"))
if kill_step:
    from transformers import TrainerCallback

    class Kill(TrainerCallback):
        def on_substep_end(self, args, state, control, **kwargs):
            if state.global_step + 1 == kill_step:
                os._exit(17)  # die in the middle of gradient accumulation of step kill_step

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == kill_step and args.gradient_accumulation_steps == 1:
                os._exit(17)

    callbacks.append(Kill())
train(load_settings(None, overrides, read_environment=False), extra_callbacks=callbacks)
"""


def train_in_subprocess(overrides: dict[str, Any], kill_at_step: int = 0, timeout: int = 300):
    """Trains in a new process; ``kill_at_step`` makes the process die abruptly during that step."""
    env = {"TRAIN_OVERRIDES": json.dumps(overrides), "KILL_AT_STEP": str(kill_at_step)}
    return run_python(TRAIN_SCRIPT, timeout=timeout, env=env)


def isolated_overrides(tmp_path: Path, **values: Any) -> dict[str, Any]:
    """Nested overrides with every path under ``tmp_path`` and tracking off."""
    from core.domain.config import parse_overrides

    model_cache = os.environ.get("FINETUNE_PATHS__MODEL_CACHE", str(REPO_ROOT / ".cache" / "models"))
    pairs = [
        f"paths.runs_dir={tmp_path / 'runs'}",
        f"paths.model_cache={model_cache}",
        f"paths.data_dir={tmp_path / 'data'}",
        f"paths.registry_dir={tmp_path / 'registry'}",
        "monitoring.tensorboard=false",
        *(f"{key}={value}" for key, value in values.items()),
    ]
    return parse_overrides(pairs)


TINY_LORA_RUN = {
    "technique": "lora",
    "technique.rank": 4,
    "run_name": "tiny",
    "training.max_steps": 4,
    "training.per_device_batch_size": 4,
    "training.eval_batch_size": 8,
    "training.learning_rate": 1e-2,
    "training.eval_steps": 2,
    "training.save_steps": 2,
}
"""Overrides of the short LoRA run the training tests start from (model and data added by the fixture)."""

THREE_STEP_FULL_RUN = {
    "technique": "full",
    "training.precision": "fp32",
    "training.max_steps": 3,
    "training.per_device_batch_size": 4,
    "training.learning_rate": 1e-3,
    "training.eval_steps": 3,
    "training.save_steps": 3,
}
"""Overrides of the 3-step fp32 Full run whose losses two variants of a setting must both log."""
