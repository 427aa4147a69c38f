"""Presets from other tools' SFT configs: a LLaMA-Factory or axolotl YAML becomes this project's preset.

:func:`import_foreign_config` detects the format, maps every key it knows to a setting of
:class:`~core.domain.config.Settings` and lists every key it could not map, with the reason.
The per-format tables live in :mod:`core.domain.foreign_llamafactory` and
:mod:`core.domain.foreign_axolotl`; both use the :class:`KeyMapper` defined here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.domain.catalog import find_entry
from core.domain.errors import ConfigError

LR_SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts")
OPTIMIZERS = ("adamw_torch", "adamw_torch_fused", "sgd", "adafactor", "paged_adamw_8bit")
SECTION_ORDER = ("run_name", "model", "technique", "data", "training", "evaluation", "monitoring")


@dataclass
class UnmappedKey:
    """A key of the foreign config that the preset does not carry."""

    key: str
    value: Any
    reason: str

    def line(self) -> str:
        """``key: value (reason)`` on one line."""
        return f"{self.key}: {json.dumps(self.value, default=str)} ({self.reason})"


@dataclass
class KeyMapper:
    """Walks a foreign config: each key is mapped to a setting, skipped with a reason, or left unmapped.

    Attributes:
        source: The foreign mapping.
        base_directory: The config file's folder (relative dataset paths are resolved from it).
        preset: The preset being built (nested sections).
        unmapped: Keys that could not be mapped.
        consumed: Keys already handled.
    """

    source: dict[str, Any]
    base_directory: Path
    preset: dict[str, Any] = field(default_factory=dict)
    unmapped: list[UnmappedKey] = field(default_factory=list)
    consumed: set[str] = field(default_factory=set)

    def take(self, key: str, default: Any = None) -> Any:
        """Marks ``key`` as handled and returns its value (``default`` when absent or empty)."""
        self.consumed.add(key)
        value = self.source.get(key)
        return default if value is None else value

    def put(self, path: str, value: Any) -> None:
        """Sets a dotted preset path (``training.learning_rate``) to ``value``."""
        *sections, name = path.split(".")
        cursor = self.preset
        for section in sections:
            cursor = cursor.setdefault(section, {})
        cursor[name] = value

    def copy(self, key: str, path: str) -> None:
        """Copies ``key`` to ``path`` when it has a value."""
        value = self.take(key)
        if value is not None:
            self.put(path, value)

    def skip(self, key: str, reason: str, value: Any = None) -> None:
        """Records ``key`` as not mapped, with the reason."""
        self.consumed.add(key)
        shown = self.source.get(key) if value is None else value
        self.unmapped.append(UnmappedKey(key, shown, reason))

    def choice(self, key: str, path: str, allowed: tuple[str, ...], translate: dict[str, str] | None = None) -> None:
        """Copies ``key`` when its value (after ``translate``) is one of ``allowed``; skips it otherwise."""
        value = self.take(key)
        if value is None:
            return
        value = (translate or {}).get(str(value), value)
        if value in allowed:
            self.put(path, value)
        else:
            self.skip(key, f"{path} takes {', '.join(allowed)}")

    def model_name(self, key: str) -> None:
        """The model: the catalog name when the Hub id is in the catalog, the id or path as given otherwise."""
        value = self.take(key)
        if value is None:
            raise ConfigError(f"{key}: the config names no model")
        entry = find_entry(str(value))
        self.put("model.name", entry.name if entry else str(value))

    def warmup(self, ratio_key: str, steps_key: str) -> None:
        """``warmup_ratio`` as is; ``warmup_steps`` becomes a ratio of ``max_steps`` when that is known."""
        self.copy(ratio_key, "training.warmup_ratio")
        steps = self.take(steps_key)
        if not steps:
            return
        max_steps = self.preset.get("training", {}).get("max_steps", -1)
        if max_steps and max_steps > 0 and steps < max_steps:
            self.put("training.warmup_ratio", round(steps / max_steps, 6))
        else:
            self.skip(steps_key, "training.warmup_ratio is a fraction of the steps; the step count is not known")

    def precision(self, bf16_key: str, fp16_key: str) -> None:
        """``bf16: true`` -> bf16, ``fp16: true`` -> fp16, ``bf16: auto`` -> auto."""
        bf16, fp16 = self.take(bf16_key), self.take(fp16_key)
        if bf16 == "auto":
            self.put("training.precision", "auto")
        elif bf16 is True:
            self.put("training.precision", "bf16")
        elif fp16 is True:
            self.put("training.precision", "fp16")

    def split_settings(self, validation_key: str, packing_key: str, seed_key: str) -> None:
        """Validation fraction (a float below 0.5), packing switch and seed (data and training)."""
        size = self.take(validation_key)
        if isinstance(size, float) and 0 <= size < 0.5:
            self.put("data.validation_fraction", size)
        elif size:
            self.skip(validation_key, "data.validation_fraction is a fraction below 0.5")
        packing = self.take(packing_key)
        if packing is not None:
            self.put("training.packing", "on" if packing else "off")
        seed = self.take(seed_key)
        if seed is not None:
            self.put("data.seed", seed)
            self.put("training.seed", seed)

    def local_file(self, name: str, directory: Path | None = None) -> Path | None:
        """``name`` as an existing file or folder, relative to ``directory``, the config's folder or the cwd."""
        candidates = [Path(name)] if Path(name).is_absolute() else []
        candidates += [folder / name for folder in (directory, self.base_directory, Path.cwd()) if folder is not None]
        found = next((candidate.resolve() for candidate in candidates if candidate.exists()), None)
        if found is not None and found.is_relative_to(Path.cwd()):
            return found.relative_to(Path.cwd())
        return found

    def leftover(self) -> None:
        """Every key not handled yet is unmapped (empty keys set nothing and are not listed)."""
        for key, value in self.source.items():
            if key not in self.consumed and value is not None:
                self.unmapped.append(UnmappedKey(key, value, "no equivalent setting"))


