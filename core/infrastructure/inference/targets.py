"""What a target names, resolved without loading any weights.

A *target* names what to load, tried in this order:

1. a run name under ``paths.runs_dir`` (``runs/<name>/manifest.json``);
2. a directory: a run directory, a registry version directory, a merged or full model
   directory (``config.json``) or a bare PEFT adapter directory (``adapter_config.json``);
3. a registered model (``name``, ``name:3`` or ``name@production``);
4. a model name (catalog name, local directory or Hub id) resolved by
   :func:`core.infrastructure.models.resolve.resolve_model` -- the base model alone.

Adapters load their base model from the run's ``base_model_path`` and answer with the run's own
chat template. QLoRA runs load the base quantized (bitsandbytes) exactly as training did.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.domain.config import Settings
from core.domain.errors import ModelNotAvailableError
from core.domain.manifest import CHAT_TEMPLATE_FILE, FINAL_DIR, MANIFEST_FILE, RunManifest
from core.domain.techniques import technique_of_adapter
from core.infrastructure.registry.artifacts import LINEAGE_FILE
from core.infrastructure.registry.store import ARTIFACT_DIR, VERSION_FILE


@dataclass(frozen=True)
class InferenceSource:
    """What a target resolved to, before any weights are loaded.

    Attributes:
        name: Display name (run name, registry reference or model name).
        kind: ``run``, ``registry``, ``model`` or ``base``.
        artifact_dir: Directory holding the adapter or the whole model.
        base_model_path: Base model directory for adapters, else None.
        technique: Technique name (``lora``, ``qlora``, ``prefix``, ``full``) or None for plain models.
        technique_config: The run's technique section (quantization settings for QLoRA).
        chat_template: The chat template the model was trained with, when known.
        run_dir: The run directory, for runs.
    """

    name: str
    kind: str
    artifact_dir: Path
    base_model_path: Path | None = None
    technique: str | None = None
    technique_config: dict[str, Any] = field(default_factory=dict)
    chat_template: str | None = None
    run_dir: Path | None = None

    @property
    def is_adapter(self) -> bool:
        """True when the artifact is a PEFT adapter (needs a base model)."""
        return (self.artifact_dir / "adapter_config.json").is_file()


def resolve_inference_target(target: str | Path | None, settings: Settings) -> InferenceSource:
    """Works out what a target names without loading weights.

    Args:
        target: Run name, run directory, merged/registry directory, registry reference or model name;
            None or empty means ``settings.model.name``.
        settings: Settings (paths, model cache).

    Returns:
        The resolved source.

    Raises:
        ModelNotAvailableError: If nothing matches, or a run has no final model yet.
    """
    text = str(target).strip() if target is not None else ""
    if not text:
        text = settings.model.name
    runs_dir = Path(settings.paths.runs_dir)
    if _is_plain_name(text) and (runs_dir / text / MANIFEST_FILE).is_file():
        return _run_source(runs_dir / text)
    path = Path(text).expanduser()
    if path.is_dir():
        return _directory_source(path)
    reference = _registry_source(text, settings)
    if reference is not None:
        return reference
    from core.infrastructure.models.resolve import resolve_model

    resolved = resolve_model(text, Path(settings.paths.model_cache), settings.model.revision)
    return InferenceSource(name=resolved.display_name, kind="base", artifact_dir=resolved.path)


def _is_plain_name(text: str) -> bool:
    return bool(text) and "/" not in text and "\\" not in text and text not in {".", ".."}


def _technique_section(config: dict[str, Any]) -> dict[str, Any]:
    technique = config.get("technique") or {}
    return technique if isinstance(technique, dict) else {"name": str(technique)}


def _run_source(run_dir: Path) -> InferenceSource:
    manifest = RunManifest.load(run_dir)
    final_dir = run_dir / (manifest.final_path or FINAL_DIR)
    if not final_dir.is_dir():
        raise ModelNotAvailableError(
            f"run {manifest.run_name!r} has no final model yet (status: {manifest.status}); "
            "wait for training to complete or pick another run"
        )
    technique_config = _technique_section(manifest.config)
    technique = technique_config.get("name") or manifest.technique.get("name")
    chat_template = manifest.chat_template
    if chat_template is None and (run_dir / CHAT_TEMPLATE_FILE).is_file():
        chat_template = (run_dir / CHAT_TEMPLATE_FILE).read_text(encoding="utf-8")
    base = Path(manifest.base_model_path) if manifest.base_model_path else _adapter_base(final_dir)
    return InferenceSource(
        name=manifest.run_name,
        kind="run",
        artifact_dir=final_dir,
        base_model_path=base,
        technique=technique,
        technique_config=technique_config,
        chat_template=chat_template,
        run_dir=run_dir,
    )


def _adapter_base(adapter_dir: Path) -> Path | None:
    config_file = adapter_dir / "adapter_config.json"
    if not config_file.is_file():
        return None
    base = json.loads(config_file.read_text(encoding="utf-8")).get("base_model_name_or_path")
    return Path(base) if base else None


def _directory_source(path: Path) -> InferenceSource:
    if (path / MANIFEST_FILE).is_file():
        return _run_source(path)
    if (path / VERSION_FILE).is_file():
        return registry_version_source(path)
    if (path / "config.json").is_file():
        lineage = _read_json(path / LINEAGE_FILE)
        template_file = path / CHAT_TEMPLATE_FILE
        return InferenceSource(
            name=lineage.get("name") or path.name,
            kind="model",
            artifact_dir=path,
            technique=lineage.get("technique"),
            chat_template=template_file.read_text(encoding="utf-8") if template_file.is_file() else None,
        )
    if (path / "adapter_config.json").is_file():
        base = _adapter_base(path)
        if base is None:
            raise ModelNotAvailableError(f"{path}: adapter without base_model_name_or_path")
        peft_type = json.loads((path / "adapter_config.json").read_text(encoding="utf-8")).get("peft_type", "")
        return InferenceSource(
            name=path.name,
            kind="model",
            artifact_dir=path,
            base_model_path=base,
            technique=technique_of_adapter(peft_type),
        )
    raise ModelNotAvailableError(
        f"{path}: not a run, model or adapter directory (no manifest.json, config.json or adapter_config.json)"
    )


def registry_version_source(version_dir: Path) -> InferenceSource:
    """The source of a registry version directory (``<registry>/<name>/v<N>``).

    Args:
        version_dir: The version directory.

    Returns:
        The resolved source.
    """
    metadata = _read_json(version_dir / VERSION_FILE)
    lineage = metadata.get("lineage") or {}
    artifact = version_dir / ARTIFACT_DIR
    base = lineage.get("base_model_path")
    return InferenceSource(
        name=f"{metadata.get('name', version_dir.parent.name)}:{metadata.get('version', version_dir.name)}",
        kind="registry",
        artifact_dir=artifact,
        base_model_path=Path(base) if base and (artifact / "adapter_config.json").is_file() else None,
        technique=lineage.get("technique"),
        technique_config=_technique_section(lineage.get("config") or {}),
        chat_template=lineage.get("chat_template"),
    )


def _registry_source(text: str, settings: Settings) -> InferenceSource | None:
    registry_dir = Path(settings.paths.registry_dir)
    if not registry_dir.is_dir():
        return None
    from core.infrastructure.registry.store import ModelRegistry, RegistryError

    try:
        version = ModelRegistry(registry_dir).resolve(text)
    except RegistryError:
        return None
    source = registry_version_source(version.path)
    return InferenceSource(**{**source.__dict__, "name": text})


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))
