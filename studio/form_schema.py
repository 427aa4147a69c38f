"""The Train form, generated from the settings model and the technique registry.

Each form field names the setting it sets (``training.learning_rate``); its label, help text,
bounds, number kind and default come from that setting's ``Field`` metadata, and a technique
setting is shown exactly for the techniques whose spec lists it in ``form_fields``. The only things
written here are which settings the form offers, in which rows, and the names the form has always
used for them (kept for forms saved in browsers and for API clients that send values by position).
"""

from __future__ import annotations

import types
from dataclasses import dataclass, make_dataclass
from typing import Any, Union, get_args, get_origin

import gradio as gr
from annotated_types import Ge, Gt, Le, Lt
from pydantic.fields import FieldInfo

from core.domain.config import Settings
from core.domain.techniques import technique_spec, technique_specs
from studio.data_sources import joined


@dataclass(frozen=True)
class FormField:
    """One input of the Train form.

    Attributes:
        name: The form's name for it (TrainForm attribute, saved-form key).
        setting: Dotted settings path it sets (``training.learning_rate``, ``technique.rank``).
        elem_id: HTML id of its component (default: ``name`` with dashes).
    """

    name: str
    setting: str
    elem_id: str | None = None

    @property
    def html_id(self) -> str:
        """The component's HTML id."""
        return self.elem_id or self.name.replace("_", "-")


HYPERPARAMETER_ROWS: tuple[tuple[FormField, ...], ...] = (
    (
        FormField("learning_rate", "training.learning_rate"),
        FormField("max_steps", "training.max_steps"),
        FormField("num_epochs", "training.num_epochs"),
    ),
    (
        FormField("batch_size", "training.per_device_batch_size"),
        FormField("gradient_accumulation_steps", "training.gradient_accumulation_steps"),
        FormField("max_seq_length", "data.max_seq_length"),
    ),
    (
        FormField("eval_steps", "training.eval_steps"),
        FormField("save_steps", "training.save_steps"),
        FormField("sample_every_steps", "training.sample_every_steps", elem_id="sample-every"),
    ),
)
"""The hyper-parameters the form offers, row by row."""

SWITCHES = (FormField("gradient_checkpointing", "training.gradient_checkpointing"),)
"""Check boxes below the technique's settings."""

TECHNIQUE_FORM_NAMES = {"rank": "lora_rank", "alpha": "lora_alpha", "dropout": "lora_dropout"}
"""Form names of technique settings that differ from the setting's own name (kept since the first studio)."""

GENERAL_FIELDS = (("model_name", "str"), ("technique", "str"), ("run_name", "str"), ("dataset", "str"))
"""The fields above the hyper-parameters: what is trained, on what, under which name."""

_LEGACY_NAMES = {"num_virtual_tokens": "virtual_tokens"}


def technique_fields() -> tuple[FormField, ...]:
    """Every technique setting that some registered technique shows, in registration order."""
    settings: list[str] = []
    for spec in technique_specs():
        settings.extend(name for name in spec.form_fields if name not in settings)
    return tuple(
        FormField(TECHNIQUE_FORM_NAMES.get(name, _LEGACY_NAMES.get(name, name)), f"technique.{name}")
        for name in settings
    )


def settings_fields() -> tuple[FormField, ...]:
    """Every form field backed by a setting, in the order of the form's components."""
    return (*(field for row in HYPERPARAMETER_ROWS for field in row), *technique_fields(), *SWITCHES)


def field_info(setting: str) -> FieldInfo:
    """The pydantic ``Field`` of a dotted settings path.

    A technique setting is looked up in the first registered technique whose settings have it.

    Args:
        setting: ``section.name``.

    Returns:
        The field's metadata.
    """
    section, name = setting.split(".", 1)
    if section == "technique":
        owner = next(spec for spec in technique_specs() if name in spec.settings.model_fields)
        return owner.settings.model_fields[name]
    return Settings.model_fields[section].annotation.model_fields[name]


def value_kind(info: FieldInfo) -> type:
    """``int``, ``float`` or ``bool``: the field's type without ``None``."""
    annotation = info.annotation
    if get_origin(annotation) in (Union, types.UnionType):
        annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
    return annotation


def is_optional(info: FieldInfo) -> bool:
    """True when the setting accepts None (the form shows it as 0)."""
    return get_origin(info.annotation) in (Union, types.UnionType) and type(None) in get_args(info.annotation)


