"""The linear layers of one transformer block, from a model's shape alone (pure arithmetic, no torch).

Memory rules of the techniques (:mod:`core.domain.technique_specs`) count their parameters and
activations from these shapes.
"""

from __future__ import annotations

from core.domain.catalog import CatalogEntry


def linear_shapes(entry: CatalogEntry) -> dict[str, list[tuple[int, int]]]:
    """(in, out) shapes of each named linear layer of one transformer block.

    Args:
        entry: Model shape.

    Returns:
        Layer name -> its (fan-in, fan-out) shapes (GPT-2's ``c_proj`` names two layers).
    """
    hidden, intermediate = entry.hidden_size, entry.intermediate_size
    kv = hidden * entry.num_key_value_heads // max(entry.num_attention_heads, 1)
    family = entry.architecture.family
    if family == "gpt2":
        return {
            "c_attn": [(hidden, 3 * hidden)],
            "c_proj": [(hidden, hidden), (intermediate, hidden)],
            "c_fc": [(hidden, intermediate)],
        }
    if family == "phi":
        return {
            "q_proj": [(hidden, hidden)],
            "k_proj": [(hidden, kv)],
            "v_proj": [(hidden, kv)],
            "dense": [(hidden, hidden)],
            "fc1": [(hidden, intermediate)],
            "fc2": [(intermediate, hidden)],
        }
    return {
        "q_proj": [(hidden, hidden)],
        "k_proj": [(hidden, kv)],
        "v_proj": [(hidden, kv)],
        "o_proj": [(hidden, hidden)],
        "gate_proj": [(hidden, intermediate)],
        "up_proj": [(hidden, intermediate)],
        "down_proj": [(intermediate, hidden)],
    }


def adapted_layers(entry: CatalogEntry, target_modules: tuple[str, ...] | None) -> list[tuple[int, int]]:
    """Shapes of the linear layers of one block that an adapter targets.

    Args:
        entry: Model shape.
        target_modules: Module names (None: the family's LoRA default; ``("all-linear",)`` for all).

    Returns:
        (fan-in, fan-out) of every adapted layer of one block.
    """
    shapes = linear_shapes(entry)
    targets = target_modules or entry.architecture.lora_target_modules
    if "all-linear" in targets:
        targets = tuple(shapes)
    return [shape for name in targets for shape in shapes.get(name, [])]


def lora_parameters(entry: CatalogEntry, rank: int, target_modules: tuple[str, ...] | None = None) -> int:
    """Number of LoRA parameters: ``rank x (in + out)`` per adapted layer.

    Args:
        entry: Model shape.
        rank: LoRA rank.
        target_modules: Adapted module names (default: the family's; ``("all-linear",)`` for all).

    Returns:
        Trainable parameter count.
    """
    per_layer = sum(rank * (fan_in + fan_out) for fan_in, fan_out in adapted_layers(entry, target_modules))
    return per_layer * entry.num_layers


def block_linear_parameters(entry: CatalogEntry) -> int:
    """Parameters of all linear layers of all blocks (what a 4-bit load quantizes).

    Args:
        entry: Model shape.

    Returns:
        Parameter count.
    """
    return entry.num_layers * sum(i * o for shapes in linear_shapes(entry).values() for i, o in shapes)


def key_value_width(entry: CatalogEntry) -> int:
    """Width of one layer's keys (or values): key/value heads times the head size (grouped-query attention).

    Args:
        entry: Model shape.

    Returns:
        The width.
    """
    return entry.num_key_value_heads * (entry.hidden_size // entry.num_attention_heads)
