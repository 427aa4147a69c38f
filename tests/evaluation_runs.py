"""Builders of small prepared datasets and run directories for the evaluation and compare tests.

Run directories are built the way training leaves them (manifest, metrics.jsonl, final/ with
the adapter or model and the tokenizer), from tiny models, in well under a second.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from core.domain.manifest import FINAL_DIR, METRICS_FILE, RunManifest
from core.domain.records import Conversation, Message

SORT_CHECK = {"kind": "regex", "value": r"^\d+(, \d+)*$"}


def sort_conversation(index: int) -> Conversation:
    numbers = [index + 7, index, index + 3]
    answer = ", ".join(str(number) for number in sorted(numbers))
    return Conversation(
        messages=[
            Message(role="user", content=f"Sort these numbers: {', '.join(map(str, numbers))}"),
            Message(role="assistant", content=answer),
        ],
        source=f"sort.jsonl:{index + 1}",
        checks=[SORT_CHECK, {"kind": "max_words", "value": 6}],
    )


def build_prepared(
    model_dir: Path,
    data_dir: Path,
    test_records: int = 6,
    max_length: int = 96,
    test_references: list[list[str]] | None = None,
) -> Any:
    """Writes a prepared dataset (train/validation/test) tokenized with the model's tokenizer.

    ``test_references`` gives the test records further reference answers (record ``references``).
    """
    from core.infrastructure.data.prepared import save_prepared
    from core.infrastructure.data.tokenize import tokenize_conversation
    from core.infrastructure.models.loading import load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    conversations = {
        "train": [sort_conversation(index) for index in range(100, 108)],
        "validation": [sort_conversation(index) for index in range(200, 204)],
        "test": [sort_conversation(index) for index in range(test_records)],
    }
    for conversation, references in zip(conversations["test"], test_references or [], strict=False):
        conversation.references = references
    tokenized = {}
    for split, items in conversations.items():
        rows = []
        for conversation in items:
            example = tokenize_conversation(tokenizer, conversation, max_length)
            rows.append({"input_ids": example.input_ids, "labels": example.labels})
        tokenized[split] = rows
    fingerprint = "testfingerprint"
    return save_prepared(
        data_dir / "prepared" / fingerprint, fingerprint, tokenizer.chat_template, conversations, tokenized
    )


def build_run(
    settings: Any,
    model_dir: Path,
    prepared: Any,
    run_name: str,
    technique: str,
    seed: int = 1,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Writes a completed run directory whose final/ holds a LoRA or prefix adapter, or a full model."""
    from peft import LoraConfig, PrefixTuningConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir = Path(settings.paths.runs_dir) / run_name
    final_dir = run_dir / FINAL_DIR
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    total = sum(parameter.numel() for parameter in model.parameters())
    if technique == "full":
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.05)
        model.save_pretrained(final_dir)
        trainable = total
    else:
        if technique == "prefix":
            config = PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=4)
        else:
            config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
        model = get_peft_model(model, config)
        with torch.no_grad():
            for parameter in model.parameters():
                if parameter.requires_grad:
                    parameter.add_(torch.randn_like(parameter) * 0.5)
        trainable = sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
        model.save_pretrained(final_dir)
    AutoTokenizer.from_pretrained(str(model_dir)).save_pretrained(final_dir)
    config = settings.to_plain_dict()
    config["technique"] = {"name": technique}
    config["run_name"] = run_name
    manifest = RunManifest(
        run_name=run_name,
        status="completed",
        config=config,
        data_fingerprint=prepared.fingerprint,
        chat_template=prepared.chat_template,
        technique={"name": technique},
        base_model_path=str(model_dir),
        trainable_parameters=trainable,
        total_parameters=total,
        metrics=metrics
        or {
            "initial_eval_loss": 10.8,
            "final_eval_loss": 9.5,
            "best_eval_loss": 9.4,
            "train_runtime_s": 12.0,
            "tokens_per_second": 150.0,
            "peak_memory_mb": 900.0,
        },
        final_path=FINAL_DIR,
    )
    manifest.save(run_dir)
    rows = [
        {"step": 0, "eval_loss": 10.8, "eval_perplexity": 49000.0},
        {"step": 1, "epoch": 0.5, "loss": 10.7, "learning_rate": 1e-3, "tokens_per_second": 140.0},
        {"step": 2, "epoch": 1.0, "loss": 10.1, "learning_rate": 5e-4, "tokens_per_second": 150.0},
        {"step": 2, "eval_loss": 9.5, "eval_perplexity": 13360.0},
        {"step": 2, "event": "end"},
    ]
    (run_dir / METRICS_FILE).write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return run_dir
