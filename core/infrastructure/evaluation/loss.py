"""Loss and perplexity over response tokens only, token-weighted, on a tokenized split.

Every token whose label is not ``IGNORE_INDEX`` counts once, whatever the length of its
sequence: the loss is the sum of token losses divided by the number of trained tokens, and the
perplexity is its exponential. Batches are right-padded; padding carries ``IGNORE_INDEX``
labels and a zero attention mask, so batching does not change the result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from core.infrastructure.data.tokenize import IGNORE_INDEX


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
    # sort by length so batches hold similar lengths (less padding); the sum is order-independent
    ordered = sorted(rows, key=lambda row: len(row["input_ids"]))
    return [ordered[start : start + batch_size] for start in range(0, len(ordered), batch_size)]


def _model_device(model: torch.nn.Module) -> torch.device:
    try:
        return next(parameter.device for parameter in model.parameters())
    except StopIteration:  # pragma: no cover - a model always has parameters
        return torch.device("cpu")


@torch.no_grad()
def response_loss(
    model: torch.nn.Module,
    rows: Sequence[dict],
    batch_size: int = 8,
    pad_token_id: int = 0,
    show_progress: bool = True,
) -> LossResult:
    """Computes the token-weighted loss over response tokens.

    Args:
        model: A causal LM (plain or PEFT-wrapped).
        rows: Mappings with ``input_ids`` and ``labels`` (``IGNORE_INDEX`` where not trained).
        batch_size: Sequences per forward pass.
        pad_token_id: Id used to pad ``input_ids`` (masked out by the attention mask).
        show_progress: Show a tqdm progress bar.

    Returns:
        The loss, perplexity and counts; NaN when there are no trained tokens.
    """
    device = _model_device(model)
    was_training = model.training
    model.eval()
    total_loss = 0.0
    total_tokens = 0
    batches = _batches(rows, batch_size)
    try:
        for batch in tqdm(batches, desc="Loss", unit="batch", disable=None if show_progress and batches else True):
            width = max(len(row["input_ids"]) for row in batch)
            input_ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
            labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
            attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
            for index, row in enumerate(batch):
                length = len(row["input_ids"])
                input_ids[index, :length] = torch.tensor(row["input_ids"], dtype=torch.long)
                labels[index, :length] = torch.tensor(row["labels"], dtype=torch.long)
                attention_mask[index, :length] = 1
            logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
            shifted_logits = logits[:, :-1, :].float()
            shifted_labels = labels[:, 1:].to(logits.device)
            total_loss += torch.nn.functional.cross_entropy(
                shifted_logits.reshape(-1, shifted_logits.size(-1)),
                shifted_labels.reshape(-1),
                ignore_index=IGNORE_INDEX,
                reduction="sum",
            ).item()
            total_tokens += int((shifted_labels != IGNORE_INDEX).sum().item())
    finally:
        model.train(was_training)
    if total_tokens == 0:
        return LossResult(loss=math.nan, perplexity=math.nan, tokens=0, sequences=len(rows))
    loss = total_loss / total_tokens
    perplexity = math.exp(loss) if loss < 700 else math.inf
    return LossResult(loss=loss, perplexity=perplexity, tokens=total_tokens, sequences=len(rows))
