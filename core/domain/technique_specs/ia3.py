"""IA3: learned vectors that rescale the keys, values and feed-forward activations of a frozen base."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from core.domain.catalog import CatalogEntry
from core.domain.model_shapes import linear_shapes
from core.domain.section import Section
from core.domain.techniques import MemoryInputs, MemoryRule, TechniqueSpec, TechniqueTraits, register_technique

DEFAULT_SCALED = {"k_proj": "out", "v_proj": "out", "down_proj": "in", "c_attn": "out", "fc2": "in"}
"""Layers PEFT's IA3 rescales by default in each family, and which side (for the memory estimate)."""


class IA3Technique(Section):
    """IA3: per-channel scaling vectors on attention and feed-forward layers (peft's ``IA3Config``)."""

    name: Literal["ia3"] = "ia3"
    target_modules: list[str] | None = Field(
        None, description="Layers whose activations are rescaled; None uses PEFT's default for the model family."
    )
    feedforward_modules: list[str] | None = Field(
        None,
        description="Which of target_modules are feed-forward layers (scaled on their input); "
        "None uses PEFT's default for the model family.",
    )


def ia3_widths(entry: CatalogEntry, _inputs: MemoryInputs) -> int:
    """Values per token and layer that IA3 rescales (one learned scale and one activation each)."""
    shapes = linear_shapes(entry)
    widths = 0
    for name, side in DEFAULT_SCALED.items():
        for fan_in, fan_out in shapes.get(name, [])[:1]:
            widths += fan_in if side == "in" else fan_out
    return widths


SPEC = register_technique(
    TechniqueSpec(
        traits=TechniqueTraits(
            name="ia3",
            title="IA3",
            saves_adapter_only=True,
            can_merge=True,
            supports_gradient_checkpointing=True,
            supports_packing=True,
            peft_type="IA3",
            needs_bitsandbytes=False,
            description="Learns scaling vectors for keys, values and feed-forward activations; the smallest adapter.",
        ),
        settings=IA3Technique,
        memory=MemoryRule(
            trainable_parameters=lambda entry, inputs: entry.num_layers * ia3_widths(entry, inputs),
            activation_values=ia3_widths,
        ),
        learning_rate=5e-3,
    )
)
