"""Use case of a chat-mode Space: serving runs it references on the Hub instead of shipping them.

``make space SPACE_ARGS="--hub-runs user/my-adapter[@revision]"`` names adapters pushed with
``export --push-to`` or ``registry push``. The Space folder then holds only their names
(``space_config.json``'s ``hub_runs``); when the Space starts, :func:`fetch_hub_runs` downloads each
repository through ``huggingface_hub`` (the model cache's ``hub/`` folder, so ``HF_HUB_OFFLINE=1``
serves it from there), checks it is an adapter of the Space's base model, and lays it out under
``adapters/<name>/`` like a shipped run (``final/`` plus a manifest), so the Chat tab lists it.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

from loguru import logger

from core.domain.errors import ConfigError
from core.domain.manifest import CHAT_TEMPLATE_FILE, FINAL_DIR, MANIFEST_FILE, RunManifest
from core.domain.portable import ADAPTER_CONFIG_FILE, is_hub_id
from core.domain.techniques import technique_names, technique_of_adapter, traits_for

ADAPTERS_DIR = "adapters"
"""Folder of a chat Space that holds one ``<run>/`` per served run (shipped or fetched from the Hub)."""


@dataclasses.dataclass(frozen=True)
class HubRun:
    """An adapter repository on the Hub served as a run.

    Attributes:
        name: The run name shown in the Space (the repository's name).
        repo_id: ``user/name`` on the Hub.
        revision: Branch, tag or commit (None: ``main``).
    """

    name: str
    repo_id: str
    revision: str | None = None


def parse_hub_run(reference: str) -> HubRun:
    """Reads ``user/name`` or ``user/name@revision``.

    Raises:
        ConfigError: When it is not a Hub repository id.
    """
    repo_id, _, revision = reference.strip().partition("@")
    if not is_hub_id(repo_id):
        raise ConfigError(f"--hub-runs {reference}: expected a Hub repository id, user/name[@revision]")
    return HubRun(name=repo_id.split("/", 1)[1], repo_id=repo_id, revision=revision or None)


def hub_runs_config(references: list[str], shipped_names: list[str]) -> list[dict[str, Any]]:
    """The ``hub_runs`` entries of ``space_config.json``.

    Raises:
        ConfigError: For a malformed id or two runs with the same name.
    """
    hub_runs = [parse_hub_run(reference) for reference in references]
    names = shipped_names + [run.name for run in hub_runs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"--runs/--hub-runs: two runs would be named {', '.join(repeated)}; rename one")
    return [dataclasses.asdict(run) for run in hub_runs]


def fetch_hub_runs(space_dir: Path, config: dict[str, Any], model_cache: Path) -> list[str]:
    """Downloads the Space's Hub runs and lays them out under ``adapters/<name>/``.

    Args:
        space_dir: The Space folder.
        config: ``space_config.json``.
        model_cache: The settings' model cache (downloads go to its ``hub/`` folder).

    Returns:
        The names of the runs fetched.

    Raises:
        ModelNotAvailableError: When a repository is neither cached nor downloadable.
        ConfigError: When a repository is not an adapter of the Space's base model.
    """
    from core.infrastructure.models.resolve import download_from_hub

    fetched = []
    for entry in config.get("hub_runs", []):
        run = HubRun(**entry)
        snapshot = download_from_hub(
            run.repo_id,
            model_cache,
            run.revision,
            advice="Check the adapter's repository id and revision in --hub-runs and the Space's network "
            "(a private repository needs an HF_TOKEN secret).",
        )
        target = space_dir / ADAPTERS_DIR / run.name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(snapshot, target / FINAL_DIR, ignore=shutil.ignore_patterns(".cache", "README.md"))
        manifest = hub_run_manifest(run, target / FINAL_DIR, config["base_model"])
        (target / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
        logger.info("Hub run {} ready from {} ({})", run.name, run.repo_id, run.revision or "main")
        fetched.append(run.name)
    return fetched


def hub_run_manifest(run: HubRun, final_dir: Path, base_model: str) -> RunManifest:
    """The manifest of a downloaded adapter: technique from its ``peft_type``, its chat template.

    Raises:
        ConfigError: When ``final_dir`` holds no adapter, or an adapter of another base model.
    """
    config_file = final_dir / ADAPTER_CONFIG_FILE
    if not config_file.is_file():
        raise ConfigError(f"{run.repo_id}: not an adapter repository (no {ADAPTER_CONFIG_FILE})")
    adapter = json.loads(config_file.read_text(encoding="utf-8"))
    if adapter.get("base_model_name_or_path") != base_model:
        raise ConfigError(
            f"{run.repo_id}: an adapter of {adapter.get('base_model_name_or_path')!r}; this Space serves "
            f"{base_model!r} (its runs share one base model)"
        )
    lineage = _lineage(final_dir)
    technique = lineage.get("technique")
    if technique not in technique_names():  # a push made elsewhere: the adapter's own type decides
        technique = technique_of_adapter(adapter.get("peft_type"))
    if technique is None:
        raise ConfigError(f"{run.repo_id}: unknown adapter type {adapter.get('peft_type')!r}")
    template_file = final_dir / CHAT_TEMPLATE_FILE
    chat_template = template_file.read_text(encoding="utf-8") if template_file.is_file() else None
    return RunManifest(
        run_name=run.name,
        status="completed",
        config={"model": {"name": base_model}, "technique": {"name": technique}},
        chat_template=chat_template or lineage.get("chat_template"),
        technique=dataclasses.asdict(traits_for(technique)),
        metrics=lineage.get("metrics") or {},
        final_path=FINAL_DIR,
    )


def _lineage(final_dir: Path) -> dict[str, Any]:
    from core.infrastructure.registry.hub import HUB_METADATA_FILE

    metadata_file = final_dir / HUB_METADATA_FILE
    if not metadata_file.is_file():
        return {}
    return json.loads(metadata_file.read_text(encoding="utf-8")).get("lineage") or {}
