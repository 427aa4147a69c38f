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
import os
from collections.abc import Iterable
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from core.domain.catalog import EMBEDDED_MODEL_NAME
from core.domain.errors import ConfigError
from core.domain.serve_settings import ServeSettings


class Section(BaseModel):
    """Base class of configuration sections: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSettings(Section):
    """Which model to finetune and how to load it."""

    name: str = Field(
        EMBEDDED_MODEL_NAME,
        description="Catalog name, Hugging Face Hub id, local directory or .gguf file.",
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    trust_remote_code: bool = Field(False, description="Allow custom modelling code from the Hub.")
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = Field(
        "auto", description="auto picks flash_attention_2 on CUDA when installed, sdpa otherwise."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weight dtype when loading; auto keeps fp32 master weights for training."
    )
    cpu_offload: bool = Field(False, description="Offload layers that do not fit the GPU to CPU (accelerate).")


class FullTechnique(Section):
    """Full finetuning: every parameter is trained."""

    name: Literal["full"] = "full"


class LoraTechnique(Section):
    """LoRA: low-rank adapters on chosen linear layers."""

    name: Literal["lora"] = "lora"
    rank: int = Field(16, ge=1, le=1024, description="Adapter rank r.")
    alpha: float = Field(32.0, gt=0, description="Scaling numerator; the update is scaled by alpha/r.")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the adapter input.")
    target_modules: list[str] | Literal["all-linear"] | None = Field(
        None, description="Modules to adapt; None uses the catalog default of the model family."
    )
    use_dora: bool = Field(False, description="Weight-decomposed LoRA (DoRA).")
    use_rslora: bool = Field(False, description="Rank-stabilised scaling alpha/sqrt(r).")


class QLoraTechnique(LoraTechnique):
    """QLoRA: LoRA on a base model quantized with bitsandbytes."""

    name: Literal["qlora"] = "qlora"  # type: ignore[assignment]
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type.")
    double_quant: bool = Field(True, description="Quantize the quantization constants too.")
    compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto",
        description="Dtype of the matmuls on dequantized weights; auto follows training.precision "
        "(bf16/fp16 autocast, float32 on CPUs without native bf16).",
    )
    load_in_8bit: bool = Field(False, description="Use 8-bit (LLM.int8) instead of 4-bit quantization.")


class PrefixTechnique(Section):
    """Prefix Tuning: trainable virtual key/value tokens prepended at every layer."""

    name: Literal["prefix"] = "prefix"
    num_virtual_tokens: int = Field(20, ge=1, le=512, description="Virtual tokens per layer.")
    prefix_projection: bool = Field(False, description="Reparameterise the prefix through an MLP.")
    encoder_hidden_size: int | None = Field(None, ge=1, description="Hidden size of that MLP.")
    init_text: str | None = Field(
        "Answer the following request accurately and concisely.",
        min_length=1,
        description="Initialise the prefix with the model's own keys/values for this text (repeated to "
        "num_virtual_tokens); null draws it at random (PEFT's default). Ignored with prefix_projection.",
    )


TechniqueSettings = Annotated[
    FullTechnique | LoraTechnique | QLoraTechnique | PrefixTechnique, Field(discriminator="name")
]
"""Discriminated union of the techniques; the ``name`` field selects the variant."""


class DataSettings(Section):
    """Where the data comes from and how it becomes training examples."""

    dataset: str = Field(
        "demo",
        description="'demo', a local file/directory (JSON, JSONL, CSV, Parquet) or a Hub dataset id.",
    )
    format: Literal["auto", "alpaca", "dolly", "sharegpt", "openai", "oasst", "custom"] = "auto"
    field_mapping: dict[str, str] = Field(
        default_factory=dict,
        description="custom format: maps instruction/input/output/system to the file's column names.",
    )
    template: Literal["model", "alpaca", "chatml", "custom"] = Field(
        "model", description="model uses the tokenizer's own chat template."
    )
    custom_template: str | None = Field(None, description="Jinja chat template when template=custom.")
    system_prompt: str | None = Field(None, description="System prompt added where the data has none.")
    max_seq_length: int = Field(512, ge=16, le=131072)
    truncation: Literal["split_turns", "keep_first", "truncate", "drop"] = Field(
        "split_turns",
        description="A conversation longer than max_seq_length: split_turns cuts it at turn boundaries into "
        "samples that train every answer; keep_first (old name: truncate) keeps one window; drop skips it.",
    )
    train_on_prompt: bool = Field(False, description="Also train on prompt tokens (default: assistant only).")
    deduplicate: Literal["exact", "normalized", "none"] = Field(
        "exact", description="Remove repeated conversations: identical, or also up to case/punctuation/spaces."
    )
    train_on: Literal["all_assistant", "last_assistant"] = Field(
        "all_assistant", description="Which assistant turns are trained: every one, or the last of each conversation."
    )
    validation_fraction: float = Field(0.05, ge=0.0, lt=0.5)
    test_fraction: float = Field(0.05, ge=0.0, lt=0.5)
    max_samples: int | None = Field(None, ge=1, description="Keep at most this many records (after shuffling).")
    lenient: bool = Field(False, description="Skip bad records (reported) instead of stopping.")
    oasst_language: str | None = Field("en", description="Language filter for OpenAssistant trees.")
    split: str = Field("train", description="Split to read from a Hub dataset.")
    seed: int = 42

    @model_validator(mode="after")
    def _custom_template_needs_text(self) -> DataSettings:
        if self.template == "custom" and not self.custom_template:
            raise ValueError("data.custom_template: required when data.template=custom (a Jinja chat template)")
        return self


class TrainingSettings(Section):
    """Optimisation hyper-parameters and training-loop behaviour."""

    num_epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, ge=-1, description="Stop after this many optimizer steps (-1: use epochs).")
    per_device_batch_size: int = Field(4, ge=1)
    eval_batch_size: int = Field(8, ge=1)
    eval_max_samples: int | None = Field(
        128, ge=1, description="Validation examples used for in-training evaluation (None: all)."
    )
    gradient_accumulation_steps: int = Field(1, ge=1)
    learning_rate: float = Field(2e-4, gt=0, le=1.0)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts"] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    max_grad_norm: float = Field(1.0, ge=0.0)
    optimizer: Literal["adamw_torch", "adamw_torch_fused", "sgd", "adafactor", "paged_adamw_8bit"] = "adamw_torch"
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="auto: bf16 on CPUs/GPUs that support it, fp16 on older GPUs, else fp32."
    )
    gradient_checkpointing: bool = False
    packing: Literal["auto", "on", "off"] = Field(
        "auto", description="Padding-free packing; auto enables it when correct for the model and technique."
    )
    group_by_length: bool = Field(True, description="Length-grouped batches when not packing.")

    @field_validator("packing", mode="before")
    @classmethod
    def _packing_from_bool(cls, value: Any) -> Any:
        """Accepts YAML booleans (``packing: off`` parses as False) for the on/off switch."""
        if isinstance(value, bool):
            return "on" if value else "off"
        return value

    seed: int = 42
    logging_steps: int = Field(1, ge=1)
    eval_steps: int | None = Field(None, ge=1, description="Evaluate every N steps (None: once per epoch).")
    save_steps: int | None = Field(None, ge=1, description="Checkpoint every N steps (None: at evaluations).")
    save_total_limit: int = Field(2, ge=1)
    early_stopping_patience: int | None = Field(None, ge=1)
    early_stopping_threshold: float = Field(0.0, ge=0.0)
    sample_every_steps: int | None = Field(None, ge=1, description="Generate samples every N steps.")
    sample_prompts: list[str] = Field(default_factory=list)
    nan_policy: Literal["skip", "stop"] = Field("skip", description="On NaN/inf loss: skip the update or stop.")
    resume: str = Field("auto", description="'auto' (newest complete checkpoint), 'never', or a checkpoint path.")
    dataloader_num_workers: int = Field(0, ge=0)

    @property
    def effective_batch_size(self) -> int:
        """Sequences per optimizer step on one process."""
        return self.per_device_batch_size * self.gradient_accumulation_steps


class CheckSpec(Section):
    """One instruction-following check applied to generated answers (IFEval-style)."""

    kind: Literal[
        "valid_json",
        "json_keys",
        "min_words",
        "max_words",
        "max_sentences",
        "contains",
        "not_contains",
        "ends_with",
        "starts_with",
        "bullet_count",
        "language",
        "regex",
        "exact_match",
    ]
    value: Any = None


class EvaluationSettings(Section):
    """How runs are evaluated."""

    max_new_tokens: int = Field(96, ge=1, le=8192)
    batch_size: int = Field(8, ge=1)
    max_samples: int | None = Field(64, ge=1, description="Generate for at most this many test records.")
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1.0)
    metrics: list[Literal["loss", "perplexity", "rouge", "bleu", "exact_match", "checks"]] = Field(
        default_factory=lambda: ["loss", "perplexity", "rouge", "bleu", "exact_match", "checks"]
    )
    checks: list[CheckSpec] = Field(
        default_factory=list, description="Checks applied to every answer, in addition to per-record checks."
    )


class MonitoringSettings(Section):
    """Experiment tracking."""

    tensorboard: bool = True
    wandb: bool = False
    wandb_project: str = "finetune-studio"
    wandb_entity: str | None = None
    wandb_mode: Literal["online", "offline", "disabled"] = "offline"
    wandb_api_key: SecretStr | None = None


class PathSettings(Section):
    """Where things are stored."""

    runs_dir: Path = Path("runs")
    model_cache: Path = Path(".cache/models")
    data_dir: Path = Path("data")
    registry_dir: Path = Path("registry")


class StudioSettings(Section):
    """Gradio studio."""

    host: str = "127.0.0.1"
    port: int = Field(7860, ge=1, le=65535)
    share: bool = False


class _LoadContext(BaseModel):
    """What the current :func:`load_settings` call asked for (read by the settings sources)."""

    yaml_file: Path | None = None
    technique_override: str | None = None
    read_environment: bool = True


_load_context: ContextVar[_LoadContext | None] = ContextVar("_load_context", default=None)


class _YamlPresetSource(PydanticBaseSettingsSource):
    """Reads the YAML preset named by ``--config`` (lowest priority source).

    When the command line switches the technique (``technique=prefix`` over a LoRA preset), the
    preset's technique fields that the new technique does not have are dropped.
    """

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        context = _load_context.get()
        if context is None or context.yaml_file is None:
            return {}
        preset = normalize_technique(read_yaml(context.yaml_file))
        switched = context.technique_override
        if switched and isinstance(preset.get("technique"), dict) and preset["technique"].get("name") != switched:
            preset["technique"] = compatible_technique_fields({**preset["technique"], "name": switched})
        return preset


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
    technique: TechniqueSettings = Field(default_factory=LoraTechnique)
    data: DataSettings = Field(default_factory=DataSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    paths: PathSettings = Field(default_factory=PathSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    studio: StudioSettings = Field(default_factory=StudioSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Orders the sources: CLI overrides, environment, ``.env``, YAML preset."""
        context = _load_context.get()
        if context is not None and not context.read_environment:
            return init_settings, _YamlPresetSource(settings_cls)
        return init_settings, env_settings, dotenv_settings, _YamlPresetSource(settings_cls)

    @model_validator(mode="before")
    @classmethod
    def _technique_by_name(cls, data: Any) -> Any:
        return normalize_technique(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _cross_field_rules(self) -> Settings:
        if self.technique.name == "prefix" and self.training.gradient_checkpointing:
            raise ValueError(
                "training.gradient_checkpointing: technique=prefix does not support it "
                "(the virtual key/value prefix is not recomputed); set it to false"
            )
        if self.technique.name == "prefix" and self.training.packing == "on":
            raise ValueError("training.packing: technique=prefix does not support packing=on; use auto or off")
        if self.technique.name == "qlora" and importlib.util.find_spec("bitsandbytes") is None:
            raise ValueError("technique.name: qlora requires the bitsandbytes package; install it or pick lora")
        if self.training.precision == "fp16" and self.technique.name == "qlora":
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


def normalize_technique(data: dict[str, Any]) -> dict[str, Any]:
    """Accepts ``technique: qlora`` as shorthand for ``technique: {name: qlora}``.

    Args:
        data: Raw configuration mapping.

    Returns:
        The mapping with a string technique expanded.
    """
    technique = data.get("technique")
    if isinstance(technique, str):
        data = {**data, "technique": {"name": technique}}
    elif isinstance(technique, dict) and "name" not in technique:
        data = {**data, "technique": {"name": "lora", **technique}}
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
}


