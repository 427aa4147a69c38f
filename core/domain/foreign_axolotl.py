"""axolotl SFT config (``axolotl train x.yml``) -> this project's preset.

Key names follow axolotl's ``examples/llama-3/lora-1b.yml`` and its config schema.
"""

from __future__ import annotations

from typing import Any

from core.domain.foreign_config import LR_SCHEDULERS, OPTIMIZERS, KeyMapper

DATASET_TYPES = {"alpaca": "alpaca", "sharegpt": "sharegpt", "chat_template": "openai", "oasst": "oasst"}
TRAINING_KEYS = {
    "micro_batch_size": "per_device_batch_size",
    "eval_batch_size": "eval_batch_size",
    "gradient_accumulation_steps": "gradient_accumulation_steps",
    "learning_rate": "learning_rate",
    "num_epochs": "num_epochs",
    "max_steps": "max_steps",
    "weight_decay": "weight_decay",
    "max_grad_norm": "max_grad_norm",
    "logging_steps": "logging_steps",
    "eval_steps": "eval_steps",
    "save_steps": "save_steps",
    "save_total_limit": "save_total_limit",
    "early_stopping_patience": "early_stopping_patience",
    "gradient_checkpointing": "gradient_checkpointing",
    "group_by_length": "group_by_length",
}

AXOLOTL_ADAPTERS = {"lora": False, "qlora": True}
"""axolotl's ``adapter`` values this mapper reads -> whether the base model is quantized."""


def map_axolotl(mapper: KeyMapper) -> None:
    """Maps an axolotl SFT config into ``mapper.preset``.

    Args:
        mapper: The mapper holding the foreign config.
    """
    mapper.model_name("base_model")
    mapper.copy("trust_remote_code", "model.trust_remote_code")
    _attention(mapper)
    _technique(mapper)
    _data(mapper)
    for key, name in TRAINING_KEYS.items():
        mapper.copy(key, f"training.{name}")
    mapper.choice("lr_scheduler", "training.lr_scheduler", LR_SCHEDULERS)
    mapper.warmup("warmup_ratio", "warmup_steps")
    mapper.choice("optimizer", "training.optimizer", OPTIMIZERS)
    mapper.precision("bf16", "fp16")
    project = mapper.take("wandb_project")
    if project:
        mapper.put("monitoring.wandb", True)
        mapper.put("monitoring.wandb_project", project)
    mapper.copy("wandb_entity", "monitoring.wandb_entity")


def _attention(mapper: KeyMapper) -> None:
    if mapper.take("flash_attention") is True:
        mapper.put("model.attn_implementation", "flash_attention_2")
    elif mapper.take("sdp_attention") is True:
        mapper.put("model.attn_implementation", "sdpa")
    mapper.consumed.update({"flash_attention", "sdp_attention"})


def _technique(mapper: KeyMapper) -> None:
    adapter = mapper.take("adapter")
    four_bit, eight_bit = mapper.take("load_in_4bit", False), mapper.take("load_in_8bit", False)
    if adapter is None:
        mapper.put("technique.name", "full")
        if four_bit or eight_bit:
            mapper.skip("load_in_4bit" if four_bit else "load_in_8bit", "quantized full finetuning is not supported")
        return
    if adapter not in AXOLOTL_ADAPTERS:
        mapper.skip("adapter", "adapters here: lora and qlora (the preset uses lora)")
    quantized = AXOLOTL_ADAPTERS.get(adapter, False) or four_bit or eight_bit
    mapper.put("technique.name", "qlora" if quantized else "lora")
    if quantized and eight_bit and not four_bit:
        mapper.put("technique.load_in_8bit", True)
    mapper.copy("lora_r", "technique.rank")
    mapper.copy("lora_alpha", "technique.alpha")
    mapper.copy("lora_dropout", "technique.dropout")
    targets = mapper.take("lora_target_modules")
    if mapper.take("lora_target_linear") is True:
        mapper.put("technique.target_modules", "all-linear")
    elif targets:
        mapper.put("technique.target_modules", [targets] if isinstance(targets, str) else list(targets))
    mapper.copy("peft_use_dora", "technique.use_dora")
    mapper.copy("peft_use_rslora", "technique.use_rslora")


def _data(mapper: KeyMapper) -> None:
    entries = mapper.take("datasets", [])
    sources = [source for entry in entries if (source := _dataset_source(mapper, entry)) is not None]
    if len(sources) == 1:
        for key, value in sources[0].items():
            mapper.put(f"data.{key}", value)
    elif sources:
        mapper.put("data.datasets", sources)
    mapper.copy("sequence_len", "data.max_seq_length")
    inputs = mapper.take("train_on_inputs")
    if inputs is not None:
        mapper.put("data.train_on_prompt", bool(inputs))
    mapper.split_settings("val_set_size", "sample_packing", "seed")
    template = mapper.take("chat_template")
    if template == "chatml":
        mapper.put("data.template", "chatml")
    elif template not in (None, "tokenizer_default"):
        mapper.skip("chat_template", "the preset uses the tokenizer's own chat template (data.template: model)")


def _dataset_source(mapper: KeyMapper, entry: Any) -> dict[str, Any] | None:
    """One entry of ``datasets`` -> a data source: a local file, or a Hub dataset id with its split."""
    if not isinstance(entry, dict) or not entry.get("path"):
        mapper.skip("datasets", "each dataset needs a path", entry)
        return None
    kind = entry.get("type", "alpaca")
    kind = kind if isinstance(kind, str) else "custom"
    if kind not in DATASET_TYPES:
        mapper.skip("datasets", f"dataset type {kind!r} has no equivalent format here", entry)
        return None
    data_format = DATASET_TYPES[kind]
    if kind == "chat_template" and entry.get("field_messages") == "conversations":
        data_format = "sharegpt"
    found = mapper.local_file(str(entry.get("data_files") or entry["path"]))
    if found is not None:
        return {"dataset": str(found), "format": data_format}
    if entry.get("ds_type") or entry.get("data_files"):
        mapper.skip("datasets", "its local files were not found next to the config", entry)
        return None
    return {"dataset": str(entry["path"]), "format": data_format, "split": entry.get("split", "train")}
