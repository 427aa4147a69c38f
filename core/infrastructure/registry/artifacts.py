"""What may be registered: valid model names, and what a run, model or adapter directory holds."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from core.domain.errors import FinetuneStudioError
from core.domain.manifest import CHAT_TEMPLATE_FILE, FINAL_DIR, MANIFEST_FILE, RunManifest
from core.domain.techniques import technique_of_adapter

LINEAGE_FILE = "lineage.json"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class RegistryError(FinetuneStudioError):
    """A registry operation failed (unknown name or version, invalid name, corrupted files)."""


def validate_name(name: str) -> str:
    """Checks a registered model name (letters, digits, ``.``, ``_``, ``-``; no paths).

    Args:
        name: The name.

    Returns:
        The name.

    Raises:
        RegistryError: If the name is invalid.
    """
    if not NAME_PATTERN.match(name or "") or ".." in name:
        raise RegistryError(
            f"{name!r}: invalid model name; use letters, digits, '.', '_' and '-' (no '/', no '..', at most 100)"
        )
    return name


def run_lineage(manifest: RunManifest, run_dir: Path) -> dict[str, Any]:
    """A run's lineage record: base model, data, technique, settings, metrics, chat template.

    Args:
        manifest: The run's manifest.
        run_dir: The run directory (for the chat template file of older runs).

    Returns:
        The record (it holds the local ``base_model_path``; see ``core.domain.portable``).
    """
    technique = (manifest.config.get("technique") or {}).get("name") or manifest.technique.get("name")
    chat_template = manifest.chat_template
    if chat_template is None and (run_dir / CHAT_TEMPLATE_FILE).is_file():
        chat_template = (run_dir / CHAT_TEMPLATE_FILE).read_text(encoding="utf-8")
    return {
        "run_name": manifest.run_name,
        "base_model": (manifest.config.get("model") or {}).get("name"),
        "base_model_path": manifest.base_model_path,
        "dataset": (manifest.config.get("data") or {}).get("dataset"),
        "data_fingerprint": manifest.data_fingerprint,
        "technique": technique,
        "config": manifest.config,
        "metrics": manifest.metrics,
        "chat_template": chat_template,
        "versions": manifest.versions,
    }


def describe_source(source: Path) -> tuple[Path, str, dict[str, Any]]:
    """Works out what a directory to register holds.

    Args:
        source: A run directory, a merged/full model directory or a PEFT adapter directory.

    Returns:
        ``(artifact directory, kind, lineage)``.

    Raises:
        RegistryError: If the directory holds nothing registrable.
    """
    source = Path(source)
    if (source / MANIFEST_FILE).is_file():
        manifest = RunManifest.load(source)
        artifact = source / (manifest.final_path or FINAL_DIR)
        if manifest.status != "completed" or not artifact.is_dir():
            raise RegistryError(f"{source}: run is {manifest.status} and has no final model; register a completed run")
        kind = "adapter" if (artifact / "adapter_config.json").is_file() else "model"
        lineage = run_lineage(manifest, source)
        return artifact, kind, lineage
    if (source / "config.json").is_file():
        lineage_file = source / LINEAGE_FILE
        lineage = json.loads(lineage_file.read_text(encoding="utf-8")) if lineage_file.is_file() else {}
        return source, "model", lineage
    if (source / "adapter_config.json").is_file():
        adapter = json.loads((source / "adapter_config.json").read_text(encoding="utf-8"))
        base = adapter.get("base_model_name_or_path")
        technique = technique_of_adapter(adapter.get("peft_type"))
        return source, "adapter", {"base_model": base, "base_model_path": base, "technique": technique}
    raise RegistryError(f"{source}: not a run, model or adapter directory")
