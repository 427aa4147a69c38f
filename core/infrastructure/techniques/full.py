"""Full finetuning: every parameter of the base model trains."""

from __future__ import annotations

from typing import Any

import torch
from transformers import PreTrainedModel

from core.domain.catalog import ArchitectureDefaults
from core.domain.techniques import traits_for
from core.infrastructure.techniques.base import LoadOptions, enable_gradient_checkpointing


class FullFinetuning:
    """Trains all weights in fp32 master precision (mixed precision comes from autocast)."""

    traits = traits_for("full")

    def load_options(self, technique_settings: Any, compute_dtype: torch.dtype) -> LoadOptions:
        """Loads fp32 master weights; autocast provides bf16/fp16 compute.

        Args:
            technique_settings: The ``full`` technique section (no options).
            compute_dtype: Training compute dtype (unused: master weights stay fp32).

        Returns:
            The load options.
        """
        return LoadOptions(dtype=torch.float32)

    def prepare(
        self,
        model: PreTrainedModel,
        technique_settings: Any,
        architecture: ArchitectureDefaults,
        gradient_checkpointing: bool,
    ) -> torch.nn.Module:
        """Marks every parameter trainable.

        Args:
            model: The loaded base model.
            technique_settings: The ``full`` technique section.
            architecture: Family defaults (unused).
            gradient_checkpointing: Enable activation checkpointing.

        Returns:
            The model itself.
        """
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        if gradient_checkpointing:
            enable_gradient_checkpointing(model)
        return model


IMPLEMENTATION = FullFinetuning()
"""The implementation :func:`core.infrastructure.techniques.technique_for` finds by this module's name."""
