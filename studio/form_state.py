"""The Train form around a run: values kept in the browser, the opening memory table, sample prompts."""

from __future__ import annotations

import hashlib
from dataclasses import fields
from pathlib import Path
from typing import Any

import pandas as pd
from loguru import logger

from core.domain.config import Settings
from studio.context import StudioContext
from studio.form_schema import FORM_FIELDS, TrainForm, field_info, is_optional, label, settings_fields
from studio.runs import run_names
from studio.training_form import TECHNIQUES, memory_estimates, technique_defaults

FORM_STORAGE_KEY = "finetune-studio-train-form"
"""localStorage key of the Train form's values (kept across page reloads)."""


def form_secret(context: StudioContext) -> str:
    """Key the saved form is encrypted with: stable across restarts, distinct per runs directory."""
    return hashlib.sha256(str(Path(context.runs_dir).resolve()).encode("utf-8")).hexdigest()[:32]


def restored_form_values(context: StudioContext, saved: Any) -> dict[str, Any]:
    """The usable values of a Train form saved in the browser.

    Unknown fields and values of the wrong type are dropped; a run name that already names a run is
    cleared (that run was started, and the next one needs a new name).

    Args:
        context: Studio context.
        saved: The saved mapping (field name -> value), or anything else when nothing was saved.

    Returns:
        Field name -> value, only for the fields to restore.
    """
    if not isinstance(saved, dict):
        return {}
    kinds = {field.name: field.type for field in fields(TrainForm)}
    values: dict[str, Any] = {}
    for name, value in saved.items():
        kind = kinds.get(name)
        if kind is None or value is None:
            continue
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if (kind, type(value)) in {("str", str), ("bool", bool)} or (kind in {"int", "float"} and number):
            values[name] = value
    if values.get("technique") not in TECHNIQUES:
        values.pop("technique", None)
    name = values.get("run_name", "").strip()
    if name and (name in run_names(context.runs_dir) or any(job.run_name == name for job in context.supervisor.jobs())):
        values["run_name"] = ""
    return values


def initial_memory_table(settings: Settings) -> pd.DataFrame:
    """The memory-fit table shown when the page opens (the studio's model and technique defaults).

    Args:
        settings: Studio settings.

    Returns:
        One row per technique.
    """
    columns = ["technique", "estimated_mb", "available_mb", "device", "fits", "note"]
    try:
        return pd.DataFrame(memory_estimates(settings), columns=columns)
    except Exception as error:  # the page must open even when the estimate cannot be made
        logger.warning("No memory estimate: {}", error)
        return pd.DataFrame(columns=columns)


def with_sample_prompts(settings: Settings, count: int = 2) -> Settings:
    """Fills ``training.sample_prompts`` from the dataset's first prompts when samples are on but none are set.

    Args:
        settings: Planned run settings.
        count: Prompts to take.

    Returns:
        The settings (unchanged when samples are off or prompts are set).
    """
    training = settings.training
    if not training.sample_every_steps or training.sample_prompts:
        return settings
    try:
        from core.application.inspect_data import preview_records

        first = settings.data.sources()[0]
        records = preview_records(settings, first.dataset, data_format=first.format, limit=count * 4)
        prompts = [record["prompt"] for record in records if record.get("prompt")][:count]
    except Exception as error:  # samples are a nicety: never block a run for them
        logger.warning("No sample prompts from {}: {}", settings.data.dataset_label(), error)
        prompts = []
    prompts = prompts or ["Explain what finetuning a language model means in one sentence."]
    return settings.model_copy(update={"training": training.model_copy(update={"sample_prompts": prompts})})


TECHNIQUE_DEFAULT_FIELDS = tuple(field.name for field in settings_fields())
"""Form fields that a technique's preset fills when the technique is picked, in the components' order."""


def form_from_values(values: tuple[Any, ...], default_model: str) -> TrainForm:
    """The form's component values (in :data:`FORM_FIELDS` order) as a ``TrainForm``.

    An emptied optional number counts as 0 (None), an emptied hidden technique setting as its default.

    Args:
        values: The components' values.
        default_model: The model when the field is empty.

    Returns:
        The form.

    Raises:
        ValueError: When a required number is empty.
    """
    mapping = dict(zip(FORM_FIELDS, values, strict=True))
    for field in settings_fields():
        if mapping[field.name] is not None:
            continue
        info = field_info(field.setting)
        if is_optional(info):
            mapping[field.name] = 0
        elif field.setting.startswith("technique."):
            mapping[field.name] = info.get_default(call_default_factory=True)
        else:
            raise ValueError(f"{label(field)}: a number is required")
    mapping["run_name"] = mapping["run_name"] or ""
    mapping["model_name"] = mapping["model_name"] or default_model
    return TrainForm(**mapping)


def technique_default_values(technique: str) -> list[Any]:
    """A technique's preset values for :data:`TECHNIQUE_DEFAULT_FIELDS`, in that order."""
    values = technique_defaults(technique)
    return [values[name] for name in TECHNIQUE_DEFAULT_FIELDS]
