"""Prefix Tuning: trainable virtual key/value tokens prepended at every attention layer."""

from __future__ import annotations

from typing import Any

import torch
from loguru import logger
from peft import PrefixTuningConfig, get_peft_model
from transformers import PreTrainedModel

from core.domain.catalog import ArchitectureDefaults
from core.domain.errors import UnsupportedOperationError
from core.domain.techniques import traits_for
from core.infrastructure.models.loading import load_tokenizer
from core.infrastructure.techniques.base import FrozenBaseTechnique
from core.infrastructure.techniques.prefix_init import initialise_prefix_from_text, supports_text_initialisation


def prefix_config(technique_settings: Any) -> PrefixTuningConfig:
    """Builds the PEFT prefix-tuning config.

    Args:
        technique_settings: The ``prefix`` section.

    Returns:
        The config (virtual tokens, optional MLP reparameterisation).
    """
    options: dict[str, Any] = {
        "task_type": "CAUSAL_LM",
        "num_virtual_tokens": technique_settings.num_virtual_tokens,
        "prefix_projection": technique_settings.prefix_projection,
    }
    if technique_settings.encoder_hidden_size is not None:
        options["encoder_hidden_size"] = technique_settings.encoder_hidden_size
    return PrefixTuningConfig(**options)


class PrefixFinetuning(FrozenBaseTechnique):
    """Frozen base, trainable per-layer key/value prefixes."""

    traits = traits_for("prefix")

    def prepare(
        self,
        model: PreTrainedModel,
        technique_settings: Any,
        architecture: ArchitectureDefaults,
        gradient_checkpointing: bool,
    ) -> torch.nn.Module:
        """Freezes the base and adds the prefix encoder, initialised from ``init_text`` when possible.

        Args:
            model: The loaded base model.
            technique_settings: The ``prefix`` section.
            architecture: Family defaults (unused).
            gradient_checkpointing: Must be False: the prefix key/values are not recomputed.

        Returns:
            The PEFT model.

        Raises:
            UnsupportedOperationError: If gradient checkpointing is requested.
        """
        if gradient_checkpointing:
            raise UnsupportedOperationError("technique=prefix does not support gradient checkpointing")
        self.freeze(model, gradient_checkpointing=False)
        peft_model = get_peft_model(model, prefix_config(technique_settings))
        text = technique_settings.init_text
        if text and supports_text_initialisation(peft_model):
            tokenizer = load_tokenizer(model.name_or_path)
            initialise_prefix_from_text(peft_model, tokenizer(text, add_special_tokens=False)["input_ids"])
        elif text:
            logger.info("Prefix drawn at random: text initialisation needs prefix_projection=false")
        return peft_model


IMPLEMENTATION = PrefixFinetuning()
"""The implementation :func:`core.infrastructure.techniques.technique_for` finds by this module's name."""
