"""Causal-LM loss computed only at the positions that are trained.

Instruction tuning masks prompt tokens (label ``-100``), and padding-free packing masks each
sequence's first token; yet a stock forward projects *every* position onto the vocabulary
(49,152 logits per token for SmolLM2, ~20 % of its FLOPs and the largest activation of a step).
Passing a boolean ``logits_to_keep`` mask to the model computes the ``lm_head`` only where a label
exists, and the loss below equals transformers' ``ForCausalLMLoss`` (sum of token cross-entropies
divided by the label tokens of the accumulation window, or their mean without one). Where the
output layer allows, the projection and the loss run a chunk of positions at a time
(:mod:`core.infrastructure.training.chunked_loss`).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as functional

from core.infrastructure.data.tokenize import IGNORE_INDEX
from core.infrastructure.models.loading import base_model_of
from core.infrastructure.training.chunked_loss import ChunkedLinearCrossEntropy, OutputLayer


def accepts_logits_mask(model: torch.nn.Module) -> bool:
    """Tells whether a (possibly PEFT-wrapped) causal LM takes ``logits_to_keep`` in ``forward``.

    Args:
        model: The unwrapped training model.

    Returns:
        True when the base model's ``forward`` has a ``logits_to_keep`` parameter.
    """
    base = base_model_of(model)
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def trained_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Finds the positions whose next token is trained.

    Args:
        labels: ``(batch, length)`` labels with ``IGNORE_INDEX`` on untrained tokens.

    Returns:
        ``(mask, targets)``: a boolean ``(batch, length)`` mask of positions that predict a labelled
        token, and the flattened target ids in the mask's row-major order.
    """
    shifted = functional.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
    mask = shifted != IGNORE_INDEX
    return mask, shifted[mask]


def masked_causal_lm_loss(
    model: torch.nn.Module,
    inputs: dict[str, Any],
    num_items_in_batch: Any = None,
    output_layer: OutputLayer | None = None,
) -> tuple[torch.Tensor, Any]:
    """Runs the model with logits only at trained positions and returns the token-level loss.

    Args:
        model: The (possibly wrapped) causal LM; its ``forward`` must accept ``logits_to_keep``.
        inputs: A collated batch with ``labels``.
        num_items_in_batch: Label tokens in the accumulation window (sum reduction divided by it);
            ``None`` for a plain mean over this batch's label tokens.
        output_layer: The model's output layer to project a chunk of positions at a time (None: the
            model projects every trained position at once).

    Returns:
        ``(loss, outputs)``; ``outputs.logits`` holds only the kept positions ``(tokens, vocab)``,
        or, when the loss was chunked, their final hidden states ``(tokens, hidden)``.
    """
    features = {key: value for key, value in inputs.items() if key != "labels"}
    mask, targets = trained_positions(inputs["labels"])
    if output_layer is not None:
        with output_layer.bypassed():
            outputs = model(**features, logits_to_keep=mask)
        hidden = outputs.logits.reshape(-1, outputs.logits.shape[-1])
        weight, chunk = output_layer.layer.weight, output_layer.positions_per_chunk
        summed = ChunkedLinearCrossEntropy.apply(hidden, weight, targets, chunk)
        return summed / (targets.numel() if num_items_in_batch is None else _on(num_items_in_batch, summed)), outputs
    outputs = model(**features, logits_to_keep=mask)
    logits = outputs.logits.float().reshape(-1, outputs.logits.shape[-1])
    if num_items_in_batch is None:
        return functional.cross_entropy(logits, targets), outputs
    loss = functional.cross_entropy(logits, targets, reduction="sum")
    return loss / _on(num_items_in_batch, loss), outputs


def _on(count: Any, loss: torch.Tensor) -> Any:
    """The token count of the accumulation window on the loss's device (a tensor count may be elsewhere)."""
    return count.to(loss.device) if torch.is_tensor(count) else count
