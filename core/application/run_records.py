"""What a training run writes about itself: its manifest and status, library versions, a shareable ``final/``."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any

from loguru import logger

from core.domain.config import Settings
from core.domain.manifest import MANIFEST_FILE, RunManifest
from core.domain.techniques import traits_for

VERSIONED_PACKAGES = ("torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes", "datasets")


def make_final_shareable(final_dir: Path, manifest: RunManifest, run_dir: Path) -> None:
    """Names the base model by its Hub id in ``final/`` and replaces peft's placeholder card."""
    from core.domain.portable import base_model_reference, make_adapter_portable, portable_lineage
    from core.infrastructure.registry.artifacts import run_lineage
    from core.infrastructure.registry.model_card import render_model_card

    model_name = str((manifest.config.get("model") or {}).get("name"))
    reference = base_model_reference(model_name, manifest.base_model_path)
    make_adapter_portable(final_dir, reference)
    if "/" not in reference:
        logger.warning(
            "final/ names its base model {!r} (a local model, no Hub id); another machine needs that model "
            "under the same name to load the adapter",
            reference,
        )
    kind = "adapter" if (final_dir / "adapter_config.json").is_file() else "model"
    lineage = {**portable_lineage(run_lineage(manifest, run_dir)), "kind": kind, "name": manifest.run_name}
    (final_dir / "README.md").write_text(render_model_card(lineage), encoding="utf-8")


def open_manifest(run_dir: Path, run_name: str, settings: Settings, is_main: bool) -> RunManifest:
    """Creates the run's manifest, keeping creation time and metrics of an earlier session."""
    previous = RunManifest.load(run_dir) if (run_dir / MANIFEST_FILE).is_file() else None
    manifest = RunManifest(
        run_name=run_name,
        config=settings.to_plain_dict(),
        versions=library_versions(),
        technique=dataclasses.asdict(traits_for(settings.technique.name)),
    )
    if previous is not None:
        manifest.created_at = previous.created_at
        manifest.metrics = previous.metrics
    if is_main:
        manifest.save(run_dir)
    return manifest


def set_status(manifest: RunManifest, run_dir: Path, status: str, is_main: bool) -> None:
    """Sets and saves the run's status; while preparing or training it records the process too."""
    manifest.status = status  # type: ignore[assignment]
    if status in {"preparing", "training"}:
        manifest.process = this_process()
    if is_main:
        manifest.save(run_dir)


def this_process() -> dict[str, Any]:
    """Identifies the training process, for readers that must tell a live run from a killed one."""
    import socket

    import psutil

    return {"pid": os.getpid(), "host": socket.gethostname(), "started": psutil.Process().create_time()}


def library_versions() -> dict[str, str]:
    """Python's and the training libraries' versions, for the manifest."""
    versions = {"python": platform.python_version()}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def relative_to_run(path: str | None, run_dir: Path) -> str | None:
    """A path inside the run directory as a relative POSIX path (others unchanged)."""
    if not path:
        return None
    try:
        return Path(path).resolve().relative_to(run_dir.resolve()).as_posix()
    except ValueError:
        return str(path)


def rounded(value: Any) -> Any:
    """Floats to 4 decimals for log lines."""
    return round(value, 4) if isinstance(value, float) else value