@dataclass
class ImportedPreset:
    """The result of an import: the preset, where it came from and what it could not carry."""

    source_format: str
    preset: dict[str, Any]
    unmapped: list[UnmappedKey]

    def yaml_text(self, source_name: str) -> str:
        """The preset as YAML, headed by comments naming the source and every unmapped key."""
        lines = [f"# Imported from the {self.source_format} config {source_name} by finetune-studio import-config."]
        if self.unmapped:
            lines.append(f"# Not mapped ({len(self.unmapped)} key(s); set them by hand if they matter):")
            lines += [f"#   {item.line()}" for item in self.unmapped]
        else:
            lines.append("# Every key was mapped.")
        ordered = {key: self.preset[key] for key in SECTION_ORDER if key in self.preset}
        return "\n".join(lines) + "\n" + yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True)


def detect_format(source: dict[str, Any]) -> str:
    """Names the tool that wrote ``source``: ``llamafactory`` or ``axolotl``.

    Args:
        source: The foreign mapping.

    Returns:
        The format name.

    Raises:
        ConfigError: If neither format's characteristic keys are present.
    """
    llamafactory = {"model_name_or_path", "finetuning_type", "cutoff_len", "lora_target", "stage", "dataset"}
    axolotl = {"base_model", "adapter", "sequence_len", "micro_batch_size", "datasets", "lora_r"}
    scores = {"llamafactory": len(llamafactory & set(source)), "axolotl": len(axolotl & set(source))}
    best = max(scores, key=lambda name: scores[name])
    if scores[best] == 0 or scores["llamafactory"] == scores["axolotl"]:
        raise ConfigError(
            "not a LLaMA-Factory or axolotl SFT config (expected keys such as model_name_or_path/finetuning_type "
            "or base_model/adapter/sequence_len)"
        )
    return best


def import_foreign_config(source: dict[str, Any], base_directory: Path) -> ImportedPreset:
    """Maps a LLaMA-Factory or axolotl SFT config to this project's preset.

    Args:
        source: The foreign mapping (parsed YAML).
        base_directory: The config file's folder.

    Returns:
        The preset and the keys it could not map.

    Raises:
        ConfigError: If the format is unknown or the config is not supervised finetuning.
    """
    from core.domain.foreign_axolotl import map_axolotl
    from core.domain.foreign_llamafactory import map_llamafactory

    source_format = detect_format(source)
    mapper = KeyMapper(source=source, base_directory=base_directory)
    if source_format == "llamafactory":
        map_llamafactory(mapper)
        title = "LLaMA-Factory"
    else:
        map_axolotl(mapper)
        title = "axolotl"
    mapper.leftover()
    return ImportedPreset(source_format=title, preset=mapper.preset, unmapped=mapper.unmapped)