def _technique_fields() -> set[str]:
    fields: set[str] = set()
    for variant in (FullTechnique, LoraTechnique, QLoraTechnique, PrefixTechnique):
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


def format_validation_error(error: ValidationError) -> str:
    """Formats a pydantic error as one line per problem: ``field: problem``.

    Args:
        error: The validation error.

    Returns:
        Lines such as ``training.learning_rate: Input should be greater than 0 (got -1)``.
    """
    lines = []
    for problem in error.errors():
        location = ".".join(str(part) for part in problem["loc"] if not str(part).startswith("function-"))
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "union_tag_invalid":
            location = location or "technique.name"
            got = problem.get("input", {}).get("name") if isinstance(problem.get("input"), dict) else None
            allowed = problem.get("ctx", {}).get("expected_tags", "")
            message = f"unknown technique {got!r}; allowed values: {allowed}"
        elif "input" in problem and not isinstance(problem["input"], dict | list):
            message = f"{message} (got {problem['input']!r})"
        lines.append(f"{location}: {message}" if location else message)
    return "\n".join(lines)


def load_settings(
    config_file: Path | str | None = None,
    overrides: Iterable[str] | dict[str, Any] = (),
    read_environment: bool = True,
) -> Settings:
    """Builds validated settings from a YAML preset, the environment and CLI overrides.

    Args:
        config_file: Optional YAML preset.
        overrides: ``key=value`` strings or an already nested mapping (highest priority).
        read_environment: Read ``FINETUNE_*`` variables and ``.env``; tests and stored run
            configs turn this off.

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
        read_environment=read_environment,
    )
    if config_file:
        read_yaml(config_file)  # fail early with the file name if it is missing or malformed
    token = _load_context.set(context)
    try:
        return Settings(**nested)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error)) from None
    finally:
        _load_context.reset(token)


def compatible_technique_fields(technique: dict[str, Any]) -> dict[str, Any]:
    """Drops the fields a technique variant does not have (used when switching technique).

    Args:
        technique: Technique mapping with a ``name``.

    Returns:
        The mapping restricted to the fields of the named variant.
    """
    variants = {
        "full": FullTechnique,
        "lora": LoraTechnique,
        "qlora": QLoraTechnique,
        "prefix": PrefixTechnique,
    }
    variant = variants.get(technique.get("name", ""))
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
    return load_settings(None, dict(data), read_environment=False)


def environment_documentation() -> list[tuple[str, str, str]]:
    """Lists every environment variable with its default and description (for ``.env.example``).

    Returns:
        Tuples of (variable name, default as text, description).
    """
    rows: list[tuple[str, str, str]] = []
    for field_name in ("run_name", "log_level"):
        info = Settings.model_fields[field_name]
        rows.append((f"FINETUNE_{field_name.upper()}", _as_env_text(info.default), info.description or ""))
    for section, model in SECTION_MODELS.items():
        for field_name, info in model.model_fields.items():
            default = info.default if info.default_factory is None else info.default_factory()
            rows.append(
                (
                    f"FINETUNE_{section.upper()}__{field_name.upper()}",
                    _as_env_text(default),
                    info.description or "",
                )
            )
    for variant in (LoraTechnique, QLoraTechnique, PrefixTechnique, FullTechnique):
        for field_name, info in variant.model_fields.items():
            name = f"FINETUNE_TECHNIQUE__{field_name.upper()}"
            if all(row[0] != name for row in rows):
                rows.append((name, _as_env_text(info.default), info.description or f"{variant.__name__} field"))
    return rows


def _as_env_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | dict):
        import json

        return json.dumps(value)
    if isinstance(value, SecretStr):
        return ""
    return str(value)


def environment_overrides_present() -> bool:
    """Returns True when any ``FINETUNE_*`` variable is set (reported by ``validate-config``)."""
    return any(name.startswith("FINETUNE_") for name in os.environ)
