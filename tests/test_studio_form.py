"""The Train form is generated from the settings: labels, help, defaults and visibility come from there."""

from __future__ import annotations

import pytest

from core.domain.config import Settings
from core.domain.techniques import technique_names, technique_spec
from studio.form_schema import (
    FORM_FIELDS,
    TrainForm,
    field_info,
    help_markdown,
    label,
    settings_fields,
    technique_fields,
    visible_for,
)
from studio.training_form import settings_from_form, technique_defaults, technique_preset

# The order API clients send /start_training's inputs in (tests/test_studio_client.py::start_arguments).
API_ORDER = [
    "model_name", "technique", "run_name", "dataset", "learning_rate", "max_steps", "num_epochs", "batch_size",
    "gradient_accumulation_steps", "max_seq_length", "eval_steps", "save_steps", "sample_every_steps",
    "lora_rank", "lora_alpha", "lora_dropout", "virtual_tokens", "gradient_checkpointing",
]  # fmt: skip


def test_form_fields_keep_the_api_order() -> None:
    assert FORM_FIELDS == API_ORDER


def test_labels_and_help_come_from_the_settings_metadata() -> None:
    help_text = help_markdown()
    for field in settings_fields():
        info = field_info(field.setting)
        assert info.title and label(field) == info.title, field.setting
        assert f"**{info.title}** (`{field.setting}`" in help_text and info.description in help_text
    assert "`training.learning_rate`; > 0, <= 1.0" in help_text
    assert "`technique.rank`; >= 1, <= 1024" in help_text


@pytest.mark.parametrize("technique", technique_names())
def test_visibility_follows_each_techniques_form_fields(technique: str) -> None:
    shown = {field.setting.removeprefix("technique.") for field in technique_fields() if visible_for(technique, field)}
    assert shown == set(technique_spec(technique).form_fields)


@pytest.mark.parametrize("technique", technique_names())
def test_defaults_are_the_preset_else_the_settings_default_and_round_trip(technique: str) -> None:
    defaults = technique_defaults(technique)
    preset = technique_preset(technique)
    base = Settings.model_construct()
    assert defaults["max_seq_length"] == preset.get("data", {}).get("max_seq_length", base.data.max_seq_length)
    assert defaults["lora_rank"] == (preset.get("technique") or {}).get("rank", 16)  # LoraTechnique's own default
    form = TrainForm(model_name="smollm2-135m-instruct", technique=technique, run_name="r", dataset="demo", **defaults)
    settings = settings_from_form(Settings(), form)
    plain = settings.to_plain_dict()
    for field in settings_fields():
        section, name = field.setting.split(".", 1)
        if section == "technique" and name not in technique_spec(technique).settings.model_fields:
            continue
        expected = (
            defaults[field.name] or None
            if field.name.endswith("steps") and field.name != "max_steps"
            else defaults[field.name]
        )
        if field.name == "gradient_checkpointing":
            expected = expected and technique_spec(technique).traits.supports_gradient_checkpointing
        assert plain[section][name] == expected, field.setting
