"""Prefix Tuning: trainable virtual key/value tokens prepended at every layer."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from core.domain.catalog import CatalogEntry
from core.domain.model_shapes import key_value_width
from core.domain.section import Section
from core.domain.techniques import MemoryInputs, MemoryRule, TechniqueSpec, TechniqueTraits, register_technique


class PrefixTechnique(Section):
    """Prefix Tuning: trainable virtual key/value tokens prepended at every layer."""

    name: Literal["prefix"] = "prefix"
    num_virtual_tokens: int = Field(20, ge=1, le=512, title="Virtual tokens", description="Virtual tokens per layer.")
    prefix_projection: bool = Field(False, description="Reparameterise the prefix through an MLP.")
    encoder_hidden_size: int | None = Field(None, ge=1, description="Hidden size of that MLP.")
    init_text: str | None = Field(
        "Answer the following request accurately and concisely.",
        min_length=1,
        description="Initialise the prefix with the model's own keys/values for this text (repeated to "
        "num_virtual_tokens); null draws it at random (PEFT's default). Ignored with prefix_projection.",
    )


def prefix_trainable(entry: CatalogEntry, inputs: MemoryInputs) -> int:
    """A key and a value vector per virtual token and layer (grouped-query width)."""
    return inputs.num_virtual_tokens * entry.num_layers * 2 * key_value_width(entry)


SPEC = register_technique(
    TechniqueSpec(
        traits=TechniqueTraits(
            name="prefix",
            title="Prefix Tuning",
            saves_adapter_only=True,
            can_merge=False,
            supports_gradient_checkpointing=False,
            supports_packing=False,
            peft_type="PREFIX_TUNING",
            needs_bitsandbytes=False,
            prompt_learning=True,
            description="Learns virtual key/value prefixes for every layer; tiny adapters, cannot merge.",
        ),
        settings=PrefixTechnique,
        memory=MemoryRule(trainable_parameters=prefix_trainable, extra_tokens=lambda inputs: inputs.num_virtual_tokens),
        form_fields=("num_virtual_tokens",),
        learning_rate=1e-2,
    )
)
