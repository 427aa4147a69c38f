"""One dataset or several from the studio's Dataset field: comma-separated names become ``data.datasets``.

The Data tab puts what the user chose (uploads, or the path box) into the Train tab's Dataset
field as text: one name, or several joined by commas. Several names become sources of equal
weight mixed by ``data.mix_strategy`` (``concat`` unless the studio's settings say ``weighted``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.domain.data_settings import SINGLE_SOURCE_KEYS

SEPARATOR = ","


def dataset_names(text: str | None) -> list[str]:
    """The dataset names in the Dataset field.

    Args:
        text: One name (``demo``, a path, a Hub id) or several separated by commas.

    Returns:
        The names, in order; a path that exists as typed (even with a comma in it) is one name.
    """
    text = (text or "").strip()
    if not text:
        return []
    if SEPARATOR not in text or Path(text).expanduser().exists():
        return [text]
    return [name.strip() for name in text.split(SEPARATOR) if name.strip()]


def joined(names: list[str]) -> str:
    """The Dataset field's text for several names."""
    return f"{SEPARATOR} ".join(names)


def data_section(
    data: dict[str, Any], text: str | None, data_format: str | None = None, field_mapping: dict | None = None
) -> dict[str, Any]:
    """The ``data`` mapping of a plain config with the dataset(s) of the Dataset field.

    Args:
        data: The ``data`` mapping of :func:`studio.job_records.plain_config`.
        text: The Dataset field (one name or several, comma-separated; empty: ``demo``).
        data_format: Format chosen in the Data tab (one dataset: ``data.format``; several: every
            source's format unless ``auto``); None keeps the mapping's.
        field_mapping: Column mapping of one custom-format dataset (ignored for several).

    Returns:
        The mapping with ``data.dataset`` or ``data.datasets`` set and the other removed.
    """
    names = dataset_names(text) or ["demo"]
    section = {key: value for key, value in data.items() if key != "datasets"}
    if len(names) == 1:
        section["dataset"] = names[0]
        if data_format is not None:
            section["format"] = data_format or "auto"
        if field_mapping is not None:
            section["field_mapping"] = field_mapping
        return section
    section = {key: value for key, value in section.items() if key not in SINGLE_SOURCE_KEYS}
    if section.get("mix_strategy") != "weighted":
        section.pop("mix_size", None)
    chosen = data_format if data_format not in (None, "", "auto") else "auto"
    existing = data.get("datasets") or []
    if [source.get("dataset") for source in existing] == names and chosen == "auto":
        section["datasets"] = existing  # the configured mix, weights and formats kept
    else:
        section["datasets"] = [{"dataset": name, "format": chosen} for name in names]
    return section