def limits_text(info: FieldInfo) -> str:
    """The field's bounds as text (``> 0, <= 1.0``), from its constraints."""
    symbols = {Ge: (">=", "ge"), Gt: (">", "gt"), Le: ("<=", "le"), Lt: ("<", "lt")}
    parts = [
        f"{symbols[type(constraint)][0]} {getattr(constraint, symbols[type(constraint)][1])}"
        for constraint in info.metadata
        if type(constraint) in symbols
    ]
    return ", ".join(parts)


def label(field: FormField) -> str:
    """The field's label: its setting's title."""
    return field_info(field.setting).title or field.name.replace("_", " ").capitalize()


def help_markdown() -> str:
    """What every field means, from the settings' descriptions (0 stands for None where allowed)."""
    lines = []
    for field in settings_fields():
        info = field_info(field.setting)
        limits = limits_text(info)
        where = f"`{field.setting}`" + (f"; {limits}" if limits else "")
        note = " In the form, 0 stands for None." if is_optional(info) else ""
        lines.append(f"- **{label(field)}** ({where}): {info.description or ''}{note}")
    return "\n".join(lines)


def shows_setting(technique: str, setting: str) -> bool:
    """True when the form shows a technique setting (``rank``) for a technique.

    Args:
        technique: Technique name.
        setting: Technique setting name, without ``technique.``.

    Returns:
        Whether the technique's spec lists it among its form fields.
    """
    try:
        return setting in technique_spec(technique).form_fields
    except Exception:  # an unknown technique shows nothing
        return False


def visible_for(technique: str, field: FormField) -> bool:
    """True when a form field is shown while ``technique`` is selected."""
    section, name = field.setting.split(".", 1)
    return section != "technique" or shows_setting(technique, name)


def _form_type(field: FormField) -> str:
    kind = value_kind(field_info(field.setting))
    return {bool: "bool", int: "int", float: "float"}[kind]


TrainForm = make_dataclass(
    "TrainForm",
    [*GENERAL_FIELDS, *((field.name, _form_type(field)) for field in settings_fields())],
)
TrainForm.__doc__ = """Values of the Train form: the general fields, then one per :func:`settings_fields` entry."""

FORM_FIELDS = [name for name, _kind in GENERAL_FIELDS] + [field.name for field in settings_fields()]
"""The Train form's fields, in the order of its input components (and of ``/start_training``'s inputs)."""


def form_value(field: FormField, value: Any) -> Any:
    """A form value as the setting's value: typed, and None for the 0 of an optional number.

    Args:
        field: The form field.
        value: The component's value.

    Returns:
        The setting's value.
    """
    info = field_info(field.setting)
    kind = value_kind(info)
    if is_optional(info) and not value:
        return None
    return kind(value)


def setting_component(field: FormField, value: Any, technique: str) -> gr.Component:
    """A number box or check box for a form field, described by its setting's ``Field`` metadata.

    Args:
        field: The form field.
        value: Its initial value.
        technique: The selected technique (a technique setting is visible only where it applies).

    Returns:
        The component (label = the setting's title, integer-ness from its type).
    """
    info = field_info(field.setting)
    visible = visible_for(technique, field)
    if value_kind(info) is bool:
        return gr.Checkbox(value, label=label(field), elem_id=field.html_id, visible=visible)
    return gr.Number(  # bounds are checked by the settings, whose message names the field
        value=value,
        label=label(field),
        precision=0 if value_kind(info) is int else None,
        min_width=90,
        elem_id=field.html_id,
        visible=visible,
    )


def form_field_values(config: dict[str, Any]) -> dict[str, Any]:
    """The Train form's values for a run's configuration ("clone into form"); the run name is left empty.

    Args:
        config: A run's ``manifest.config`` (plain settings).

    Returns:
        Form field name -> value, for the fields the configuration sets.
    """
    data = config.get("data") or {}
    sources = [source.get("dataset") for source in data.get("datasets") or [] if isinstance(source, dict)]
    values: dict[str, Any] = {
        "model_name": (config.get("model") or {}).get("name"),
        "technique": (config.get("technique") or {}).get("name"),
        "run_name": "",
        "dataset": joined([str(source) for source in sources]) if sources else data.get("dataset"),
    }
    for field in settings_fields():
        section, name = field.setting.split(".", 1)
        if name in (config.get(section) or {}):
            value = config[section][name]
            values[field.name] = 0 if value is None else value
    return {key: value for key, value in values.items() if value is not None}
