"""Loss and perplexity over response tokens only, token-weighted, on a tokenized split.

Every token whose label is not ``IGNORE_INDEX`` counts once, whatever the length of its
sequence: the loss is the sum of token losses divided by the number of trained tokens, and the
perplexity is its exponential.

The batches are right-padded, neighbours by length, unless the model runs a variable-length
attention kernel (Flash Attention): then they are padding-free as in training
(:class:`~core.infrastructure.training.collators.PackingCollator`: the sequences concatenated
into one row, ``position_ids`` restarting at 0, run with ``use_cache=False`` so that no sequence
attends to another), where the model family honours those resets and no prompt-learning adapter
prepends per-sequence state. With ``sdpa`` or ``eager`` a packed row attends through a dense
block-diagonal mask over the whole row, which costs more than the little padding of length-sorted
batches saves: measured on the embedded model (CPU, fp32, 64 records, batch 8) right-padded
1.40x the old loop's speed against 1.12x packed. The
vocabulary projection runs only at the positions whose next token is trained (a boolean
``logits_to_keep`` mask, :func:`~core.infrastructure.training.loss.masked_causal_lm_loss`);
models whose ``forward`` has no ``logits_to_keep`` compute every position's logits and keep the
same positions. Batches hold neighbours in a content order (length, then ids), so the result does
not depend on the order of ``rows``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as functional
from tqdm.auto import tqdm

from core.domain.catalog import defaults_for_model_type
from core.infrastructure.inference.generation import is_prompt_learning
from core.infrastructure.training.collators import PackingCollator, PaddingCollator
from core.infrastructure.training.loss import accepts_logits_mask, masked_causal_lm_loss, trained_positions


@dataclass(frozen=True)
class LossResult:
    """Token-weighted loss over response tokens.

    Attributes:
        loss: Mean cross-entropy per trained token (nats).
        perplexity: ``exp(loss)``.
        tokens: Number of trained tokens.
        sequences: Number of sequences.
    """

    loss: float
    perplexity: float
    tokens: int
    sequences: int


def _batches(rows: Sequence[dict], batch_size: int) -> list[list[dict]]:
    # neighbours by length (less padding when padded), ties by ids: batches depend on contents only
    ordered = sorted(rows, key=lambda row: (len(row["input_ids"]), list(row["input_ids"])))
    return [ordered[start : start + batch_size] for start in range(0, len(ordered), batch_size)]


def packs_sequences(model: torch.nn.Module) -> bool:
    """Tells whether padding-free batches give each sequence's own loss on this model.

    The rule of training's ``packing_decision``: the family must restart attention at
    ``position_ids`` resets (``supports_padding_free``) and no prompt-learning adapter may prepend
    per-sequence state (Prefix Tuning does).

    Args:
        model: A causal LM, plain or PEFT-wrapped.

    Returns:
        True when the model can be evaluated padding-free.
    """
    if is_prompt_learning(model):
        return False
    model_type = getattr(getattr(model, "config", None), "model_type", "") or ""
    return defaults_for_model_type(model_type).supports_padding_free


VARLEN_ATTENTION = frozenset({"flash_attention_2", "flash_attention_3"})
"""Attention kernels that run a packed row's sequences separately (no dense mask over the row)."""


def packs_by_default(model: torch.nn.Module) -> bool:
    """Tells whether :func:`response_loss` packs this model's batches when not told.

    Args:
        model: A causal LM, plain or PEFT-wrapped.

    Returns:
        True when the model can be evaluated padding-free and runs a variable-length attention kernel.
    """
    config = getattr(model, "config", None)
    return packs_sequences(model) and getattr(config, "_attn_implementation", None) in VARLEN_ATTENTION


def _model_device(model: torch.nn.Module) -> torch.device:
    try:
        return next(parameter.device for parameter in model.parameters())
    except StopIteration:  # pragma: no cover - a model always has parameters
        return torch.device("cpu")


def _summed_loss(model: torch.nn.Module, batch: dict[str, Any], masked_logits: bool) -> tuple[float, int]:
    """Sum of the token cross-entropies at trained positions of one collated batch, and their count."""
    mask, targets = trained_positions(batch["labels"])
    if not targets.numel():  # nothing trained in this batch: no forward pass
        return 0.0, 0
    if masked_logits:  # num_items_in_batch=1: the summed loss, logits only at the trained positions
        loss, _ = masked_causal_lm_loss(model, {**batch, "use_cache": False}, num_items_in_batch=1)
        return loss.item(), int(targets.numel())
    features = {key: value for key, value in batch.items() if key != "labels"}
    logits = model(**features, use_cache=False).logits[mask].float()
    loss = functional.cross_entropy(logits, targets, reduction="sum")
    return loss.item(), int(targets.numel())


@torch.no_grad()
def response_loss(
    model: torch.nn.Module,
    rows: Sequence[dict],
    batch_size: int = 8,
    pad_token_id: int = 0,
    show_progress: bool = True,
    packing: bool | None = None,
) -> LossResult:
    """Computes the token-weighted loss over response tokens.

    Args:
        model: A causal LM (plain or PEFT-wrapped).
        rows: Mappings with ``input_ids`` and ``labels`` (``IGNORE_INDEX`` where not trained).
        batch_size: Sequences per forward pass.
        pad_token_id: Id used to pad ``input_ids`` in right-padded batches (masked out).
        show_progress: Show a tqdm progress bar.
        packing: Padding-free batches (only for a model :func:`packs_sequences` accepts); None
            decides with :func:`packs_by_default`.

    Returns:
        The loss, perplexity and counts; NaN when there are no trained tokens.
    """
    device = _model_device(model)
    packed = packs_by_default(model) if packing is None else packing
    collate = PackingCollator() if packed else PaddingCollator(pad_token_id)
    masked_logits = accepts_logits_mask(model)
    was_training = model.training
    model.eval()
    total_loss = 0.0
    total_tokens = 0
    batches = _batches(rows, batch_size)
    try:
        for batch in tqdm(batches, desc="Loss", unit="batch", disable=None if show_progress and batches else True):
            collated = {key: value.to(device) for key, value in collate(batch).items()}
            batch_loss, batch_tokens = _summed_loss(model, collated, masked_logits)
            total_loss += batch_loss
            total_tokens += batch_tokens
    finally:
        model.train(was_training)
    if total_tokens == 0:
        return LossResult(loss=math.nan, perplexity=math.nan, tokens=0, sequences=len(rows))
    loss = total_loss / total_tokens
    perplexity = math.exp(loss) if loss < 700 else math.inf
    return LossResult(loss=loss, perplexity=perplexity, tokens=total_tokens, sequences=len(rows))
