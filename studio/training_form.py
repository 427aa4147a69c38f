"""The Train tab's form: per-technique defaults, settings built from the form, and memory-fit estimates."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from loguru import logger

from core.domain.catalog import CATALOG, find_entry
from core.domain.config import Settings, read_yaml, settings_from_dict
from core.domain.techniques import DEFAULT_TECHNIQUE, technique_names, technique_spec, traits_for
from studio.data_sources import data_section, dataset_names
from studio.job_records import plain_config
from studio.resources import available_memory_mb

TECHNIQUES = (DEFAULT_TECHNIQUE, *(name for name in technique_names() if name != DEFAULT_TECHNIQUE))
"""Techniques offered (every registered one), the default first."""

FORM_TECHNIQUE_FIELDS = {
    "lora_rank": "rank",
    "lora_alpha": "alpha",
    "lora_dropout": "dropout",
    "virtual_tokens": "num_virtual_tokens",
}
"""Form field -> the technique setting it sets, for every technique whose settings have that field."""


def shows_setting(technique: str, setting: str) -> bool:
    """True when the Train form shows a technique setting (``rank``, ``num_virtual_tokens``) for a technique.

    Args:
        technique: Technique name.
        setting: A technique setting named in some technique's ``form_fields``.

    Returns:
        Whether the technique lists it among its form fields.
    """
    return technique in technique_names() and setting in technique_spec(technique).form_fields


PRESETS_DIR = Path(__file__).resolve().parents[1] / "examples" / "configs"


@dataclass
class TrainForm:
    """Values of the Train tab's form.

    Attributes:
        model_name: Catalog name, local directory or Hub id.
        technique: ``full``, ``lora``, ``qlora`` or ``prefix``.
        run_name: Run directory name (empty: generated).
        dataset: ``demo``, a file or a Hub dataset id.
        learning_rate: Peak learning rate.
        max_steps: Optimizer steps (-1: use epochs).
        num_epochs: Epochs when ``max_steps`` is -1.
        batch_size: Sequences per device step.
        gradient_accumulation_steps: Steps accumulated per optimizer step.
        max_seq_length: Longest tokenized example.
        eval_steps: Evaluate every N steps (0: once per epoch).
        save_steps: Checkpoint every N steps (0: at evaluations).
        sample_every_steps: Sample generations every N steps (0: never).
        lora_rank: LoRA/QLoRA rank.
        lora_alpha: LoRA/QLoRA alpha.
        lora_dropout: LoRA/QLoRA dropout.
        virtual_tokens: Prefix Tuning virtual tokens.
        gradient_checkpointing: Recompute activations to save memory.
    """

    model_name: str
    technique: str
    run_name: str
    dataset: str
    learning_rate: float
    max_steps: int
    num_epochs: float
    batch_size: int
    gradient_accumulation_steps: int
    max_seq_length: int
    eval_steps: int
    save_steps: int
    sample_every_steps: int
    lora_rank: int
    lora_alpha: float
    lora_dropout: float
    virtual_tokens: int
    gradient_checkpointing: bool


@functools.lru_cache(maxsize=8)
def technique_preset(technique: str) -> dict[str, Any]:
    """The example preset ``examples/configs/smollm2-<technique>.yaml`` as a mapping.

    Args:
        technique: Technique name.

    Returns:
        The preset (empty when the file is missing).
    """
    path = PRESETS_DIR / f"smollm2-{technique}.yaml"
    if not path.exists():
        logger.warning("No preset {}; using built-in defaults", path)
        return {}
    return read_yaml(path)


def technique_defaults(technique: str) -> dict[str, Any]:
    """Sensible form values for a technique (from its preset, else the config defaults).

    Args:
        technique: Technique name.

    Returns:
        Form field name -> value.
    """
    preset = technique_preset(technique)
    base = Settings.model_construct()
    training = {**base.training.model_dump(), **preset.get("training", {})}
    data = {**base.data.model_dump(), **preset.get("data", {})}
    technique_values = preset.get("technique", {}) if isinstance(preset.get("technique"), dict) else {}
    return {
        "learning_rate": float(training["learning_rate"]),
        "max_steps": int(training["max_steps"]),
        "num_epochs": float(training["num_epochs"]),
        "batch_size": int(training["per_device_batch_size"]),
        "gradient_accumulation_steps": int(training["gradient_accumulation_steps"]),
        "max_seq_length": int(data["max_seq_length"]),
        "eval_steps": int(training.get("eval_steps") or 0),
        "save_steps": int(training.get("save_steps") or 0),
        "sample_every_steps": int(training.get("sample_every_steps") or training.get("eval_steps") or 0),
        "lora_rank": int(technique_values.get("rank", 16)),
        "lora_alpha": float(technique_values.get("alpha", 32)),
        "lora_dropout": float(technique_values.get("dropout", 0.05)),
        "virtual_tokens": int(technique_values.get("num_virtual_tokens", 20)),
        "gradient_checkpointing": bool(training.get("gradient_checkpointing", False)),
    }


def default_run_name(model_name: str, technique: str) -> str:
    """A fresh run name such as ``smollm2-135m-instruct-lora-0612-1530``.

    Args:
        model_name: Model name or path.
        technique: Technique name.

    Returns:
        The run name.
    """
    stem = Path(model_name).name.replace("/", "-").lower()[:40] or "model"
    return f"{stem}-{technique}-{datetime.now().strftime('%m%d-%H%M%S')}"


def settings_from_form(base: Settings, form: TrainForm) -> Settings:
    """Validated settings for a training run: the studio's settings with the form applied.

    Args:
        base: The studio's settings (paths, monitoring, evaluation, ...).
        form: The form values.

    Returns:
        The settings.

    Raises:
        ConfigError: With one ``field: problem`` line per invalid value.
    """
    nested = plain_config(base)
    spec = technique_spec(form.technique)
    preset_technique = technique_preset(form.technique).get("technique")
    technique: dict[str, Any] = {**(preset_technique if isinstance(preset_technique, dict) else {})}
    technique["name"] = form.technique
    for form_field, setting in FORM_TECHNIQUE_FIELDS.items():
        if setting in spec.settings.model_fields:
            technique[setting] = getattr(form, form_field)
    nested["technique"] = technique
    nested["run_name"] = form.run_name.strip() or default_run_name(form.model_name, form.technique)
    nested["model"] = {**nested.get("model", {}), "name": form.model_name.strip()}
    nested["data"] = {**data_section(nested.get("data", {}), form.dataset), "max_seq_length": int(form.max_seq_length)}
    training = dict(nested.get("training", {}))
    training.update(
        learning_rate=float(form.learning_rate),
        max_steps=int(form.max_steps),
        num_epochs=float(form.num_epochs),
        per_device_batch_size=int(form.batch_size),
        gradient_accumulation_steps=int(form.gradient_accumulation_steps),
        gradient_checkpointing=bool(form.gradient_checkpointing) and spec.traits.supports_gradient_checkpointing,
        eval_steps=int(form.eval_steps) if form.eval_steps else None,
        save_steps=int(form.save_steps) if form.save_steps else None,
        sample_every_steps=int(form.sample_every_steps) if form.sample_every_steps else None,
    )
    preset_training = technique_preset(form.technique).get("training", {})
    for key in ("lr_scheduler", "warmup_ratio"):
        if key in preset_training:
            training[key] = preset_training[key]
    nested["training"] = {key: value for key, value in training.items() if value is not None}
    return settings_from_dict(nested)


def sweep_settings(
    base: Settings,
    dataset: str,
    max_steps: int | None = None,
    model_name: str | None = None,
    stamp: str | None = None,
) -> list[Settings]:
    """Settings of a "train every technique" sweep on one dataset, from the presets.

    Every run trains the same model on the same data; the hyper-parameters are each technique's
    preset, so the comparison shows the techniques as they are meant to be used.

    Args:
        base: The studio's settings.
        dataset: Dataset to train on.
        max_steps: Optional override of every preset's ``max_steps``.
        model_name: Model to finetune (the Train form's model; default: the studio's ``model.name``).
        stamp: Part of the run names shared by the sweep's runs (default: the current time).

    Returns:
        One settings object per technique, in :data:`TECHNIQUES` order, with distinct run names.
    """
    model = (model_name or "").strip() or base.model.name
    stamp = stamp or datetime.now().strftime("%m%d-%H%M%S")
    sweep = []
    for technique in TECHNIQUES:
        defaults = technique_defaults(technique)
        if max_steps:
            defaults["max_steps"] = max_steps
            defaults["eval_steps"] = max(1, min(defaults["eval_steps"] or max_steps, max_steps))
            defaults["save_steps"] = defaults["eval_steps"]
            defaults["sample_every_steps"] = 0
        form = TrainForm(
            model_name=model,
            technique=technique,
            run_name=f"sweep-{stamp}-{technique}",
            dataset=dataset,
            **defaults,
        )
        sweep.append(settings_from_form(base, form))
    return sweep


def model_choices() -> list[str]:
    """Catalog model names for the model dropdown (embedded model first)."""
    names = sorted(CATALOG, key=lambda name: (not CATALOG[name].embedded, CATALOG[name].parameters))
    return names


def technique_description(technique: str) -> str:
    """One line describing a technique, from its traits.

    Args:
        technique: Technique name.

    Returns:
        Markdown text.
    """
    if technique not in technique_names():
        return ""
    traits = traits_for(technique)
    return f"**{traits.title}**: {traits.description}"


def memory_estimates(settings: Settings) -> list[dict[str, Any]]:
    """Estimated peak training memory of each technique for the chosen model, against this machine.

    Uses ``core.domain.memory`` (pure arithmetic); techniques it cannot estimate are reported as such.

    Args:
        settings: Settings of the planned run (model, batch size, sequence length).

    Returns:
        One row per technique: technique, estimated_mb, available_mb, device, fits, note.
    """
    available, device = available_memory_mb()
    rows = []
    for technique in TECHNIQUES:
        try:
            estimated = _estimate_mb(settings, technique, device)
            note = ""
        except Exception as error:  # report, never break the form
            logger.debug("Memory estimate failed for {}: {}", technique, error)
            estimated, note = None, f"no estimate: {error}"
        rows.append(
            {
                "technique": technique,
                "estimated_mb": round(estimated) if estimated is not None else None,
                "available_mb": round(available),
                "device": device,
                "fits": "yes" if estimated is not None and estimated <= available else ("no" if estimated else "?"),
                "note": note,
            }
        )
    return rows


def _estimate_mb(settings: Settings, technique: str, device: str) -> float:
    from core.domain.memory import estimate_memory

    entry = find_entry(settings.model.name)
    if entry is None:
        raise ValueError(f"{settings.model.name} is not in the model catalog")
    configured = settings.technique
    targets = getattr(configured, "target_modules", None)
    estimate = estimate_memory(
        entry,
        technique,
        settings.data.max_seq_length,
        settings.training.per_device_batch_size,
        precision="bf16" if device == "GPU" else "fp32",
        gradient_checkpointing=settings.training.gradient_checkpointing
        and traits_for(technique).supports_gradient_checkpointing,
        lora_rank=getattr(configured, "rank", 16),
        lora_target_modules=tuple(targets) if isinstance(targets, list) else None,
        lora_dropout=getattr(configured, "dropout", 0.05),
        num_virtual_tokens=getattr(configured, "num_virtual_tokens", 20),
        optimizer=settings.training.optimizer,
        device="cuda" if device == "GPU" else "cpu",
    )
    return estimate.total_bytes / 2**20


def yaml_text(settings: Settings) -> str:
    """The settings as YAML, shown before a run starts.

    Args:
        settings: Settings.

    Returns:
        YAML text.
    """
    return yaml.safe_dump(plain_config(settings), sort_keys=False)


def with_data_options(settings: Settings, options: dict[str, Any] | None) -> Settings:
    """Settings with the Data tab's choices for the dataset: format, column mapping, leniency.

    Args:
        settings: Settings from the Train form.
        options: ``format``, ``field_mapping``, ``lenient`` as the Data tab last used them for this
            dataset (``dataset`` names it; other datasets keep the defaults).

    Returns:
        Validated settings.
    """
    if not options or dataset_names(options.get("dataset")) != [source.dataset for source in settings.data.sources()]:
        return settings
    nested = plain_config(settings)
    if not settings.data.datasets:  # several sources keep each its own format
        nested["data"]["format"] = options.get("format") or "auto"
        nested["data"]["field_mapping"] = options.get("field_mapping") or {}
    nested["data"]["lenient"] = bool(options.get("lenient"))
    return settings_from_dict(nested)
