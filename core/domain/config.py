"""Validated configuration for every use case, loaded from CLI overrides, environment and YAML.

Sources, highest priority first:

1. ``key=value`` overrides from the command line (``learning_rate=2e-4 technique=qlora``); a key
   is a dotted path (``training.learning_rate``) or a field name that is unique across sections.
2. Environment variables with the ``FINETUNE_`` prefix and ``__`` between levels
   (``FINETUNE_TRAINING__LEARNING_RATE=2e-4``), also read from ``.env``.
3. A YAML preset (``--config examples/configs/smollm2-lora.yaml``).

Every rule about a field lives next to the field: ranges in ``Field``, cross-field rules in
model validators. Validation happens before any model is loaded and fails with one line per
problem naming the field and the allowed values.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, PrivateAttr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from core.domain.errors import ConfigError
from core.domain.serve_settings import ServeSettings
from core.domain.settings_errors import TECHNIQUE_VARIANTS, format_validation_error
from core.domain.settings_sections import (
    DataSettings,
    EvaluationSettings,
    HubSettings,
    ModelSettings,
    MonitoringSettings,
    PathSettings,
    StudioSettings,
    TechniqueSettings,
    TrainingSettings,
)
from core.domain.techniques import DEFAULT_TECHNIQUE, technique_spec


class _LoadContext(BaseModel):
    """What the current :func:`load_settings` call asked for (read by the settings sources)."""

    yaml_file: Path | None = None
    technique_override: str | None = None
    data_keys_override: set[str] = set()
    read_environment: bool = True


_load_context: ContextVar[_LoadContext | None] = ContextVar("_load_context", default=None)


class Settings(BaseSettings):
    """Complete, validated configuration of Finetune Studio."""

    model_config = SettingsConfigDict(
        env_prefix="FINETUNE_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        validate_assignment=True,
    )

    run_name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
        description="Run directory name under paths.runs_dir (default: <model>-<technique>-<timestamp>).",
    )
    log_level: Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR"] = Field(
        "INFO", description="Minimum level of log messages on stderr."
    )
    model: ModelSettings = Field(default_factory=ModelSettings)
    technique: TechniqueSettings = Field(default_factory=lambda: technique_spec(DEFAULT_TECHNIQUE).settings())
    data: DataSettings = Field(default_factory=DataSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    paths: PathSettings = Field(default_factory=PathSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    studio: StudioSettings = Field(default_factory=StudioSettings)
    hub: HubSettings = Field(default_factory=HubSettings)

    _origins: dict[str, str] = PrivateAttr(default_factory=dict)

    def explained(self) -> list[str]:
        """Every setting that differs from its default, with its value and where it came from.

        Returns:
            Lines such as ``training.learning_rate = 0.001 (preset examples/configs/smollm2-lora.yaml)``.
        """
        values = _flatten(self.model_dump(mode="json"))
        technique_defaults = technique_spec(self.technique.name).settings()
        defaults = _flatten(Settings.model_construct(technique=technique_defaults).model_dump(mode="json"))
        defaults["technique.name"] = DEFAULT_TECHNIQUE
        return [
            f"{key} = {value!r} ({self._origins.get(key) or self._origins.get(key.rsplit('.', 1)[0], 'derived')})"
            for key, value in values.items()
            if key in defaults
            and value != defaults[key]
            and "secret" not in key
            and "api_key" not in key
            and "token" not in key
        ]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Orders the sources: CLI overrides, environment, ``.env``, YAML preset.

        The environment takes ``FINETUNE_TRAINING__LEARNING_RATE`` and the bare
        ``FINETUNE_LEARNING_RATE``; the YAML preset takes bare keys too.
        """
        from core.domain.settings_sources import BareKeyEnvironmentSource, YamlPresetSource

        context = _load_context.get()
        if context is not None and not context.read_environment:
            return init_settings, YamlPresetSource(settings_cls)
        bare_environment = BareKeyEnvironmentSource(settings_cls)
        preset = YamlPresetSource(settings_cls, higher=(env_settings, bare_environment, dotenv_settings))
        return init_settings, env_settings, bare_environment, dotenv_settings, preset

    @model_validator(mode="before")
    @classmethod
    def _technique_by_name(cls, data: Any) -> Any:
        """Expands ``technique: qlora``; a technique mapping named by no source is the default (LoRA)."""
        if not isinstance(data, dict):
            return data
        data = normalize_technique(data)
        if isinstance(data.get("technique"), dict) and "name" not in data["technique"]:
            data = {**data, "technique": {"name": DEFAULT_TECHNIQUE, **data["technique"]}}
        return data

    @model_validator(mode="after")
    def _cross_field_rules(self) -> Settings:
        name = self.technique.name
        traits = technique_spec(name).traits
        if not traits.supports_gradient_checkpointing and self.training.gradient_checkpointing:
            raise ValueError(
                f"training.gradient_checkpointing: technique={name} does not support it "
                "(what it adds is not recomputed); set it to false"
            )
        if not traits.supports_packing and self.training.packing == "on":
            raise ValueError(f"training.packing: technique={name} does not support packing=on; use auto or off")
        if traits.needs_bitsandbytes and importlib.util.find_spec("bitsandbytes") is None:
            raise ValueError(f"technique.name: {name} requires the bitsandbytes package; install it or pick lora")
        if self.training.precision == "fp16":
            compute = getattr(self.technique, "compute_dtype", "auto")
            if compute == "bfloat16":
                raise ValueError(
                    "training.precision: fp16 with technique.compute_dtype=bfloat16 mixes dtypes; "
                    "set technique.compute_dtype=float16"
                )
        return self

    def resolved_run_name(self) -> str:
        """Returns ``run_name`` or a name made from model, technique and the current time."""
        if self.run_name:
            return self.run_name
        from datetime import datetime

        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        model = Path(self.model.name).name.replace("/", "-").lower()[:40]
        return f"{model}-{self.technique.name}-{stamp}"

    def to_plain_dict(self) -> dict[str, Any]:
        """Returns the configuration as JSON-compatible data with secrets masked."""
        return self.model_dump(mode="json")


