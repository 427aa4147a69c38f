"""Peak-memory estimator for finetuning runs (pure arithmetic: no torch, usable before any download).

The estimate adds five parts, each from the model's shape (a :class:`CatalogEntry`):

* weights: fp32 master weights (Full), a frozen base in the compute dtype (LoRA, Prefix) or
  4/8-bit linear layers plus fp32 embeddings and norms (QLoRA, with the double-quantization constants);
* gradients and optimizer states of the trainable parameters (AdamW: two fp32 moments);
* activations kept for the backward pass: per layer and token ``~(10 hidden + 4 intermediate)``
  values (one layer input per layer with gradient checkpointing), plus the logits and their
  gradient (``tokens x vocabulary``, fp32), in the training precision;
* transient buffers (a dequantized weight for QLoRA, one layer's recomputation with checkpointing);
* runtime overhead: the CUDA context or, on CPU, the Python process with torch/transformers loaded.

Checked against measured peaks on the tiny test models and on SmolLM2-135M (CPU).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.domain.catalog import CATALOG, CatalogEntry
from core.domain.techniques import MemoryInputs, MemoryRule, technique_names, technique_spec, traits_for

BYTES_PER_VALUE = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0}
OPTIMIZER_BYTES_PER_PARAMETER = {
    "adamw_torch": 8.0,
    "adamw_torch_fused": 8.0,
    "paged_adamw_8bit": 2.0,
    "sgd": 0.0,
    "adafactor": 0.5,
}
CPU_RUNTIME_OVERHEAD_GB = 1.0
"""Resident memory of a training process before the model is loaded (Python, torch, transformers)."""
CUDA_RUNTIME_OVERHEAD_GB = 0.6
"""CUDA context and allocator slack."""
GB = 1024**3


@dataclass(frozen=True)
class MemoryEstimate:
    """Predicted peak memory of one training process, by component (bytes).

    Attributes:
        technique: A registered technique's name.
        trainable_parameters: Parameters updated by training.
        weights: Model weights as loaded.
        gradients: Gradients of trainable parameters (fp32).
        optimizer_states: Optimizer moments of trainable parameters.
        activations: Activations saved for backward, including the logits.
        transient: Temporary buffers (dequantization, recomputation).
        overhead: Runtime overhead (CUDA context or CPU process baseline).
    """

    technique: str
    trainable_parameters: int
    weights: float
    gradients: float
    optimizer_states: float
    activations: float
    transient: float
    overhead: float
    notes: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> float:
        """Sum of all components."""
        return self.weights + self.gradients + self.optimizer_states + self.activations + self.transient + self.overhead

    @property
    def total_gb(self) -> float:
        """Total in GiB."""
        return self.total_bytes / GB

    def fits(self, available_gb: float) -> bool:
        """Returns True when the estimate fits in ``available_gb`` GiB."""
        return self.total_gb <= available_gb

    def breakdown_gb(self) -> dict[str, float]:
        """Components in GiB, rounded to 0.01."""
        parts = {
            "weights": self.weights,
            "gradients": self.gradients,
            "optimizer_states": self.optimizer_states,
            "activations": self.activations,
            "transient": self.transient,
            "overhead": self.overhead,
        }
        return {name: round(value / GB, 2) for name, value in parts.items()}


def estimate_memory(
    entry: CatalogEntry,
    technique: str,
    sequence_length: int,
    batch_size: int,
    precision: str = "bf16",
    gradient_checkpointing: bool = False,
    lora_rank: int = 16,
    lora_target_modules: tuple[str, ...] | None = None,
    lora_dropout: float = 0.05,
    num_virtual_tokens: int = 20,
    quantization_bits: int = 4,
    optimizer: str = "adamw_torch",
    device: str = "cuda",
) -> MemoryEstimate:
    """Predicts the peak memory of training ``entry`` with a technique.

    Args:
        entry: Model shape (parameters, layers, hidden/intermediate size, heads, vocabulary).
        technique: A registered technique's name.
        sequence_length: Tokens per sequence (padded length; packing lowers the real need).
        batch_size: Sequences per micro-batch on one device.
        precision: ``fp32``, ``bf16`` or ``fp16`` (activation precision; master weights stay fp32).
        gradient_checkpointing: Keep only each layer's input and recompute the rest.
        lora_rank: LoRA/QLoRA rank.
        lora_target_modules: LoRA targets (default: the family's).
        lora_dropout: LoRA dropout; above 0 every adapted layer keeps a dropped-out copy of its input.
        num_virtual_tokens: Prefix-tuning virtual tokens.
        quantization_bits: 4 (NF4/FP4) or 8 (LLM.int8) for QLoRA.
        optimizer: ``training.optimizer`` name.
        device: ``cuda`` or ``cpu`` (selects the runtime overhead).

    Returns:
        The estimate by component.

    Raises:
        ValueError: For an unknown technique or precision.
    """
    rule = _memory_rule(technique, precision)
    inputs = MemoryInputs(
        precision, BYTES_PER_VALUE[precision], lora_rank, lora_target_modules, lora_dropout, num_virtual_tokens,
        quantization_bits,
    )  # fmt: skip
    notes: list[str] = []
    weights, weights_note = rule.weights(entry, inputs)
    if weights_note:
        notes.append(weights_note)
    trainable = rule.trainable_parameters(entry, inputs)
    gradients = trainable * 4.0
    optimizer_states = trainable * OPTIMIZER_BYTES_PER_PARAMETER.get(optimizer, 8.0)

    activations = _activation_bytes(entry, rule, inputs, (sequence_length, batch_size), gradient_checkpointing)
    if gradient_checkpointing:
        notes.append("gradient checkpointing: one layer input per layer plus one recomputed layer")
    transient = float(rule.transient(entry, inputs))
    overhead = (CPU_RUNTIME_OVERHEAD_GB if device == "cpu" else CUDA_RUNTIME_OVERHEAD_GB) * GB
    parts = (weights, gradients, optimizer_states, activations, transient, overhead)
    return MemoryEstimate(technique, int(trainable), *parts, notes=notes)


def _memory_rule(technique: str, precision: str) -> MemoryRule:
    """The technique's memory rule, after checking the technique and the precision exist."""
    try:
        rule = technique_spec(technique).memory
    except KeyError:
        raise ValueError(f"unknown technique {technique!r}") from None
    if precision not in BYTES_PER_VALUE:
        raise ValueError(f"unknown precision {precision!r}; use fp32, bf16 or fp16")
    return rule


def _activation_bytes(
    entry: CatalogEntry,
    rule: MemoryRule,
    inputs: MemoryInputs,
    shape: tuple[int, int],
    gradient_checkpointing: bool,
) -> float:
    """Activations kept for the backward pass.

    Per layer (all of them, or one input each plus one recomputed layer with gradient
    checkpointing), plus the fp32 logits and their gradient, the embeddings and the final norm.

    Args:
        entry: Model shape.
        rule: The technique's memory rule (extra tokens, extra values per token and layer).
        inputs: Precision and technique settings.
        shape: Sequence length and sequences per micro-batch.
        gradient_checkpointing: Whether activations are recomputed.

    Returns:
        Bytes.
    """
    sequence_length, batch_size = shape
    value_bytes, tokens = inputs.bytes_per_value, sequence_length * batch_size
    tokens_attended = (sequence_length + rule.extra_tokens(inputs)) * batch_size
    per_token_layer = 10 * entry.hidden_size + 4 * entry.intermediate_size + rule.activation_values(entry, inputs)
    full_layer = tokens_attended * per_token_layer * value_bytes
    if gradient_checkpointing:
        layer_activations = entry.num_layers * tokens * entry.hidden_size * value_bytes + full_layer
    else:
        layer_activations = entry.num_layers * full_layer
    logits = 2 * tokens * entry.vocab_size * 4.0  # fp32 logits and their gradient
    return layer_activations + logits + 2 * tokens * entry.hidden_size * 4.0


def memory_table(
    model_names: tuple[str, ...] = ("llama-3.2-1b-instruct", "mistral-7b"),
    techniques: tuple[str, ...] | None = None,
    sequence_length: int = 512,
    batch_size: int = 4,
    precision: str = "bf16",
    gradient_checkpointing: bool = True,
    gpu_sizes_gb: tuple[int, ...] = (16, 24, 40, 80),
) -> list[dict[str, object]]:
    """Rows of the hardware table shown by the README and the studio.

    Args:
        model_names: Catalog names.
        techniques: Techniques to estimate (None: every registered one).
        sequence_length: Tokens per sequence.
        batch_size: Sequences per micro-batch.
        precision: Activation precision.
        gradient_checkpointing: Assume gradient checkpointing (where the technique supports it).
        gpu_sizes_gb: GPU memory sizes to test the estimate against.

    Returns:
        One mapping per (model, technique): model, technique, trainable parameters,
        estimated GiB, and the smallest listed GPU it fits.
    """
    rows: list[dict[str, object]] = []
    for name in model_names:
        entry = CATALOG[name]
        for technique in techniques or technique_names():
            estimate = estimate_memory(
                entry,
                technique,
                sequence_length,
                batch_size,
                precision=precision,
                gradient_checkpointing=gradient_checkpointing and traits_for(technique).supports_gradient_checkpointing,
            )
            fitting = next((size for size in gpu_sizes_gb if estimate.fits(size)), None)
            rows.append(
                {
                    "model": name,
                    "technique": technique,
                    "trainable_parameters": estimate.trainable_parameters,
                    "estimated_gb": round(estimate.total_gb, 1),
                    "smallest_gpu_gb": fitting,
                }
            )
    return rows


def format_memory_table(rows: list[dict[str, object]]) -> str:
    """Formats :func:`memory_table` rows as a Markdown table.

    Args:
        rows: Table rows.

    Returns:
        Markdown text.
    """
    lines = [
        "| Model | Technique | Trainable parameters | Estimated peak | Fits on |",
        "|---|---|---:|---:|---|",
    ]
    for row in rows:
        fits = f"{row['smallest_gpu_gb']} GB GPU" if row["smallest_gpu_gb"] else "more than listed sizes"
        lines.append(
            f"| {row['model']} | {row['technique']} | {row['trainable_parameters']:,} | "
            f"{row['estimated_gb']} GiB | {fits} |"
        )
    return "\n".join(lines)
