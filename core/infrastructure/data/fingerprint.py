"""Fingerprint of a prepared dataset: input bytes, tokenizer files, chat template and data settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import xxhash

from core.infrastructure.data.sources import InputSource

PREPARATION_VERSION = "3"
"""Bumped whenever preparation changes its output for the same inputs (invalidates caches)."""

_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
)


def tokenizer_digest(model_dir: Path | str, hasher: Any) -> None:
    """Feeds the tokenizer files of a model directory into a hash object.

    Args:
        model_dir: Model directory.
        hasher: A hash object (``update``).
    """
    model_dir = Path(model_dir)
    for name in _TOKENIZER_FILES:
        file = model_dir / name
        if file.is_file():
            hasher.update(name.encode())
            hasher.update(file.read_bytes())


def compute_fingerprint(
    sources: InputSource | list[InputSource], model_dir: Path | str, settings: dict[str, Any]
) -> str:
    """Hashes everything that determines the prepared output.

    The hash is 128-bit xxh3: a cache key, not a signature, and it reads the input's bytes at
    memory speed (a 278 MB file: 0.03 s; sha256 took 0.2 s of every run of ``prepare-data``).

    Args:
        sources: The input, or the inputs of a mix in order (one input hashes as it always did).
        model_dir: Directory of the tokenizer.
        settings: The data settings that affect preparation (format, template, lengths, splits, and
            for a mix every source's settings, weight and the strategy).

    Returns:
        A 16-character hex fingerprint.
    """
    hasher = xxhash.xxh3_128(f"finetune-studio-data-v{PREPARATION_VERSION}".encode())
    inputs = sources if isinstance(sources, list) else [sources]
    for index, source in enumerate(inputs):
        if len(inputs) > 1:
            hasher.update(f"source {index}: {source.name}".encode())
        source.digest(hasher)
    tokenizer_digest(model_dir, hasher)
    hasher.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return hasher.hexdigest()[:16]
