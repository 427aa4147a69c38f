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
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from core.domain.errors import ConfigError, FinetuneStudioError
from core.domain.output_dirs import MARKER_FILE
from core.domain.portable import ADAPTER_CONFIG_FILE, make_adapter_portable, portable_lineage
from core.infrastructure.checksums import sha256_file
from core.infrastructure.registry.artifacts import LINEAGE_FILE
from core.infrastructure.registry.model_card import render_model_card
from core.infrastructure.registry.store import ModelRegistry, RegisteredVersion

HUB_METADATA_FILE = "finetune_studio.json"
SKIPPED_FILES = (MARKER_FILE,)  # this machine's bookkeeping, never uploaded
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


class HubUnavailableError(FinetuneStudioError):
    """The Hugging Face Hub cannot be reached (offline mode or network error)."""


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``, which huggingface_hub also obeys) is true."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in {"1", "true", "yes", "on"}


def build_upload_folder(registered: RegisteredVersion, destination: Path) -> Path:
    """Writes the folder a push uploads.

    Contents: every artifact file (adapter or model, tokenizer, chat template; an adapter's config
    names its base model by the portable reference), ``README.md`` (model card; an artifact's own
    card is replaced) and ``finetune_studio.json``.

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
    checksums = dict(registered.checksums)
    adapter_config = destination / ADAPTER_CONFIG_FILE
    if shipped.get("base_model") and adapter_config.is_file():
        base = json.loads(adapter_config.read_text(encoding="utf-8")).get("base_model_name_or_path")
        if base != shipped["base_model"]:  # registered with a local base path (older runs, bare adapters)
            make_adapter_portable(destination, str(shipped["base_model"]))
            checksums[ADAPTER_CONFIG_FILE] = sha256_file(adapter_config)
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
        "checksums": checksums,
    }
    (destination / HUB_METADATA_FILE).write_text(json.dumps(metadata, indent=2, default=str), encoding="utf-8")
    return destination


@dataclass(frozen=True)
class UploadFile:
    """One file of an upload: its path in the repository and its size."""

    path: str
    size_bytes: int


def check_repo_id(repo_id: str) -> str:
    """Returns ``repo_id`` when it has the Hub's ``user/name`` form.

    Raises:
        ConfigError: Otherwise.
    """
    if not REPO_ID.match(repo_id or ""):
        raise ConfigError(f"Hub repository {repo_id!r}: expected user/name (letters, digits, '-', '_', '.')")
    return repo_id


def hub_token(configured: str | None) -> str:
    """The token a push uses: ``hub.token``, else ``HF_TOKEN`` or the ``hf auth login`` token.

    Args:
        configured: ``hub.token`` from the settings.

    Returns:
        The token.

    Raises:
        HubUnavailableError: When offline (``HF_HUB_OFFLINE``) or no token is available.
    """
    if hub_offline():
        raise HubUnavailableError(
            "cannot push: HF_HUB_OFFLINE is set (or TRANSFORMERS_OFFLINE), the Hugging Face Hub is not reachable. "
            "Unset it to push (--dry-run lists what would be uploaded)."
        )
    from huggingface_hub import get_token

    token = configured or get_token()
    if not token:
        raise HubUnavailableError(
            "cannot push: no Hugging Face token. Set hub.token (FINETUNE_HUB__TOKEN) or HF_TOKEN, "
            "or log in with `hf auth login`."
        )
    return token


def upload_listing(folder: Path) -> list[UploadFile]:
    """Every file :func:`upload_to_hub` sends from ``folder`` (the output marker stays behind).

    Args:
        folder: The folder to upload.

    Returns:
        The files, sorted by path.
    """
    folder = Path(folder)
    return [
        UploadFile(path.relative_to(folder).as_posix(), path.stat().st_size)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name not in SKIPPED_FILES
    ]


def describe_upload(repo_id: str, files: list[UploadFile], private: bool) -> str:
    """The dry-run listing: the repository, then one line per file with its size.

    Args:
        repo_id: Target repository.
        files: From :func:`upload_listing`.
        private: Whether a new repository would be private.

    Returns:
        Text ending in a newline.
    """
    total = sum(item.size_bytes for item in files)
    visibility = "private" if private else "public"
    lines = [f"Dry run: would upload {len(files)} files ({total:,} bytes) to model repository {repo_id} ({visibility})"]
    lines += [f"  {item.size_bytes:>14,}  {item.path}" for item in files]
    return "\n".join(lines) + "\n"


def upload_to_hub(folder: Path, repo_id: str, token: str, private: bool, message: str) -> str:
    """Creates the repository if missing and uploads ``folder`` in one commit.

    Args:
        folder: What to upload (the output marker is left out).
        repo_id: ``user/name``.
        token: Write token.
        private: Create the repository as private.
        message: Commit message.

    Returns:
        The repository URL.

    Raises:
        HubUnavailableError: When the Hub refuses or cannot be reached.
    """
    from huggingface_hub import create_repo, upload_folder

    try:
        url = create_repo(repo_id, token=token, private=private, exist_ok=True, repo_type="model")
        upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            token=token,
            repo_type="model",
            commit_message=message,
            ignore_patterns=list(SKIPPED_FILES),
        )
    except Exception as error:
        raise HubUnavailableError(f"push to {repo_id} failed: {type(error).__name__}: {error}") from error
    logger.success("Pushed {} to {} ({})", folder.name, url, "private" if private else "public")
    return str(url)


def push_to_hub(
    registry: ModelRegistry,
    reference: str,
    repo_id: str,
    private: bool = False,
    token: str | None = None,
    dry_run: bool = False,
) -> str:
    """Uploads a registered version to a Hub model repository (created if missing).

    Args:
        registry: The registry.
        reference: ``name``, ``name:3`` or ``name@production``.
        repo_id: ``user/repo`` on the Hub.
        private: Create the repository as private.
        token: ``hub.token`` (default: HF_TOKEN or the logged-in user's).
        dry_run: Only list what would be uploaded (no network, no token needed).

    Returns:
        The repository URL, or the dry-run listing.

    Raises:
        HubUnavailableError: When offline, without a token, or when the upload fails.
    """
    registered = registry.resolve(reference)
    check_repo_id(repo_id)
    resolved_token = None if dry_run else hub_token(token)
    with tempfile.TemporaryDirectory(prefix="finetune-studio-push-") as folder:
        build_upload_folder(registered, Path(folder))
        if dry_run:
            return describe_upload(repo_id, upload_listing(Path(folder)), private)
        message = f"Upload {registered.reference} from Finetune Studio"
        return upload_to_hub(Path(folder), repo_id, resolved_token, private, message)


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
