"""QLoRA: LoRA on a base model quantized with bitsandbytes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from core.domain.catalog import CatalogEntry
from core.domain.model_shapes import block_linear_parameters, linear_shapes
from core.domain.technique_specs.lora import LoraTechnique, lora_activation_values, lora_trainable
from core.domain.techniques import MemoryInputs, MemoryRule, TechniqueSpec, TechniqueTraits, register_technique


class QLoraTechnique(LoraTechnique):
    """QLoRA: LoRA on a base model quantized with bitsandbytes."""

    name: Literal["qlora"] = "qlora"  # type: ignore[assignment]
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type.")
    double_quant: bool = Field(True, description="Quantize the quantization constants too.")
    compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto",
        description="Dtype of the matmuls on dequantized weights; auto follows training.precision "
        "(bf16/fp16 autocast, float32 on CPUs without native bf16).",
    )
    load_in_8bit: bool = Field(False, description="Use 8-bit (LLM.int8) instead of 4-bit quantization.")


def quantized_weights(entry: CatalogEntry, inputs: MemoryInputs) -> tuple[float, str | None]:
    """4/8-bit linear layers (with the double-quantization constants) plus fp32 embeddings and norms."""
    bits = inputs.quantization_bits
    bits_per_weight = bits + (0.127 if bits == 4 else 0.0)
    block_linear = min(block_linear_parameters(entry), entry.parameters)
    weights = block_linear * bits_per_weight / 8 + (entry.parameters - block_linear) * 4.0
    return weights, f"{bits}-bit linear layers, fp32 embeddings and norms"


def dequantized_weight(entry: CatalogEntry, inputs: MemoryInputs) -> float:
    """The largest dequantized weight and its gradient buffer, alive during one layer's backward."""
    largest = max(i * o for shapes in linear_shapes(entry).values() for i, o in shapes)
    return 2 * largest * inputs.bytes_per_value


SPEC = register_technique(
    TechniqueSpec(
        traits=TechniqueTraits(
            name="qlora",
            title="QLoRA",
            saves_adapter_only=True,
            can_merge=True,
            supports_gradient_checkpointing=True,
            supports_packing=True,
            peft_type="LORA",
            needs_bitsandbytes=True,
            description="LoRA on a 4-bit (NF4) quantized base; the smallest memory footprint.",
        ),
        settings=QLoraTechnique,
        memory=MemoryRule(
            trainable_parameters=lora_trainable,
            weights=quantized_weights,
            activation_values=lora_activation_values,
            transient=dequantized_weight,
        ),
        form_fields=("rank", "alpha", "dropout"),
        learning_rate=1e-3,
    )
)
