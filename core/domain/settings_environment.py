"""The ``FINETUNE_*`` environment variables: every setting's variable, default and description, and whether any is set."""

from __future__ import annotations

import json
import os
from typing import Any

from pydantic import SecretStr

from core.domain.config import SECTION_MODELS, Settings
from core.domain.techniques import DEFAULT_TECHNIQUE, technique_spec, technique_specs


def environment_documentation() -> list[tuple[str, str, str]]:
    """Lists every environment variable with its default and description (for ``.env.example``).

    Returns:
        Tuples of (variable name, default as text, description).
    """
    rows: list[tuple[str, str, str]] = []
    for field_name in ("run_name", "log_level"):
        info = Settings.model_fields[field_name]
        rows.append((f"FINETUNE_{field_name.upper()}", _as_env_text(info.default), info.description or ""))
    for section, model in SECTION_MODELS.items():
        for field_name, info in model.model_fields.items():
            default = info.default if info.default_factory is None else info.default_factory()
            rows.append(
                (
                    f"FINETUNE_{section.upper()}__{field_name.upper()}",
                    _as_env_text(default),
                    info.description or "",
                )
            )
    default_first = [technique_spec(DEFAULT_TECHNIQUE), *(s for s in technique_specs() if s.name != DEFAULT_TECHNIQUE)]
    for variant in (spec.settings for spec in default_first):
        for field_name, info in variant.model_fields.items():
            name = f"FINETUNE_TECHNIQUE__{field_name.upper()}"
            if all(row[0] != name for row in rows):
                rows.append((name, _as_env_text(info.default), info.description or f"{variant.__name__} field"))
    return rows


def _as_env_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | dict):
        return json.dumps(value)
    if isinstance(value, SecretStr):
        return ""
    return str(value)


def environment_overrides_present() -> bool:
    """Returns True when any ``FINETUNE_*`` variable is set (reported by ``validate-config``)."""
    return any(name.startswith("FINETUNE_") for name in os.environ)
