"""LoRA: low-rank adapters on chosen linear layers."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from core.domain.catalog import CatalogEntry
from core.domain.model_shapes import adapted_layers, lora_parameters
from core.domain.section import Section
from core.domain.techniques import MemoryInputs, MemoryRule, TechniqueSpec, TechniqueTraits, register_technique


class LoraTechnique(Section):
    """LoRA: low-rank adapters on chosen linear layers."""

    name: Literal["lora"] = "lora"
    rank: int = Field(16, ge=1, le=1024, title="LoRA rank", description="Adapter rank r.")
    alpha: float = Field(
        32.0, gt=0, title="LoRA alpha", description="Scaling numerator; the update is scaled by alpha/r."
    )
    dropout: float = Field(0.05, ge=0.0, lt=1.0, title="LoRA dropout", description="Dropout on the adapter input.")
    target_modules: list[str] | Literal["all-linear"] | None = Field(
        None, description="Modules to adapt; None uses the catalog default of the model family."
    )
    use_dora: bool = Field(False, description="Weight-decomposed LoRA (DoRA).")
    use_rslora: bool = Field(False, description="Rank-stabilised scaling alpha/sqrt(r).")


def lora_trainable(entry: CatalogEntry, inputs: MemoryInputs) -> int:
    """LoRA parameters for the inputs' rank and targets (QLoRA counts the same)."""
    return lora_parameters(entry, inputs.rank, inputs.target_modules)


def lora_activation_values(entry: CatalogEntry, inputs: MemoryInputs) -> int:
    """Extra values per token and layer that LoRA keeps: adapter outputs (and dropped-out inputs)."""
    keep_inputs = inputs.dropout > 0
    return sum(
        fan_out + (fan_in if keep_inputs else 0) for fan_in, fan_out in adapted_layers(entry, inputs.target_modules)
    )


SPEC = register_technique(
    TechniqueSpec(
        traits=TechniqueTraits(
            name="lora",
            title="LoRA",
            saves_adapter_only=True,
            can_merge=True,
            supports_gradient_checkpointing=True,
            supports_packing=True,
            peft_type="LORA",
            needs_bitsandbytes=False,
            description="Trains low-rank updates of chosen linear layers; the base stays frozen.",
        ),
        settings=LoraTechnique,
        memory=MemoryRule(trainable_parameters=lora_trainable, activation_values=lora_activation_values),
        form_fields=("rank", "alpha", "dropout"),
        learning_rate=1e-3,
    )
)
