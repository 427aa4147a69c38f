"""Randomly initialised Llama-shaped models for benchmarks that need a model's shape but not its weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def save_random_llama(
    tokenizer_dir: Path, destination: Path, name: str, shape: dict[str, Any], dtype: Any
) -> tuple[Path, Any]:
    """Saves a randomly initialised (seed 0) Llama of ``shape`` with the embedded tokenizer.

    Args:
        tokenizer_dir: Directory of the embedded model (tokenizer source).
        destination: Output directory.
        name: Catalog name of the model.
        shape: ``LlamaConfig`` fields: ``hidden_size``, ``intermediate_size``, ``num_hidden_layers``,
            ``num_attention_heads``, ``num_key_value_heads``, ``vocab_size``, ``max_position_embeddings``, ...
        dtype: torch dtype of the saved weights.

    Returns:
        The model directory and a :class:`~core.domain.catalog.CatalogEntry` describing it.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    from core.domain.catalog import LLAMA, CatalogEntry

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    config = LlamaConfig(
        **shape,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    destination.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(destination, safe_serialization=True)
    tokenizer.save_pretrained(destination)
    entry = CatalogEntry(
        name=name,
        hub_id=name,
        architecture=LLAMA,
        parameters=sum(parameter.numel() for parameter in model.parameters()),
        num_layers=config.num_hidden_layers,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        vocab_size=config.vocab_size,
        max_context=config.max_position_embeddings,
    )
    return destination, entry
