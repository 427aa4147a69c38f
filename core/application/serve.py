"""Use case ``serve`` (``make serve``): an OpenAI-compatible API over runs and registered models.

``finetune-studio serve --host 127.0.0.1 --port 8000 --api-key KEY``; the key can also come from
``serve.api_key`` (``FINETUNE_SERVE__API_KEY``). Every completed run, registered model
(``name``, ``name:VERSION``) and the configured base model is a selectable model name.
"""

from __future__ import annotations

import argparse
import ipaddress

from loguru import logger

from core.domain.config import Settings, load_settings
from core.domain.errors import ConfigError


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_api_key(settings: Settings, api_key: str | None) -> str | None:
    """The key clients must send: ``--api-key``, else ``serve.api_key``.

    Args:
        settings: Settings.
        api_key: Key from the command line.

    Returns:
        The key, or None when none is configured.
    """
    if api_key:
        return api_key
    return settings.serve.api_key.get_secret_value() if settings.serve.api_key is not None else None


def build_app(settings: Settings, api_key: str | None = None, host: str | None = None):
    """Creates the application, refusing to expose an unauthenticated server beyond loopback.

    Args:
        settings: Settings.
        api_key: Key override.
        host: Bind address the app will be served on (default: ``serve.host``).

    Returns:
        The FastAPI application.

    Raises:
        ConfigError: If no API key is configured and the host is not a loopback address.
    """
    from core.infrastructure.serving.app import create_app

    key = resolve_api_key(settings, api_key)
    host = host or settings.serve.host
    if key is None:
        if not _is_loopback(host):
            raise ConfigError(
                f"serve.api_key: required when binding to {host} (not loopback); pass --api-key or set "
                "FINETUNE_SERVE__API_KEY"
            )
        logger.warning("No API key configured: any local client can use the API (loopback only)")
    return create_app(settings, api_key=key)


def serve(settings: Settings, host: str | None = None, port: int | None = None, api_key: str | None = None) -> None:
    """Serves the API in the foreground until interrupted.

    Args:
        settings: Settings.
        host: Bind address (default: ``serve.host``).
        port: Port (default: ``serve.port``).
        api_key: Key (default: ``serve.api_key``).
    """
    from core.infrastructure.serving.server import run_server

    host = host or settings.serve.host
    port = port or settings.serve.port
    app = build_app(settings, api_key, host)
    models = list(app.state.pool.entries())
    logger.info("Serving {} model(s) on http://{}:{}/v1: {}", len(models), host, port, ", ".join(models))
    run_server(app, host, port)


def run(arguments: argparse.Namespace) -> int:
    """Runs ``finetune-studio serve``.

    Args:
        arguments: Parsed CLI arguments.

    Returns:
        Exit code 0.
    """
    settings = load_settings(arguments.config, arguments.overrides)
    serve(settings, arguments.host, arguments.port, arguments.api_key)
    return 0