def _flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"training": {"learning_rate": 1e-3}}`` -> ``{"training.learning_rate": 1e-3}`` (one level deep)."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, dict) and not prefix:
            flat.update(_flatten(value, f"{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def normalize_technique(data: dict[str, Any]) -> dict[str, Any]:
    """Accepts ``technique: qlora`` as shorthand for ``technique: {name: qlora}``.

    A technique mapping without a name keeps it unnamed: the name comes from whichever source
    sets it (CLI, environment, preset), LoRA when none does.

    Args:
        data: Raw configuration mapping.

    Returns:
        The mapping with a string technique expanded.
    """
    technique = data.get("technique")
    if isinstance(technique, str):
        data = {**data, "technique": {"name": technique}}
    return data


def read_yaml(path: Path | str) -> dict[str, Any]:
    """Reads a YAML preset.

    Args:
        path: YAML file.

    Returns:
        The mapping it holds.

    Raises:
        ConfigError: If the file is missing, is not valid YAML, or does not hold a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML: {error}") from error
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(loaded).__name__}")
    return loaded


SECTION_MODELS: dict[str, type[BaseModel]] = {
    "model": ModelSettings,
    "data": DataSettings,
    "training": TrainingSettings,
    "evaluation": EvaluationSettings,
    "monitoring": MonitoringSettings,
    "paths": PathSettings,
    "serve": ServeSettings,
    "studio": StudioSettings,
    "hub": HubSettings,
}


def _technique_fields() -> set[str]:
    fields: set[str] = set()
    for variant in TECHNIQUE_VARIANTS.values():
        fields.update(variant.model_fields)
    return fields - {"name"}


def resolve_override_key(key: str) -> list[str]:
    """Turns an override key into a path of field names.

    ``training.learning_rate`` is used as is; a bare ``learning_rate`` is looked up across
    sections and must be unique there. ``technique`` and ``run_name`` are top-level keys.

    Args:
        key: The key as typed on the command line.

    Returns:
        The path, e.g. ``["training", "learning_rate"]``.

    Raises:
        ConfigError: If the key is unknown or ambiguous; the message lists candidates.
    """
    if "." in key:
        return key.split(".")
    if key in Settings.model_fields:
        return [key]
    owners = [section for section, model in SECTION_MODELS.items() if key in model.model_fields]
    if key in _technique_fields():
        owners.append("technique")
    if len(owners) == 1:
        return [owners[0], key]
    if not owners:
        raise ConfigError(f"{key}: unknown setting; use a dotted path such as training.learning_rate")
    raise ConfigError(f"{key}: ambiguous setting, found in {owners}; write it as e.g. {owners[0]}.{key}")


def parse_overrides(pairs: Iterable[str]) -> dict[str, Any]:
    """Parses ``key=value`` strings into a nested mapping; values are read as YAML scalars.

    Args:
        pairs: Strings such as ``learning_rate=2e-4`` or ``technique=qlora``.

    Returns:
        A nested mapping such as ``{"training": {"learning_rate": 0.0002}}``.

    Raises:
        ConfigError: If a pair has no ``=`` or names an unknown setting.
    """
    nested: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"{pair}: expected key=value")
        key, raw = pair.split("=", 1)
        path = resolve_override_key(key.strip())
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str | int | float) and path[-1] in {"name", "run_name", "dataset", "api_key"}:
            value = raw  # keep identifiers verbatim, e.g. a model named "1e3" or a key "0123"
        if path == ["technique"] and isinstance(value, str):
            path, value = ["technique", "name"], value
        cursor = nested
        for part in path[:-1]:
            cursor = cursor.setdefault(part, {})
        cursor[path[-1]] = value
    return nested


def load_settings(
    config_file: Path | str | None = None,
    overrides: Iterable[str] | dict[str, Any] = (),
    read_environment: bool = True,
    overrides_origin: str = "command line",
) -> Settings:
    """Builds validated settings from a YAML preset, the environment and CLI overrides.

    Args:
        config_file: Optional YAML preset.
        overrides: ``key=value`` strings or an already nested mapping (highest priority).
        read_environment: Read ``FINETUNE_*`` variables and ``.env``; tests and stored run
            configs turn this off.
        overrides_origin: How :meth:`Settings.explained` names the overrides' source.

    Returns:
        The validated settings.

    Raises:
        ConfigError: On any invalid value; the message has one ``field: problem`` line per problem.
    """
    nested = dict(overrides) if isinstance(overrides, dict) else parse_overrides(overrides)
    nested = normalize_technique(nested)
    technique = nested.get("technique")
    context = _LoadContext(
        yaml_file=Path(config_file) if config_file else None,
        technique_override=technique.get("name") if isinstance(technique, dict) else None,
        data_keys_override=set(nested["data"]) if isinstance(nested.get("data"), dict) else set(),
        read_environment=read_environment,
    )
    if config_file:
        read_yaml(config_file)  # fail early with the file name if it is missing or malformed
    token = _load_context.set(context)
    try:
        settings = Settings(**nested)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error)) from None
    finally:
        _load_context.reset(token)
    from core.domain.settings_sources import setting_origins

    config_name = str(config_file) if config_file else None
    settings._origins = setting_origins(config_name, nested, overrides_origin, read_environment)
    return settings


def compatible_technique_fields(technique: dict[str, Any]) -> dict[str, Any]:
    """Drops the fields a technique variant does not have (used when switching technique).

    Args:
        technique: Technique mapping with a ``name``.

    Returns:
        The mapping restricted to the fields of the named variant.
    """
    variant = TECHNIQUE_VARIANTS.get(technique.get("name", ""))
    if variant is None:
        return technique
    return {key: value for key, value in technique.items() if key in variant.model_fields}


def settings_from_dict(data: dict[str, Any]) -> Settings:
    """Validates a plain mapping (e.g. a run manifest's stored config) without reading the environment.

    Args:
        data: Configuration mapping.

    Returns:
        The validated settings.

    Raises:
        ConfigError: If the mapping is invalid.
    """
    return load_settings(None, dict(data), read_environment=False, overrides_origin="stored configuration")
