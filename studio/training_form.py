"""The Train tab's form: per-technique defaults, settings built from the form, and memory-fit estimates."""

from __future__ import annotations

import functools
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from loguru import logger

from core.domain.catalog import CATALOG, find_entry
from core.domain.config import Settings, read_yaml, settings_from_dict
from core.domain.techniques import DEFAULT_TECHNIQUE, technique_names, technique_spec, traits_for
from studio.data_sources import data_section, dataset_names
from studio.form_schema import TrainForm, field_info, form_value, settings_fields, value_kind
from studio.job_records import plain_config
from studio.resources import available_memory_mb

TECHNIQUES = (DEFAULT_TECHNIQUE, *(name for name in technique_names() if name != DEFAULT_TECHNIQUE))
"""Techniques offered (every registered one), the default first."""

PRESETS_DIR = Path(__file__).resolve().parents[1] / "examples" / "configs"


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
    """Form values for a technique: its preset where it sets them, else the settings' defaults.

    A technique setting the technique does not have (``rank`` for prefix) takes the default of the
    technique that has it; it is hidden anyway.

    Args:
        technique: Technique name.

    Returns:
        Form field name -> value, for every :func:`~studio.form_schema.settings_fields` entry.
    """
    preset = technique_preset(technique)
    preset_technique = preset.get("technique") if isinstance(preset.get("technique"), dict) else {}
    values: dict[str, Any] = {}
    for field in settings_fields():
        section, name = field.setting.split(".", 1)
        given = (preset_technique if section == "technique" else preset.get(section, {})).get(name)
        info = field_info(field.setting)
        value = given if given is not None else info.get_default(call_default_factory=True)
        values[field.name] = value_kind(info)(value) if value is not None else 0
    if not values["sample_every_steps"]:  # samples where the preset evaluates, unless it sets them
        values["sample_every_steps"] = values["eval_steps"]
    return values


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
    preset = technique_preset(form.technique)
    preset_technique = preset.get("technique")
    nested["technique"] = {**(preset_technique if isinstance(preset_technique, dict) else {}), "name": form.technique}
    nested["run_name"] = form.run_name.strip() or default_run_name(form.model_name, form.technique)
    nested["model"] = {**nested.get("model", {}), "name": form.model_name.strip()}
    nested["data"] = data_section(nested.get("data", {}), form.dataset)
    nested["training"] = dict(nested.get("training", {}))
    for field in settings_fields():
        section, name = field.setting.split(".", 1)
        if section == "technique" and name not in spec.settings.model_fields:
            continue
        nested[section][name] = form_value(field, getattr(form, field.name))
    training = nested["training"]
    training["gradient_checkpointing"] &= spec.traits.supports_gradient_checkpointing
    for key in ("lr_scheduler", "warmup_ratio"):
        if key in preset.get("training", {}):
            training[key] = preset["training"][key]
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
