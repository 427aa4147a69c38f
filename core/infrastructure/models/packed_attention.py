"""Attention over a packed row, one sequence at a time: sdpa without the row's dense block mask.

A padding-free batch is one row of several sequences whose ``position_ids`` restart at 0. With
``sdpa`` transformers turns those resets into a block-diagonal causal mask over the whole row, so
every layer computes scores for every pair of tokens in the row (then masks most of them) and
cannot use sdpa's causal fast path; with grouped-query attention the keys and values are also
repeated per head. ``sdpa_packed`` instead runs sdpa with ``is_causal=True`` on each sequence's
slice of the row, as the variable-length Flash Attention kernels do on CUDA: the same result
(the tests compare it with sdpa and with the sequences run one by one), a fraction of the work.

It takes that path only when the mask it is given is exactly the block-diagonal causal mask of
one square row (checked once per forward, not per layer); any other mask (padding, a sliding
window shorter than a sequence, a cache) goes to transformers' own sdpa function unchanged.

On a CPU, a sequence of up to ``FP32_ATTENTION_MAX_LENGTH`` tokens that would attend in bf16 or
fp16 (autocast, or half-precision weights) attends in fp32 instead, autocast off, the output cast
to the dtype sdpa would have returned: torch's CPU flash kernel is faster in fp32 than in bf16 at
those lengths, and fp32 is the more precise.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch

from core.infrastructure.models.loading import base_model_of

PACKED_SDPA = "sdpa_packed"
"""The name this attention function is registered under (transformers' ``AttentionInterface``)."""

FP32_ATTENTION_MAX_LENGTH = 256
"""On a CPU a sequence up to this long attends in fp32 rather than bf16: torch's bf16 flash kernel
is the slower one there (forward + backward, 9 heads of 64: 0.45x the time at 66 tokens, 0.57x at
128, 0.83x at 256, 1.07x at 512; README), and fp32 is the more precise."""

_last_mask: list[Any] = [None]  # (weak reference to a mask, its bounds), replaced as one tuple


def sequence_bounds(mask: torch.Tensor | None) -> list[tuple[int, int]] | None:
    """Finds the sequences of a packed row from its attention mask.

    Args:
        mask: The 4D boolean mask transformers built for the forward pass, ``(1, 1, length, length)``.

    Returns:
        ``(start, end)`` of each sequence when ``mask`` is exactly block-diagonal causal over one
        square row, else None.
    """
    if mask is None:
        return None
    cached = _last_mask[0]
    if cached is not None and cached[0]() is mask:  # the same mask object serves every layer
        return cached[1]
    bounds = _block_causal_bounds(mask)
    _last_mask[0] = (weakref.ref(mask), bounds)
    return bounds


def _block_causal_bounds(mask: torch.Tensor) -> list[tuple[int, int]] | None:
    if mask.dtype != torch.bool or mask.dim() != 4 or tuple(mask.shape[:2]) != (1, 1):
        return None
    square = mask[0, 0]
    length = square.shape[0]
    if square.shape[1] != length or length < 2:
        return None
    starts = torch.ones(length, dtype=torch.bool, device=mask.device)
    starts[1:] = ~square.diagonal(-1)  # a token that cannot see its left neighbour starts a sequence
    sequence_ids = starts.cumsum(0)
    if not torch.equal((sequence_ids[:, None] == sequence_ids[None, :]).tril_(), square):
        return None
    where = starts.nonzero().flatten().tolist()
    return list(zip(where, [*where[1:], length], strict=True))


def packed_sdpa_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Runs sdpa per sequence of a packed row; anything else goes to transformers' sdpa function.

    Args:
        module: The attention layer (``num_key_value_groups`` tells grouped-query attention).
        query: ``(batch, heads, length, head_dim)``.
        key: ``(batch, kv_heads, kv_length, head_dim)``.
        value: Like ``key``.
        attention_mask: The mask transformers built (see :func:`sequence_bounds`).
        dropout: Attention dropout probability.
        scaling: Score scale (sdpa's default when None).
        **kwargs: The model's other attention arguments.

    Returns:
        ``(output of shape (batch, length, heads, head_dim), None)`` as transformers expects.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    special = kwargs.get("softcap") is not None or kwargs.get("position_bias") is not None
    bounds = None if special or query.shape[2] != key.shape[2] else sequence_bounds(attention_mask)
    if bounds is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    options = {"dropout_p": dropout, "scale": scaling, "is_causal": True}
    if getattr(module, "num_key_value_groups", 1) > 1:
        options["enable_gqa"] = True
    slices = [(query[:, :, start:end], key[:, :, start:end], value[:, :, start:end]) for start, end in bounds]
    outputs = [_attend(*sequence, options) for sequence in slices]
    output = torch.cat(outputs, dim=2) if len(outputs) > 1 else outputs[0]
    return output.transpose(1, 2).contiguous(), None


def _attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, options: dict[str, Any]) -> torch.Tensor:
    """One sequence's causal sdpa; on a CPU a short one in fp32 when it would run in bf16/fp16."""
    attend = torch.nn.functional.scaled_dot_product_attention
    on_cpu = query.device.type == "cpu"
    autocast = on_cpu and torch.is_autocast_enabled("cpu")
    reduced = autocast or query.dtype in (torch.bfloat16, torch.float16)
    if not (on_cpu and reduced and query.shape[2] <= FP32_ATTENTION_MAX_LENGTH):
        return attend(query, key, value, **options)
    output_dtype = torch.get_autocast_dtype("cpu") if autocast else query.dtype  # what sdpa would return
    with torch.autocast("cpu", enabled=False):
        output = attend(query.float(), key.float(), value.float(), **options)
    return output.to(output_dtype)


def register_packed_sdpa() -> None:
    """Registers ``sdpa_packed`` with transformers (its masks are built as for ``sdpa``)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(PACKED_SDPA, packed_sdpa_attention_forward)
    AttentionMaskInterface.register(PACKED_SDPA, sdpa_mask)


def use_packed_attention(model: torch.nn.Module) -> str:
    """Switches a model that runs ``sdpa`` to ``sdpa_packed`` for padding-free batches.

    The choice lives in the loaded model only: ``config.json`` never records it, so saved and
    merged models load with plain transformers as before.

    Args:
        model: A causal LM, plain or PEFT-wrapped.

    Returns:
        The attention implementation the model runs with afterwards.
    """
    base = base_model_of(model)
    current = getattr(base.config, "_attn_implementation", None)
    if current != "sdpa" or not getattr(base, "_supports_attention_backend", False):
        return str(current)
    register_packed_sdpa()
    base.set_attn_implementation(PACKED_SDPA)
    return PACKED_SDPA
