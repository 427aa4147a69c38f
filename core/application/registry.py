"""Use case ``registry``: list, register, show, promote, delete, push and pull registered models.

Examples::

    finetune-studio registry register --name support-bot --run smollm2-lora
    finetune-studio registry list
    finetune-studio registry promote --name support-bot --version 2 --stage production
    finetune-studio registry push --name support-bot:2 --repo-id me/support-bot --private
    finetune-studio registry push --name support-bot:2 --repo-id me/support-bot --dry-run
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from loguru import logger

from core.domain.config import Settings, load_settings
from core.domain.errors import ConfigError
from core.infrastructure.registry.store import ModelRegistry, RegisteredVersion

ACTIONS = ("list", "register", "show", "promote", "delete", "push", "pull")


def open_registry(settings: Settings) -> ModelRegistry:
    """The registry under ``paths.registry_dir``.

    Args:
        settings: Settings.

    Returns:
        The registry.
    """
    return ModelRegistry(Path(settings.paths.registry_dir))


def register(settings: Settings, name: str, run: str | Path) -> RegisteredVersion:
    """Registers a run (by name or directory), merged model or adapter directory.

    Args:
        settings: Settings.
        name: Registered model name.
        run: Run name under ``paths.runs_dir``, or a directory.

    Returns:
        The new version.
    """
    candidate = Path(settings.paths.runs_dir) / str(run)
    source = candidate if "/" not in str(run) and candidate.is_dir() else Path(run)
    return open_registry(settings).register(name, source)


def hub_token_setting(settings: Settings) -> str | None:
    """``hub.token`` as plain text, or None when unset (HF_TOKEN / ``hf auth login`` then apply).

    Args:
        settings: Settings.

    Returns:
        The token or None.
    """
    return settings.hub.token.get_secret_value() if settings.hub.token else None


def push_version(settings: Settings, reference: str, repo_id: str, private: bool, dry_run: bool) -> str:
    """Pushes a registered version to a Hub model repository, or lists what a push would upload.

    Args:
        settings: Settings (``paths.registry_dir``, ``hub.token``, ``hub.private``).
        reference: ``name``, ``name:3`` or ``name@production``.
        repo_id: ``user/name``.
        private: Create the repository as private (``hub.private`` also does).
        dry_run: Only list the repository, files and sizes (no network, no token).

    Returns:
        The repository URL, or the dry-run listing.
    """
    from core.infrastructure.registry.hub import push_to_hub

    return push_to_hub(
        open_registry(settings),
        reference,
        repo_id,
        private=private or settings.hub.private,
        token=hub_token_setting(settings),
        dry_run=dry_run,
    )


def _summary(version: RegisteredVersion) -> dict:
    lineage = version.lineage
    return {
        "name": version.name,
        "version": version.version,
        "stage": version.stage,
        "kind": version.kind,
        "technique": lineage.get("technique"),
        "base_model": lineage.get("base_model"),
        "data_fingerprint": lineage.get("data_fingerprint"),
        "created_at": version.created_at,
    }


def _reference(arguments: argparse.Namespace) -> str:
    if not arguments.name:
        raise ConfigError("--name: required for this action")
    return arguments.name if arguments.version is None else f"{arguments.name}:{arguments.version}"


def split_action(arguments: argparse.Namespace) -> tuple[str, list[str]]:
    """Separates the action word from the ``key=value`` overrides.

    Args:
        arguments: Parsed CLI arguments (``action`` may already be set by a caller).

    Returns:
        The action and the remaining overrides.

    Raises:
        ConfigError: If no valid action is given.
    """
    overrides = list(arguments.overrides or [])
    action = getattr(arguments, "action", None)
    words = [item for item in overrides if "=" not in item]
    if action is None and words:
        action = words[0]
        overrides.remove(action)
    if action not in ACTIONS:
        raise ConfigError(f"registry: choose an action from {', '.join(ACTIONS)} (got {action!r})")
    return action, overrides


def run(arguments: argparse.Namespace) -> int:
    """Runs ``finetune-studio registry ACTION``.

    Args:
        arguments: Parsed CLI arguments.

    Returns:
        Exit code 0.
    """
    action, overrides = split_action(arguments)
    settings = load_settings(arguments.config, overrides)
    registry = open_registry(settings)
    if action == "list":
        rows = [_summary(version) for version in registry.list(arguments.name)]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    elif action == "register":
        if not arguments.name or not arguments.run:
            raise ConfigError("registry register: pass --name NAME and --run RUN_OR_DIRECTORY")
        version = register(settings, arguments.name, arguments.run)
        logger.success("Registered {}", version.reference)
    elif action == "show":
        sys.stdout.write(json.dumps(registry.resolve(_reference(arguments)).to_dict(), indent=2, default=str) + "\n")
    elif action == "promote":
        if arguments.version is None or not arguments.stage:
            raise ConfigError("registry promote: pass --name NAME --version N --stage STAGE")
        registry.promote(arguments.name, arguments.version, arguments.stage)
    elif action == "delete":
        if not arguments.name:
            raise ConfigError("--name: required for delete")
        registry.delete(arguments.name, arguments.version)
    elif action == "push":
        if not arguments.repo_id:
            raise ConfigError("registry push: pass --repo-id user/repo")
        result = push_version(settings, _reference(arguments), arguments.repo_id, arguments.private, arguments.dry_run)
        sys.stdout.write(result if arguments.dry_run else result + "\n")
    elif action == "pull":
        from core.infrastructure.registry.hub import pull_from_hub

        if not arguments.repo_id or not arguments.name:
            raise ConfigError("registry pull: pass --repo-id user/repo and --name NAME")
        version = pull_from_hub(registry, arguments.repo_id, arguments.name, revision=arguments.revision)
        logger.success("Pulled {} as {}", arguments.repo_id, version.reference)
    return 0
