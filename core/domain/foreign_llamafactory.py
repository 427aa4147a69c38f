"""LLaMA-Factory SFT config (``llamafactory-cli train x.yaml``) -> this project's preset.

Key names follow LLaMA-Factory's ``examples/train_lora/llama3_lora_sft.yaml`` and its argument
classes; where a key is absent the import uses LLaMA-Factory's default when it differs from ours
(LoRA rank 8, alpha 2 x rank, dropout 0).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.domain.errors import ConfigError
from core.domain.foreign_config import LR_SCHEDULERS, OPTIMIZERS, KeyMapper
from core.domain.techniques import technique_spec

ATTENTION = {"fa2": "flash_attention_2", "sdpa": "sdpa", "disabled": "eager", "auto": "auto"}
ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "system": "system"}

FULL_TYPES = ("full",)
LORA_TYPES = ("lora",)
"""LLaMA-Factory's ``finetuning_type`` values this mapper reads (lora with quantization_bit is QLoRA)."""


def map_llamafactory(mapper: KeyMapper) -> None:
    """Maps a LLaMA-Factory SFT config into ``mapper.preset``.

    Args:
        mapper: The mapper holding the foreign config.

    Raises:
        ConfigError: If the config is not supervised finetuning (``stage`` other than sft).
    """
    stage = mapper.take("stage", "sft")
    if stage != "sft":
        raise ConfigError(f"stage: {stage!r} is not supervised finetuning; only stage: sft configs can be imported")
    if mapper.take("do_train", True) is not True:
        mapper.skip("do_train", "import-config makes a training preset")
    mapper.model_name("model_name_or_path")
    mapper.copy("trust_remote_code", "model.trust_remote_code")
    mapper.choice("flash_attn", "model.attn_implementation", tuple(ATTENTION.values()), ATTENTION)
    mapper.copy("run_name", "run_name")
    _technique(mapper)
    _data(mapper)
    _training(mapper)
    _monitoring(mapper)


def _technique(mapper: KeyMapper) -> None:
    kind = mapper.take("finetuning_type", "lora")
    bits = mapper.take("quantization_bit")
    if kind in FULL_TYPES:
        mapper.put("technique.name", "full")
    elif kind in LORA_TYPES:
        mapper.put("technique.name", "qlora" if bits in (4, 8) else "lora")
        if bits == 8:
            mapper.put("technique.load_in_8bit", True)
        _lora(mapper)
    else:
        mapper.skip("finetuning_type", "techniques here: full, lora, qlora, prefix, ia3 (the preset uses lora)")
        mapper.put("technique.name", "lora")
    if bits is not None and (kind not in LORA_TYPES or bits not in (4, 8)):
        mapper.skip("quantization_bit", "only 4 or 8 bit with finetuning_type lora (QLoRA)")


def _lora(mapper: KeyMapper) -> None:
    rank = mapper.take("lora_rank", 8)
    mapper.put("technique.rank", rank)
    mapper.put("technique.alpha", mapper.take("lora_alpha", rank * 2))
    mapper.put("technique.dropout", mapper.take("lora_dropout", 0.0))
    target = mapper.take("lora_target", "all")
    targets = [item.strip() for item in str(target).split(",") if item.strip()]
    mapper.put("technique.target_modules", "all-linear" if targets == ["all"] else targets)
    mapper.copy("use_dora", "technique.use_dora")
    mapper.copy("use_rslora", "technique.use_rslora")
    if technique_spec(mapper.preset["technique"]["name"]).traits.needs_bitsandbytes:
        mapper.choice("quantization_type", "technique.quant_type", ("nf4", "fp4"))
        mapper.copy("double_quantization", "technique.double_quant")


