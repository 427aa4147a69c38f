"""QLoRA: LoRA adapters on a base model quantized by bitsandbytes (NF4/FP4 4-bit or LLM.int8)."""

from __future__ import annotations

from typing import Any

import torch
from peft import get_peft_model, prepare_model_for_kbit_training
from transformers import BitsAndBytesConfig, PreTrainedModel

from core.domain.catalog import ArchitectureDefaults
from core.domain.techniques import traits_for
from core.infrastructure.techniques.base import LoadOptions
from core.infrastructure.techniques.lora import lora_config

COMPUTE_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def quantization_config(technique_settings: Any, precision_dtype: torch.dtype) -> BitsAndBytesConfig:
    """Builds the bitsandbytes config: 4-bit NF4/FP4 with optional double quantization, or 8-bit.

    Args:
        technique_settings: The ``qlora`` section (or an object with the same fields).
        precision_dtype: The dtype the run computes in; ``compute_dtype=auto`` follows it, so a CPU
            without native bf16 dequantizes to fp32 instead of emulating bf16 matmuls.

    Returns:
        The quantization config passed to ``from_pretrained``.
    """
    if technique_settings.load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    compute_dtype = COMPUTE_DTYPES.get(technique_settings.compute_dtype, precision_dtype)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=technique_settings.quant_type,
        bnb_4bit_use_double_quant=technique_settings.double_quant,
        bnb_4bit_compute_dtype=compute_dtype,
    )


class QLoraFinetuning:
    """Quantized frozen base (bitsandbytes), fp32 LoRA adapters, compute in ``compute_dtype``."""

    traits = traits_for("qlora")

    def load_options(self, technique_settings: Any, compute_dtype: torch.dtype) -> LoadOptions:
        """Loads the linear layers quantized; the rest (norms, embeddings) in fp32.

        Args:
            technique_settings: The ``qlora`` section.
            compute_dtype: Training compute dtype (used by the quantized matmuls when
                ``technique.compute_dtype=auto``).

        Returns:
            The load options with a ``BitsAndBytesConfig``.
        """
        return LoadOptions(
            dtype=torch.float32, quantization_config=quantization_config(technique_settings, compute_dtype)
        )

    def prepare(
        self,
        model: PreTrainedModel,
        technique_settings: Any,
        architecture: ArchitectureDefaults,
        gradient_checkpointing: bool,
    ) -> torch.nn.Module:
        """Runs PEFT's k-bit preparation (freeze, fp32 norms, input grads) and adds LoRA adapters.

        Args:
            model: The quantized base model.
            technique_settings: The ``qlora`` section.
            architecture: Family defaults.
            gradient_checkpointing: Enable activation checkpointing.

        Returns:
            The PEFT model.
        """
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
        if gradient_checkpointing:
            model.config.use_cache = False
        return get_peft_model(model, lora_config(technique_settings, architecture))


IMPLEMENTATION = QLoraFinetuning()
"""The implementation :func:`core.infrastructure.techniques.technique_for` finds by this module's name."""
