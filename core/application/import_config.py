"""Use case ``import-config``: a LLaMA-Factory or axolotl SFT YAML becomes this project's preset.

Example::

    finetune-studio import-config llama3_lora_sft.yaml --output examples/configs/imported.yaml

The preset is validated against the settings before it is written; every key that could not be
mapped is logged and listed as a comment at the top of the preset.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from loguru import logger

from core.domain.config import read_yaml, settings_from_dict
from core.domain.errors import ConfigError, OutputExistsError
from core.domain.foreign_config import ImportedPreset, import_foreign_config


def convert_file(path: Path) -> ImportedPreset:
    """Reads a foreign config and maps it to a validated preset.

    Args:
        path: The LLaMA-Factory or axolotl YAML file.

    Returns:
        The imported preset.

    Raises:
        ConfigError: If the file is missing, not YAML, of an unknown format, or maps to invalid settings.
    """
    source = read_yaml(path)
    try:
        imported = import_foreign_config(source, path.resolve().parent)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    try:
        settings_from_dict(imported.preset)
    except ConfigError as error:
        raise ConfigError(f"{path}: the imported preset is not valid:\n{error}") from None
    return imported


def run(arguments: argparse.Namespace) -> int:
    """Runs ``finetune-studio import-config FILE [--output PRESET.yaml]``.

    Args:
        arguments: Parsed CLI arguments.

    Returns:
        0 when the preset was written (to ``--output``, or to stdout without it).
    """
    path = Path(arguments.file)
    imported = convert_file(path)
    text = imported.yaml_text(path.name)
    for item in imported.unmapped:
        logger.warning("Not mapped: {}", item.line())
    if not arguments.output:
        sys.stdout.write(text)
        return 0
    output = Path(arguments.output)
    if output.exists() and not arguments.overwrite:
        raise OutputExistsError(f"{output}: already exists; pass --overwrite to replace it")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    logger.success(
        "Wrote {} ({} preset, {} keys not mapped); train with: finetune-studio train --config {}",
        output,
        imported.source_format,
        len(imported.unmapped),
        output,
    )
    return 0