def _data(mapper: KeyMapper) -> None:
    names = [item.strip() for item in str(mapper.take("dataset", "")).split(",") if item.strip()]
    folder = mapper.take("dataset_dir", "data")
    directory = mapper.local_file(folder)
    sources = [source for name in names if (source := _dataset_source(mapper, name, directory)) is not None]
    max_samples = mapper.take("max_samples")
    if len(sources) == 1:
        for key, value in sources[0].items():
            mapper.put(f"data.{key}", value)
        if max_samples:
            mapper.put("data.max_samples", max_samples)
    elif sources:
        mapper.put(
            "data.datasets", [{**source, "max_samples": max_samples} if max_samples else source for source in sources]
        )
    if mapper.take("mix_strategy", "concat") != "concat":
        mapper.skip("mix_strategy", "data.mix_strategy here: concat or weighted (by weights)")
    mapper.copy("cutoff_len", "data.max_seq_length")
    mapper.copy("train_on_prompt", "data.train_on_prompt")
    mapper.split_settings("val_size", "packing", "seed")
    template = mapper.take("template")
    if template in ("alpaca", "chatml"):
        mapper.put("data.template", template)
    elif template is not None:
        mapper.skip("template", "the preset uses the tokenizer's own chat template (data.template: model)")


def _dataset_source(mapper: KeyMapper, name: str, directory: Path | None) -> dict[str, Any] | None:
    """One LLaMA-Factory dataset name -> a data source, through ``dataset_info.json`` when it is there."""
    info_file = directory / "dataset_info.json" if directory else None
    info = json.loads(info_file.read_text(encoding="utf-8")) if info_file and info_file.is_file() else {}
    entry = info.get(name)
    if entry is None:
        found = mapper.local_file(name, directory)
        if found is not None:
            return {"dataset": str(found)}
        mapper.skip("dataset", "not a local file and not in dataset_info.json next to the config", name)
        return None
    if entry.get("hf_hub_url"):
        return {"dataset": entry["hf_hub_url"], "split": entry.get("split", "train")}
    found = mapper.local_file(entry.get("file_name", ""), directory) if entry.get("file_name") else None
    if found is None:
        mapper.skip("dataset", "its dataset_info.json entry names no local file or Hub dataset here", name)
        return None
    return {"dataset": str(found), **_dataset_format(entry)}


def _dataset_format(entry: dict[str, Any]) -> dict[str, Any]:
    """The format (and column mapping) of a ``dataset_info.json`` entry."""
    columns = entry.get("columns") or {}
    if entry.get("formatting", "alpaca") == "sharegpt":
        tags = entry.get("tags") or {}
        return {"format": "openai" if tags.get("role_tag") == "role" else "sharegpt"}
    mapping = {ALPACA_COLUMNS[key]: value for key, value in columns.items() if key in ALPACA_COLUMNS}
    if not mapping or all(ALPACA_COLUMNS.get(key) == value for key, value in columns.items()):
        return {"format": "alpaca"}
    return {"format": "custom", "field_mapping": mapping}


def _training(mapper: KeyMapper) -> None:
    mapper.copy("per_device_train_batch_size", "training.per_device_batch_size")
    mapper.copy("per_device_eval_batch_size", "training.eval_batch_size")
    mapper.copy("gradient_accumulation_steps", "training.gradient_accumulation_steps")
    mapper.copy("learning_rate", "training.learning_rate")
    mapper.copy("num_train_epochs", "training.num_epochs")
    mapper.copy("max_steps", "training.max_steps")
    mapper.choice("lr_scheduler_type", "training.lr_scheduler", LR_SCHEDULERS)
    mapper.warmup("warmup_ratio", "warmup_steps")
    mapper.copy("weight_decay", "training.weight_decay")
    mapper.copy("max_grad_norm", "training.max_grad_norm")
    mapper.choice("optim", "training.optimizer", OPTIMIZERS)
    mapper.precision("bf16", "fp16")
    for key in ("logging_steps", "save_steps", "eval_steps", "save_total_limit"):
        mapper.copy(key, f"training.{key}")
    if mapper.take("disable_gradient_checkpointing") is False:
        mapper.put("training.gradient_checkpointing", True)


def _monitoring(mapper: KeyMapper) -> None:
    report_to = mapper.take("report_to")
    targets = {report_to} if isinstance(report_to, str) else set(report_to or [])
    if "wandb" in targets:
        mapper.put("monitoring.wandb", True)
    if targets & {"none", "wandb"} and "tensorboard" not in targets:
        mapper.put("monitoring.tensorboard", False)
    elif "tensorboard" in targets:
        mapper.put("monitoring.tensorboard", True)
    unknown = targets - {"none", "wandb", "tensorboard"}
    if unknown:
        mapper.skip("report_to", "trackers here: tensorboard and wandb", sorted(unknown))
