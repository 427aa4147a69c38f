"""Full finetuning: every parameter is trained."""

from __future__ import annotations

from typing import Literal

from core.domain.section import Section
from core.domain.techniques import MemoryRule, TechniqueSpec, TechniqueTraits, register_technique


class FullTechnique(Section):
    """Full finetuning: every parameter is trained."""

    name: Literal["full"] = "full"


SPEC = register_technique(
    TechniqueSpec(
        traits=TechniqueTraits(
            name="full",
            title="Full finetuning",
            saves_adapter_only=False,
            can_merge=False,
            supports_gradient_checkpointing=True,
            supports_packing=True,
            needs_bitsandbytes=False,
            description="Updates every weight; best quality ceiling, highest memory.",
        ),
        settings=FullTechnique,
        memory=MemoryRule(
            trainable_parameters=lambda entry, _inputs: entry.parameters,
            weights=lambda entry, _inputs: (entry.parameters * 4.0, None),  # fp32 master weights
        ),
        learning_rate=5e-5,
    )
)
