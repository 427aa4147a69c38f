"""Use case ``validate-config``: check a configuration without loading any model."""

from __future__ import annotations

import argparse
import json

from loguru import logger

from core.domain.config import load_settings
from core.domain.settings_environment import environment_overrides_present
from core.domain.techniques import traits_for


def run(arguments: argparse.Namespace) -> int:
    """Validates the configuration and logs the resolved settings as JSON.

    Args:
        arguments: Parsed CLI arguments (``--config`` and overrides).

    Returns:
        0 when valid. An invalid configuration raises ``ConfigError`` (exit code 2 in the CLI).
    """
    settings = load_settings(arguments.config, arguments.overrides)
    traits = traits_for(settings.technique.name)
    if environment_overrides_present():
        logger.info("FINETUNE_* environment variables are applied")
    logger.info("Configuration is valid: technique={} ({})", traits.name, traits.title)
    logger.info("{}", json.dumps(settings.to_plain_dict(), indent=2))
    return 0
