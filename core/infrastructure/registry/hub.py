"""Hugging Face Hub push and pull for registered models (through ``huggingface_hub``).

:func:`build_upload_folder` assembles exactly what a push uploads -- the artifact files, a model
card ``README.md`` and ``finetune_studio.json`` (lineage and checksums) -- so it can be inspected
and tested without a network. :func:`push_to_hub` uploads that folder; :func:`pull_from_hub`
downloads a repository and registers it as a new version. Both refuse with a clear message when
the Hub is unreachable by configuration (``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from loguru import logger

from core.domain.errors import FinetuneStudioError
from core.domain.portable import portable_lineage
from core.infrastructure.registry.artifacts import LINEAGE_FILE
from core.infrastructure.registry.model_card import render_model_card
from core.infrastructure.registry.store import ModelRegistry, RegisteredVersion

HUB_METADATA_FILE = "finetune_studio.json"


class HubUnavailableError(FinetuneStudioError):
    """The Hugging Face Hub cannot be reached (offline mode or network error)."""


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set to a true value (read at call time)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def build_upload_folder(registered: RegisteredVersion, destination: Path) -> Path:
    """Writes the folder a push uploads.

    Contents: every artifact file (adapter or model, tokenizer, chat template), ``README.md``
    (model card; an artifact's own card is replaced) and ``finetune_studio.json``.

    Args:
        registered: The version to upload.
        destination: Empty or missing directory to fill.

    Returns:
        The destination.
    """
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    for relative in sorted(registered.checksums):
        source = registered.artifact_dir / relative
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    shipped = portable_lineage(registered.lineage)
    lineage = {**shipped, "kind": registered.kind, "name": registered.lineage.get("name") or registered.name}
    (destination / "README.md").write_text(
        render_model_card(lineage, title=f"{registered.name} (version {registered.version})"), encoding="utf-8"
    )
    metadata = {
        "name": registered.name,
        "version": registered.version,
        "kind": registered.kind,
        "created_at": registered.created_at,
        "lineage": shipped,
        "checksums": registered.checksums,
    }
    (destination / HUB_METADATA_FILE).write_text(json.dumps(metadata, indent=2, default=str), encoding="utf-8")
    return destination


def push_to_hub(
    registry: ModelRegistry,
    reference: str,
    repo_id: str,
    private: bool = True,
    token: str | None = None,
) -> str:
    """Uploads a registered version to a Hub model repository (created if missing).

    Args:
        registry: The registry.
        reference: ``name``, ``name:3`` or ``name@production``.
        repo_id: ``user/repo`` on the Hub.
        private: Create the repository as private.
        token: Hub token (default: the logged-in user's).

    Returns:
        The repository URL.

    Raises:
        HubUnavailableError: When offline or the upload fails.
    """
    registered = registry.resolve(reference)
    if hub_offline():
        raise HubUnavailableError(
            f"cannot push {registered.reference} to {repo_id}: HF_HUB_OFFLINE is set, the Hugging Face Hub is not "
            "reachable. Unset HF_HUB_OFFLINE (and log in with `hf auth login`) to push."
        )
    from huggingface_hub import create_repo, upload_folder

    with tempfile.TemporaryDirectory(prefix="finetune-studio-push-") as folder:
        build_upload_folder(registered, Path(folder))
        try:
            url = create_repo(repo_id, token=token, private=private, exist_ok=True, repo_type="model")
            upload_folder(
                repo_id=repo_id,
                folder_path=folder,
                token=token,
                repo_type="model",
                commit_message=f"Upload {registered.reference} from Finetune Studio",
            )
        except Exception as error:
            raise HubUnavailableError(f"push of {registered.reference} to {repo_id} failed: {error}") from error
    logger.success("Pushed {} to {} ({})", registered.reference, repo_id, "private" if private else "public")
    return str(url)


def pull_from_hub(
    registry: ModelRegistry,
    repo_id: str,
    name: str,
    revision: str | None = None,
    token: str | None = None,
) -> RegisteredVersion:
    """Downloads a Hub model repository and registers it as the next version of ``name``.

    Args:
        registry: The registry.
        repo_id: ``user/repo`` on the Hub.
        name: Registered model name.
        revision: Branch, tag or commit.
        token: Hub token.

    Returns:
        The new version.

    Raises:
        HubUnavailableError: When offline or the download fails.
    """
    if hub_offline():
        raise HubUnavailableError(
            f"cannot pull {repo_id}: HF_HUB_OFFLINE is set, the Hugging Face Hub is not reachable. "
            "Unset HF_HUB_OFFLINE to pull."
        )
    from huggingface_hub import snapshot_download

    with tempfile.TemporaryDirectory(prefix="finetune-studio-pull-") as folder:
        try:
            snapshot_download(repo_id, revision=revision, token=token, local_dir=folder, repo_type="model")
        except Exception as error:
            raise HubUnavailableError(f"pull of {repo_id} failed: {error}") from error
        shutil.rmtree(Path(folder) / ".cache", ignore_errors=True)
        metadata_file = Path(folder) / HUB_METADATA_FILE
        lineage = {"hub_repo": repo_id, "hub_revision": revision}
        if metadata_file.is_file():
            metadata = json.loads(metadata_file.read_text(encoding="utf-8"))
            lineage = {**metadata.get("lineage", {}), **lineage}
            metadata_file.unlink()
            if not (Path(folder) / LINEAGE_FILE).exists() and metadata.get("kind") == "model":
                (Path(folder) / LINEAGE_FILE).write_text(json.dumps(lineage, default=str), encoding="utf-8")
        return registry.register(name, Path(folder), extra_lineage=lineage)
