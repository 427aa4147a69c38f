"""IA3: scaling vectors on the keys, values and feed-forward inputs of a frozen base model (peft's IA3)."""

from __future__ import annotations

from typing import Any

import torch
from peft import IA3Config, get_peft_model
from transformers import PreTrainedModel

from core.domain.catalog import ArchitectureDefaults
from core.domain.errors import ConfigError
from core.domain.techniques import traits_for
from core.infrastructure.techniques.base import FrozenBaseTechnique


class IA3Finetuning(FrozenBaseTechnique):
    """IA3 on a frozen base held in the compute dtype; only the (fp32) scaling vectors train."""

    traits = traits_for("ia3")

    def prepare(
        self,
        model: PreTrainedModel,
        technique_settings: Any,
        architecture: ArchitectureDefaults,
        gradient_checkpointing: bool,
    ) -> torch.nn.Module:
        """Freezes the base and wraps it with IA3 scaling vectors (PEFT's layers for the family by default).

        Raises:
            ConfigError: When PEFT has no default layers for this model family and none are configured.
        """
        self.freeze(model, gradient_checkpointing)
        config = IA3Config(
            task_type="CAUSAL_LM",
            target_modules=technique_settings.target_modules,
            feedforward_modules=technique_settings.feedforward_modules,
            fan_in_fan_out=architecture.fan_in_fan_out,
        )
        try:
            return get_peft_model(model, config)
        except ValueError as error:
            raise ConfigError(
                f"technique.target_modules: IA3 has no default layers for model family {architecture.family!r} "
                f"({error}); set technique.target_modules and technique.feedforward_modules"
            ) from None


IMPLEMENTATION = IA3Finetuning()
"""The implementation :func:`core.infrastructure.techniques.technique_for` finds by this module's name."""
