"""Technique traits: what each finetuning technique is, independent of any framework.

The traits are the single description of a technique that the rest of the product reads: the
config union in :mod:`core.domain.config`, the implementation registry in
:mod:`core.infrastructure.techniques` and the studio all key on :data:`TECHNIQUE_TRAITS`.
Adding a technique (DoRA as its own entry, IA3, ...) touches the config union, one
infrastructure module and one registry line; a test fails if the three disagree.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class TechniqueTraits:
    """Static properties of a finetuning technique.

    Attributes:
        name: Registry key, also the value of ``technique.name`` in the config.
        title: Human-readable name.
        saves_adapter_only: True when the run saves only adapter weights, not the whole model.
        can_merge: True when the adapter can be folded into the base weights.
        supports_gradient_checkpointing: False when gradient checkpointing breaks the technique.
        supports_packing: False when padding-free packing would give wrong results.
        needs_bitsandbytes: True when loading needs bitsandbytes quantization kernels.
        description: One sentence shown in the studio and reports.
    """

    name: str
    title: str
    saves_adapter_only: bool
    can_merge: bool
    supports_gradient_checkpointing: bool
    supports_packing: bool
    needs_bitsandbytes: bool
    description: str


TECHNIQUE_TRAITS: dict[str, TechniqueTraits] = {
    "full": TechniqueTraits(
        name="full",
        title="Full finetuning",
        saves_adapter_only=False,
        can_merge=False,
        supports_gradient_checkpointing=True,
        supports_packing=True,
        needs_bitsandbytes=False,
        description="Updates every weight; best quality ceiling, highest memory.",
    ),
    "lora": TechniqueTraits(
        name="lora",
        title="LoRA",
        saves_adapter_only=True,
        can_merge=True,
        supports_gradient_checkpointing=True,
        supports_packing=True,
        needs_bitsandbytes=False,
        description="Trains low-rank updates of chosen linear layers; the base stays frozen.",
    ),
    "qlora": TechniqueTraits(
        name="qlora",
        title="QLoRA",
        saves_adapter_only=True,
        can_merge=True,
        supports_gradient_checkpointing=True,
        supports_packing=True,
        needs_bitsandbytes=True,
        description="LoRA on a 4-bit (NF4) quantized base; the smallest memory footprint.",
    ),
    "prefix": TechniqueTraits(
        name="prefix",
        title="Prefix Tuning",
        saves_adapter_only=True,
        can_merge=False,
        supports_gradient_checkpointing=False,
        supports_packing=False,
        needs_bitsandbytes=False,
        description="Learns virtual key/value prefixes for every layer; tiny adapters, cannot merge.",
    ),
}


def traits_for(name: str) -> TechniqueTraits:
    """Returns the traits of a technique.

    Args:
        name: Technique name, e.g. ``"lora"``.

    Returns:
        The technique's traits.

    Raises:
        KeyError: If the technique is unknown; the message lists the known ones.
    """
    try:
        return TECHNIQUE_TRAITS[name]
    except KeyError:
        raise KeyError(f"unknown technique {name!r}; choose one of {sorted(TECHNIQUE_TRAITS)}") from None
