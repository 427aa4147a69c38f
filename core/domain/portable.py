"""Artifacts that work on another machine: base models named by Hub id, no machine paths inside.

A run's ``manifest.json`` keeps the resolved local path of its base model (this machine needs it);
everything meant to leave the machine (``final/``, ``merged/``, registry uploads) names the base
by the reference another machine can resolve: the catalog model's Hub id, the Hub id the user
gave, or the id recovered from a Hugging Face cache path (``models--org--name/snapshots/...``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from core.domain.catalog import find_entry

ADAPTER_CONFIG_FILE = "adapter_config.json"
_CACHE_PATH = re.compile(r"models--([^/\\]+?)--([^/\\]+)[/\\]snapshots[/\\]")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def base_model_reference(model_name: str, local_path: str | Path | None = None) -> str:
    """The name another machine can load the base model by.

    Args:
        model_name: What the user configured (``model.name``): catalog name, Hub id, path or ``.gguf``.
        local_path: Where the weights were found on this machine, if known.

    Returns:
        A Hub id when there is one (a catalog model's cache folder included); otherwise the last
        component of the user's own path (a local model has no portable name, and a machine path
        must not leak into artifacts).
    """
    entry = find_entry(model_name)
    if entry is not None:
        return entry.hub_id
    for candidate in (str(model_name), str(local_path or "")):
        match = _CACHE_PATH.search(candidate.replace("\\", "/") + "/")
        if match:
            return f"{match.group(1)}/{match.group(2)}"
    if _HUB_ID.match(model_name) and not Path(model_name).expanduser().exists():
        return model_name
    folder = Path(model_name).name
    entry = find_entry(folder)  # the model cache's folder of a catalog model (the converted embedded one)
    return entry.hub_id if entry is not None else folder


def is_hub_id(reference: str) -> bool:
    """True when ``reference`` has the ``namespace/name`` shape of a Hub repository id."""
    return bool(_HUB_ID.match(reference))


def make_adapter_portable(directory: Path, reference: str) -> None:
    """Points a saved PEFT adapter at its base model's portable reference.

    Rewrites ``base_model_name_or_path`` in ``adapter_config.json`` (peft stores the local path the
    model was loaded from); a directory without an adapter config is left unchanged.

    Args:
        directory: The saved adapter (``runs/<run>/final``).
        reference: From :func:`base_model_reference`.
    """
    config_file = Path(directory) / ADAPTER_CONFIG_FILE
    if not config_file.is_file():
        return
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = reference
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def portable_lineage(lineage: dict[str, Any]) -> dict[str, Any]:
    """A lineage record without machine paths (for uploads and files shipped with a model).

    Drops ``base_model_path`` and the configuration's ``paths`` section, and names the base model by
    its portable reference.

    Args:
        lineage: A lineage record (see ``core.infrastructure.registry.artifacts``).

    Returns:
        The cleaned copy.
    """
    cleaned = {key: value for key, value in lineage.items() if key != "base_model_path"}
    if lineage.get("base_model"):
        cleaned["base_model"] = base_model_reference(str(lineage["base_model"]), lineage.get("base_model_path"))
    if lineage.get("dataset"):
        cleaned["dataset"] = _file_name(str(lineage["dataset"]))
    config = lineage.get("config")
    if isinstance(config, dict):
        cleaned["config"] = {key: value for key, value in config.items() if key != "paths"}
        for section, key in (("model", "name"), ("data", "dataset")):
            if isinstance(config.get(section), dict) and config[section].get(key):
                value = str(config[section][key])
                portable = cleaned.get("base_model") if section == "model" else _file_name(value)
                cleaned["config"][section] = {**config[section], key: portable}
    return cleaned


def _file_name(name: str) -> str:
    """A dataset named by path keeps only its file name (``/home/me/data.jsonl`` -> ``data.jsonl``)."""
    return Path(name).name if ("/" in name or "\\" in name) else name
