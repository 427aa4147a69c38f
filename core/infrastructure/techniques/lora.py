"""LoRA: trainable low-rank updates on chosen linear layers of a frozen base model."""

from __future__ import annotations

from typing import Any

import torch
from peft import LoraConfig, get_peft_model
from transformers import PreTrainedModel

from core.domain.catalog import ArchitectureDefaults
from core.domain.techniques import traits_for
from core.infrastructure.techniques.base import FrozenBaseTechnique


def target_modules_for(technique_settings: Any, architecture: ArchitectureDefaults) -> list[str] | str:
    """Chooses the adapted modules: the configured list, ``all-linear``, or the family default.

    Args:
        technique_settings: A ``lora``/``qlora`` technique section.
        architecture: Family defaults.

    Returns:
        Module names, or ``"all-linear"``.
    """
    configured = technique_settings.target_modules
    if configured == "all-linear":
        return "all-linear"
    if configured:
        return list(configured)
    defaults = list(architecture.lora_target_modules)
    return "all-linear" if defaults == ["all-linear"] else defaults


def lora_config(technique_settings: Any, architecture: ArchitectureDefaults) -> LoraConfig:
    """Builds the PEFT LoRA config (rank, alpha, dropout, targets, DoRA, rsLoRA, fan-in-fan-out).

    Args:
        technique_settings: A ``lora``/``qlora`` technique section.
        architecture: Family defaults; GPT-2's Conv1D layers need ``fan_in_fan_out``.

    Returns:
        The LoRA config for a causal LM.
    """
    return LoraConfig(
        task_type="CAUSAL_LM",
        r=technique_settings.rank,
        lora_alpha=technique_settings.alpha,
        lora_dropout=technique_settings.dropout,
        target_modules=target_modules_for(technique_settings, architecture),
        fan_in_fan_out=architecture.fan_in_fan_out,
        use_dora=technique_settings.use_dora,
        use_rslora=technique_settings.use_rslora,
        bias="none",
    )


class LoraFinetuning(FrozenBaseTechnique):
    """LoRA on a frozen base held in the compute dtype; only the (fp32) adapters train."""

    traits = traits_for("lora")

    def prepare(
        self,
        model: PreTrainedModel,
        technique_settings: Any,
        architecture: ArchitectureDefaults,
        gradient_checkpointing: bool,
    ) -> torch.nn.Module:
        """Freezes the base and wraps it with LoRA adapters.

        Args:
            model: The loaded base model.
            technique_settings: The ``lora`` section.
            architecture: Family defaults.
            gradient_checkpointing: Enable activation checkpointing.

        Returns:
            The PEFT model.
        """
        self.freeze(model, gradient_checkpointing)
        return get_peft_model(model, lora_config(technique_settings, architecture))


IMPLEMENTATION = LoraFinetuning()
"""The implementation :func:`core.infrastructure.techniques.technique_for` finds by this module's name."""
