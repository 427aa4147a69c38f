"""Choice of the training precision for the hardware at hand."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.infrastructure.models.loading import cpu_supports_bf16


@dataclass(frozen=True)
class Precision:
    """The numeric format training computes in.

    Attributes:
        name: ``bf16``, ``fp16`` or ``fp32``.
        reason: Why it was chosen (logged and stored in the manifest).
    """

    name: str
    reason: str

    @property
    def compute_dtype(self) -> torch.dtype:
        """The autocast dtype (fp32 when no autocast)."""
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name, torch.float32)


def choose_precision(requested: str, device: torch.device) -> Precision:
    """Picks the training precision for the device.

    bf16 autocast on CPUs with AMX/AVX512-BF16 and on GPUs with bf16, fp16 on older GPUs, fp32
    otherwise. An explicit ``training.precision`` wins.

    Args:
        requested: ``training.precision`` (``auto``, ``bf16``, ``fp16`` or ``fp32``).
        device: The training device.

    Returns:
        The precision and the reason for it.
    """
    if requested != "auto":
        return Precision(requested, "set by training.precision")
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return Precision("bf16", "CUDA device supports bf16")
        return Precision("fp16", "CUDA device without bf16 support")
    if device.type == "cpu" and cpu_supports_bf16():
        return Precision("bf16", "CPU has native bf16 matmuls (AMX/AVX512-BF16)")
    return Precision("fp32", f"no native bf16/fp16 on {device.type}")
