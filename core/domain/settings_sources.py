"""The settings sources of our own: the YAML preset and bare-key environment variables.

A setting has one spelling everywhere: a bare key (``learning_rate``) or a dotted path
(``training.learning_rate``) resolves the same way on the command line, in a YAML preset and in
the environment (``FINETUNE_LEARNING_RATE``, ``FINETUNE_TRAINING__LEARNING_RATE``), by
:func:`core.domain.config.resolve_override_key`.
"""

from __future__ import annotations

import os
from typing import Any

import yaml
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from core.domain.config import (
    Settings,
    _load_context,
    _LoadContext,
    compatible_technique_fields,
    normalize_technique,
    read_yaml,
    resolve_override_key,
)
from core.domain.data_settings import yield_data_choice
from core.domain.errors import ConfigError
from core.domain.techniques import DEFAULT_TECHNIQUE

ENVIRONMENT_PREFIX = "FINETUNE_"


def nest_bare_keys(mapping: dict[str, Any], origin: str) -> dict[str, Any]:
    """Moves bare top-level keys (``learning_rate: 2e-4``) into their sections.

    Args:
        mapping: A preset's top-level mapping.
        origin: Where it came from, for error messages.

    Returns:
        The mapping with every key a top-level field of the settings.

    Raises:
        ConfigError: For an unknown or ambiguous key, or a key given both bare and in its section.
    """
    nested: dict[str, Any] = {key: value for key, value in mapping.items() if key in Settings.model_fields}
    for key, value in mapping.items():
        if key in Settings.model_fields:
            continue
        try:
            section, *path = resolve_override_key(str(key))
        except ConfigError as error:
            raise ConfigError(f"{origin}: {error}") from None
        target = nested.setdefault(section, {})
        if not isinstance(target, dict):
            target = nested[section] = {"name": target} if section == "technique" else {}
        for part in path[:-1]:
            target = target.setdefault(part, {})
        if path[-1] in target:
            raise ConfigError(f"{origin}: {key} is given twice (as {key} and as {section}.{'.'.join(path)})")
        target[path[-1]] = value
    return nested


class BareKeyEnvironmentSource(PydanticBaseSettingsSource):
    """``FINETUNE_<KEY>`` variables with a bare setting name (``FINETUNE_LEARNING_RATE=2e-4``).

    pydantic-settings reads ``FINETUNE_<SECTION>__<FIELD>``; without this source a bare variable
    would be ignored without a word. Values are read as YAML scalars, as on the command line.
    Variables that name no setting (``FINETUNE_NOTEBOOK_WORK_DIR``) are left alone.
    """

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        """Unused: the whole mapping comes from ``__call__``."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        """The bare variables as a nested mapping."""
        bare = {}
        for variable, raw in os.environ.items():
            key = variable[len(ENVIRONMENT_PREFIX) :].lower() if variable.startswith(ENVIRONMENT_PREFIX) else ""
            if not key or "__" in key or key in Settings.model_fields:
                continue
            try:
                resolve_override_key(key)
            except ConfigError as error:
                if "ambiguous" in str(error):
                    raise ConfigError(f"{variable}: {error}") from None
                continue
            bare[key] = yaml.safe_load(raw) if raw.strip() else None
        return nest_bare_keys(bare, "environment")


class YamlPresetSource(PydanticBaseSettingsSource):
    """Reads the YAML preset named by ``--config`` (lowest priority source).

    Top-level keys may be bare setting names (``learning_rate: 2e-4``), resolved as on the command line.

    A technique field set on a higher source (``rank=32``, ``FINETUNE_TECHNIQUE__RANK=32``) merges
    into the preset's technique and keeps its name. When a higher source switches the technique
    (``technique=prefix`` over a LoRA preset), the preset's technique fields that the new technique
    does not have are dropped; fields the user set are never dropped.
    """

    def __init__(self, settings_cls: type[BaseSettings], higher: tuple[PydanticBaseSettingsSource, ...] = ()):
        super().__init__(settings_cls)
        self._higher = higher

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        """Unused: the whole mapping comes from ``__call__``."""
        return None, field_name, False

    def _technique_chosen_above(self, context: _LoadContext) -> str | None:
        if context.technique_override:
            return context.technique_override
        for source in self._higher:
            technique = normalize_technique(source()).get("technique")
            if isinstance(technique, dict) and technique.get("name"):
                return str(technique["name"])
        return None

    def __call__(self) -> dict[str, Any]:
        """The preset as a nested mapping, technique and data choices reconciled with higher sources."""
        context = _load_context.get()
        if context is None or context.yaml_file is None:
            return {}
        preset = normalize_technique(nest_bare_keys(read_yaml(context.yaml_file), str(context.yaml_file)))
        technique = preset.get("technique")
        if isinstance(technique, dict):
            technique = {"name": DEFAULT_TECHNIQUE, **technique}
            switched = self._technique_chosen_above(context)
            if switched and technique["name"] != switched:
                technique = compatible_technique_fields({**technique, "name": switched})
            preset["technique"] = technique
        if isinstance(preset.get("data"), dict):
            preset["data"] = yield_data_choice(preset["data"], self._data_keys_above(context))
        return preset

    def _data_keys_above(self, context: _LoadContext) -> set[str]:
        keys = set(context.data_keys_override)
        for source in self._higher:
            data = source().get("data")
            keys |= set(data) if isinstance(data, dict) else set()
        return keys


def _mark(origins: dict[str, str], mapping: dict[str, Any], origin: str, prefix: str = "") -> None:
    """Records ``origin`` for every leaf of a nested mapping that no higher source set already."""
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value and dotted.count(".") < 1:
            _mark(origins, value, origin, f"{dotted}.")
        else:
            origins.setdefault(dotted, origin)


def _environment_keys(variables: dict[str, str | None], label: str) -> dict[str, str]:
    """Dotted setting -> ``environment FINETUNE_...`` for every variable naming a setting."""
    found = {}
    for variable in variables:
        if not variable.startswith(ENVIRONMENT_PREFIX):
            continue
        key = variable[len(ENVIRONMENT_PREFIX) :].lower()
        try:
            path = key.split("__") if "__" in key else resolve_override_key(key)
        except ConfigError:
            continue
        found[".".join(path)] = f"{label} {variable}"
    return found


def setting_origins(
    config_file: str | None, overrides: dict[str, Any], overrides_origin: str, read_environment: bool
) -> dict[str, str]:
    """Where each explicitly set setting came from, highest-priority source first (as nanochat logs it).

    Args:
        config_file: The YAML preset, or None.
        overrides: The nested overrides passed to :func:`core.domain.config.load_settings`.
        overrides_origin: How to name the overrides' source (``command line``, ``stored configuration``).
        read_environment: Whether the environment and ``.env`` were read.

    Returns:
        Dotted setting (``training.learning_rate``) -> origin (``preset examples/configs/smollm2-lora.yaml``).
    """
    origins: dict[str, str] = {}
    _mark(origins, overrides, overrides_origin)
    if read_environment:
        from dotenv import dotenv_values

        for dotted, origin in _environment_keys(dict(os.environ), "environment").items():
            origins.setdefault(dotted, origin)
        dotenv_file = Settings.model_config.get("env_file")
        if dotenv_file and os.path.isfile(str(dotenv_file)):
            for dotted, origin in _environment_keys(dotenv_values(str(dotenv_file)), ".env").items():
                origins.setdefault(dotted, origin)
    if config_file:
        preset = normalize_technique(nest_bare_keys(read_yaml(config_file), str(config_file)))
        _mark(origins, preset, f"preset {config_file}")
    return origins
