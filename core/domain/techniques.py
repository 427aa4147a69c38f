"""THE registry of finetuning techniques: one :class:`TechniqueSpec` per technique (no torch).

A spec holds everything the product needs to know about a technique: its traits (what it can
do), its settings class (the ``technique:`` section), its memory rule and the settings the
studio's Train form shows. The config union, the override keys, the CLI and studio choices, the
comparison sweep, the memory estimator and the merge/loading rules are all derived from here, and
behaviour is chosen by traits, never by comparing names (as peft's ``register_peft_method``).

Adding a technique: a module in :mod:`core.domain.technique_specs` that calls
:func:`register_technique`, its name in :data:`BUILTIN_TECHNIQUES`, and its implementation in
``core/infrastructure/techniques/<name>.py`` (found by that name).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.domain.catalog import CatalogEntry
    from core.domain.section import Section

BUILTIN_TECHNIQUES: tuple[str, ...] = ("full", "lora", "qlora", "prefix", "ia3")
"""Modules of :mod:`core.domain.technique_specs`, in the order techniques are listed everywhere."""
DEFAULT_TECHNIQUE = "lora"
"""The technique of a configuration that names none."""


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
        needs_bitsandbytes: True when the base is loaded quantized (bitsandbytes); a merge then
            folds the adapter into the 16-bit base instead.
        prompt_learning: True when the adapter adds virtual tokens that generation must inject.
        peft_type: The ``peft_type`` its saved adapters carry (None for whole models); a bare
            adapter directory is labelled with the first technique of that type.
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
    prompt_learning: bool = False
    peft_type: str | None = None


@dataclass(frozen=True)
class MemoryInputs:
    """What a memory rule may read: the run's shape-relevant settings, technique fields included.

    Attributes:
        precision: ``fp32``, ``bf16`` or ``fp16`` (activation precision).
        bytes_per_value: Bytes of one activation value in that precision.
        rank: LoRA rank.
        target_modules: Adapted modules (None: the family's default).
        dropout: Adapter dropout (LoRA keeps a dropped-out copy of each adapted input when above 0).
        num_virtual_tokens: Prefix-tuning virtual tokens.
        quantization_bits: 4 or 8 for a quantized base.
    """

    precision: str = "bf16"
    bytes_per_value: float = 2.0
    rank: int = 16
    target_modules: tuple[str, ...] | None = None
    dropout: float = 0.05
    num_virtual_tokens: int = 20
    quantization_bits: int = 4


def frozen_base_weights(entry: CatalogEntry, inputs: MemoryInputs) -> tuple[float, str | None]:
    """Weights of a frozen base held in the compute dtype (adapters' default).

    Args:
        entry: Model shape.
        inputs: Memory inputs.

    Returns:
        Bytes and a note for the estimate.
    """
    return entry.parameters * inputs.bytes_per_value, f"frozen base in {inputs.precision}"


def _nothing(*_args: Any) -> int:
    return 0


@dataclass(frozen=True)
class MemoryRule:
    """How a technique changes the memory estimate (:func:`core.domain.memory.estimate_memory`).

    Attributes:
        trainable_parameters: Parameters the technique trains.
        weights: Bytes of the loaded weights and a note.
        activation_values: Extra activation values per token and layer.
        extra_tokens: Extra positions every sequence attends to (virtual tokens).
        transient: Temporary bytes (e.g. a dequantized weight).
    """

    trainable_parameters: Callable[[CatalogEntry, MemoryInputs], int]
    weights: Callable[[CatalogEntry, MemoryInputs], tuple[float, str | None]] = frozen_base_weights
    activation_values: Callable[[CatalogEntry, MemoryInputs], int] = _nothing
    extra_tokens: Callable[[MemoryInputs], int] = _nothing
    transient: Callable[[CatalogEntry, MemoryInputs], float] = _nothing


@dataclass(frozen=True)
class TechniqueSpec:
    """Everything about one technique, registered once.

    Attributes:
        traits: What the technique can do.
        settings: Its settings class (a ``Section`` with a ``name: Literal[<name>]`` field).
        memory: Its memory rule.
        form_fields: Fields of ``settings`` that the studio's Train form shows for it.
        learning_rate: The learning rate a comparison sweep uses when no preset of the technique
            is at hand (techniques differ by orders of magnitude: Full 5e-5, LoRA 1e-3, Prefix 1e-2).
    """

    traits: TechniqueTraits
    settings: type[Section]
    memory: MemoryRule
    form_fields: tuple[str, ...] = field(default=())
    learning_rate: float = 2e-4

    @property
    def name(self) -> str:
        """The technique's name (``technique.name``)."""
        return self.traits.name


_REGISTRY: dict[str, TechniqueSpec] = {}


def register_technique(spec: TechniqueSpec) -> TechniqueSpec:
    """Registers a technique (called once by each module of :mod:`core.domain.technique_specs`).

    Args:
        spec: The technique.

    Returns:
        The same spec.

    Raises:
        ValueError: If the name is taken or the settings class does not carry the name.
    """
    if spec.name in _REGISTRY:
        raise ValueError(f"technique {spec.name!r} is registered twice")
    if spec.settings.model_fields["name"].default != spec.name:
        raise ValueError(f"{spec.settings.__name__}.name must default to {spec.name!r}")
    _REGISTRY[spec.name] = spec
    return spec


def technique_specs() -> tuple[TechniqueSpec, ...]:
    """Every registered technique, in registration order."""
    return tuple(_REGISTRY.values())


def technique_names() -> tuple[str, ...]:
    """Names of every registered technique, in registration order."""
    return tuple(_REGISTRY)


def technique_spec(name: str) -> TechniqueSpec:
    """The spec of a technique.

    Args:
        name: Technique name, e.g. ``"lora"``.

    Returns:
        Its spec.

    Raises:
        KeyError: If the technique is unknown; the message lists the known ones.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown technique {name!r}; choose one of {sorted(_REGISTRY)}") from None


def technique_of_adapter(peft_type: str | None) -> str | None:
    """The technique a bare adapter directory belongs to, from its ``peft_type``.

    Args:
        peft_type: ``adapter_config.json``'s ``peft_type``.

    Returns:
        The first registered technique saving that type, or None.
    """
    return next((spec.name for spec in _REGISTRY.values() if peft_type and spec.traits.peft_type == peft_type), None)


def traits_for(name: str) -> TechniqueTraits:
    """Returns the traits of a technique.

    Args:
        name: Technique name, e.g. ``"lora"``.

    Returns:
        The technique's traits.

    Raises:
        KeyError: If the technique is unknown; the message lists the known ones.
    """
    return technique_spec(name).traits


for _module in BUILTIN_TECHNIQUES:
    importlib.import_module(f"core.domain.technique_specs.{_module}")

TECHNIQUE_TRAITS: dict[str, TechniqueTraits] = {spec.name: spec.traits for spec in technique_specs()}
"""Technique name -> traits, for every registered technique."""
