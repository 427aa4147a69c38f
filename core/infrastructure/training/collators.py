"""Batch collators: padding-free packing (sequences concatenated, position ids reset) or right padding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import DataCollatorWithFlattening

from core.domain.catalog import ArchitectureDefaults
from core.domain.techniques import TechniqueTraits
from core.infrastructure.data.tokenize import IGNORE_INDEX


def packing_decision(mode: str, architecture: ArchitectureDefaults, traits: TechniqueTraits) -> tuple[bool, str]:
    """Decides whether to train padding-free.

    Packing is correct only when the model restarts attention at ``position_ids`` resets and the
    technique does not prepend per-sequence state (Prefix Tuning does).

    Args:
        mode: ``training.packing``: ``auto``, ``on`` or ``off``.
        architecture: Family defaults (``supports_padding_free``).
        traits: Technique traits (``supports_packing``).

    Returns:
        ``(enabled, reason)``.
    """
    if mode == "off":
        return False, "training.packing=off"
    if not traits.supports_packing:
        return False, f"technique {traits.name} does not support packing"
    if not architecture.supports_padding_free:
        if mode == "on":
            return True, f"training.packing=on (family {architecture.family} not verified for padding-free)"
        return False, f"family {architecture.family} does not support padding-free packing"
    return True, "padding-free packing is correct for this model and technique"


@dataclass
class PaddingCollator:
    """Right-pads a batch to its longest sequence; labels are padded with ``IGNORE_INDEX``.

    Attributes:
        pad_token_id: Id used for padded input positions.
    """

    pad_token_id: int

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Builds ``input_ids``, ``attention_mask`` and ``labels`` tensors.

        Args:
            features: Rows with ``input_ids`` and ``labels``.

        Returns:
            The batch.
        """
        longest = max(len(feature["input_ids"]) for feature in features)
        input_ids = torch.full((len(features), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), longest), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(features), longest), dtype=torch.long)
        for row, feature in enumerate(features):
            length = len(feature["input_ids"])
            input_ids[row, :length] = torch.as_tensor(feature["input_ids"], dtype=torch.long)
            labels[row, :length] = torch.as_tensor(feature["labels"], dtype=torch.long)
            attention_mask[row, :length] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


class PackingCollator:
    """Concatenates a batch into one row with ``position_ids`` restarting at 0 per sequence.

    The model must run with ``use_cache=False`` so that the attention mask is derived from the
    position-id resets (sequences never attend to each other).
    """

    def __init__(self) -> None:
        self._flatten = DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Builds ``input_ids``, ``labels`` and ``position_ids`` of shape ``(1, total_tokens)``.

        Args:
            features: Rows with ``input_ids`` and ``labels``.

        Returns:
            The packed batch.
        """
        rows = [{"input_ids": feature["input_ids"], "labels": feature["labels"]} for feature in features]
        return self._flatten(rows, return_tensors="pt")


def count_tokens(batch: dict[str, torch.Tensor]) -> int:
    """Counts real (non-padding) tokens of a collated batch.

    Args:
        batch: Output of :class:`PaddingCollator` or :class:`PackingCollator`.

    Returns:
        Number of tokens the model processes for real.
    """
    if "attention_mask" in batch:
        return int(batch["attention_mask"].sum())
    return int(batch["input_ids"].numel())
