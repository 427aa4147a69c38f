"""The technique seam: how a finetuning technique loads and prepares a model for training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from transformers import PreTrainedModel

from core.domain.catalog import ArchitectureDefaults
from core.domain.techniques import TechniqueTraits


@dataclass(frozen=True)
class LoadOptions:
    """What ``from_pretrained`` needs to load the base model for a technique.

    Attributes:
        dtype: Weight dtype of the loaded (non-quantized) weights.
        quantization_config: A ``BitsAndBytesConfig`` for quantized loading, or None.
    """

    dtype: torch.dtype = torch.float32
    quantization_config: Any = None


class Technique(Protocol):
    """One finetuning technique (found by :func:`core.infrastructure.techniques.technique_for`).

    Attributes:
        traits: The framework-independent description from :mod:`core.domain.techniques`.
    """

    traits: TechniqueTraits

    def load_options(self, technique_settings: Any, compute_dtype: torch.dtype) -> LoadOptions:
        """Returns how to load the base model.

        Args:
            technique_settings: The ``settings.technique`` section of this technique.
            compute_dtype: Dtype the training precision computes in (fp32, bf16 or fp16).

        Returns:
            The load options.
        """
        ...

    def prepare(
        self,
        model: PreTrainedModel,
        technique_settings: Any,
        architecture: ArchitectureDefaults,
        gradient_checkpointing: bool,
    ) -> torch.nn.Module:
        """Freezes or wraps the loaded model so that exactly the technique's parameters train.

        Args:
            model: The loaded base model.
            technique_settings: The ``settings.technique`` section of this technique.
            architecture: Family defaults (LoRA target modules, fan-in-fan-out).
            gradient_checkpointing: Enable activation checkpointing.

        Returns:
            The model to train (the base model itself or a PEFT wrapper).
        """
        ...


def enable_gradient_checkpointing(model: PreTrainedModel) -> None:
    """Turns on non-reentrant activation checkpointing (works with frozen inputs, no input hooks needed).

    Args:
        model: The base model.
    """
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False


class FrozenBaseTechnique:
    """Base of techniques that train only what they add to a frozen base (LoRA, Prefix Tuning, IA3, ...)."""

    def load_options(self, technique_settings: Any, compute_dtype: torch.dtype) -> LoadOptions:
        """Loads the frozen base in the compute dtype (bf16/fp16 halves its memory; fp32 stays fp32).

        The base never receives updates, so it needs no fp32 master copy; PEFT keeps the added
        parameters in fp32 and autocast runs the matmuls in the compute dtype.

        Args:
            technique_settings: The technique's section.
            compute_dtype: Training compute dtype.

        Returns:
            The load options.
        """
        return LoadOptions(dtype=compute_dtype)

    @staticmethod
    def freeze(model: PreTrainedModel, gradient_checkpointing: bool) -> None:
        """Freezes every base parameter and turns on activation checkpointing when asked.

        Args:
            model: The loaded base model.
            gradient_checkpointing: Enable activation checkpointing.
        """
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        if gradient_checkpointing:
            enable_gradient_checkpointing(model)
