"""Cross-entropy over the vocabulary a chunk of positions at a time: full-vocabulary logits never exist at once.

For a 7B model with a 128k vocabulary, the logits of 4,096 trained tokens are 525M values, 2.1 GB
in fp32, and the stock loss holds several tensors of that size at once (the logits, their fp32
copy, the log-softmax kept for backward, then its gradient). Here the model's forward returns the
final hidden states at the trained positions (its output layer is bypassed for the call) and
:class:`ChunkedLinearCrossEntropy` projects them onto the vocabulary a chunk of positions at a
time, computing each chunk's loss and gradients at once (the approach of Liger's fused linear
cross-entropy and of Cut Cross-Entropy), so a step holds one chunk's logits at most.

Only output layers that are a plain ``nn.Linear`` without bias, in catalog families whose forward
does nothing to the logits after it (no soft-capping or scaling), and not sharded or hooked, are chunked;
anything else keeps the masked loss of :mod:`core.infrastructure.training.loss`.

Measured (``benchmarks/chunked_loss.py``, README): at 2,048 trained tokens and a 128k vocabulary
peak memory 0.40x and steps 1.24x faster; on the embedded model (88 trained positions per step, one
chunk) 1.07x faster at the same memory. So it is on by default (``training.chunked_loss``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from core.domain.catalog import defaults_for_model_type
from core.infrastructure.models.loading import base_model_of

CHUNK_LOGITS = 1 << 24
"""Logits computed at once (16M values: 64 MB in fp32); a chunk has this many divided by the vocabulary positions."""


class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of ``hidden @ weight.T`` against ``targets``, computed and differentiated chunk by chunk.

    Forward computes every chunk's logits in the compute dtype (autocast's, as the output layer
    would), their fp32 log-softmax, the chunk's loss and, at once, the gradients of the summed
    loss with respect to the hidden states and (when it is trained) the weight; backward only
    scales them. Numerically this is the masked loss: same matmul dtypes, fp32 softmax.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_positions: int
    ) -> torch.Tensor:
        """Returns the summed token cross-entropy (fp32 scalar) and keeps its gradients for backward."""
        device = hidden.device.type
        compute = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype
        with torch.autocast(device, enabled=False):
            projection = weight.to(compute)
            total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            grad_hidden = torch.empty_like(hidden)
            grad_weight = torch.zeros_like(weight, dtype=torch.float32) if ctx.needs_input_grad[1] else None
            for start in range(0, hidden.shape[0], chunk_positions):
                states = hidden[start : start + chunk_positions].to(compute)
                chunk_targets = targets[start : start + chunk_positions]
                log_probs = (states @ projection.T).float().log_softmax(-1)
                rows = torch.arange(len(chunk_targets), device=hidden.device)
                total -= log_probs[rows, chunk_targets].sum()
                grad_logits = log_probs.exp_()
                grad_logits[rows, chunk_targets] -= 1
                grad_logits = grad_logits.to(compute)
                grad_hidden[start : start + chunk_positions] = (grad_logits @ projection).to(hidden.dtype)
                if grad_weight is not None:
                    grad_weight += (grad_logits.T @ states).float()
        ctx.grads, ctx.weight_dtype = (grad_hidden, grad_weight), weight.dtype
        return total

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        """Scales the gradients computed in forward by the incoming gradient."""
        grad_hidden, grad_weight = ctx.grads
        ctx.grads = None
        scaled_weight = None if grad_weight is None else (grad_weight * grad_output).to(ctx.weight_dtype)
        return grad_hidden * grad_output.to(grad_hidden.dtype), scaled_weight, None, None


@dataclass(frozen=True)
class OutputLayer:
    """A model's output layer and where it hangs (so that a forward can bypass it).

    Attributes:
        owner: The module holding the layer (the base causal LM).
        name: Its attribute name there (``lm_head``).
        layer: The layer.
    """

    owner: torch.nn.Module
    name: str
    layer: torch.nn.Linear

    @property
    def positions_per_chunk(self) -> int:
        """Positions projected at once: :data:`CHUNK_LOGITS` divided by the vocabulary (at least 16)."""
        return max(16, CHUNK_LOGITS // self.layer.out_features)

    @property
    def hooked(self) -> bool:
        """True when hooks run around the layer (a device map, offloading, or one added later): it must run."""
        layer = self.layer
        return bool(layer._forward_hooks or layer._forward_pre_hooks or hasattr(layer, "_hf_hook"))

    @contextlib.contextmanager
    def bypassed(self) -> Iterator[None]:
        """For the duration the layer returns its input: the model's ``logits`` are the final hidden states."""
        setattr(self.owner, self.name, torch.nn.Identity())
        try:
            yield
        finally:
            setattr(self.owner, self.name, self.layer)


def chunkable_output_layer(model: torch.nn.Module) -> OutputLayer | None:
    """The output layer the loss can bypass and project in chunks, or None.

    Args:
        model: The unwrapped training model (possibly PEFT-wrapped).

    Returns:
        The base model's output layer when it is a plain ``nn.Linear`` without bias or hooks (no
        LoRA on it, no device map or offloading) in a catalog family whose forward returns its
        result unchanged (``ArchitectureDefaults.plain_output_layer``); else None.
    """
    base = base_model_of(model)
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if type(head) is not torch.nn.Linear or head.bias is not None:
        return None
    config = base.config
    if not defaults_for_model_type(getattr(config, "model_type", "")).plain_output_layer:
        return None
    if any(getattr(config, name, None) for name in ("final_logit_softcapping", "logit_scale", "logits_scaling")):
        return None
    name = next((name for name, child in base.named_children() if child is head), None)
    layer = OutputLayer(base, name, head) if name else None
    return None if layer is None or layer.hooked else layer
