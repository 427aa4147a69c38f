"""The measurement both sides of a training benchmark carry: a ``TrainerCallback`` that times steps and counts tokens.

Shared by ``training_throughput``, ``technique_costs`` and ``memory_estimator`` (ours and the TRL
sides attach the same probe, so their figures are measured the same way).
"""

from __future__ import annotations

import time
from typing import Any

from transformers import TrainerCallback

IGNORE_INDEX = -100


def _trained_positions(forward_kwargs: dict[str, Any]) -> int:
    """Positions whose logits the forward pass computes for the loss.

    Ours passes no labels to the model but a boolean ``logits_to_keep`` mask of the trained
    positions; a plain Trainer passes ``labels`` (-100 on untrained tokens).

    Args:
        forward_kwargs: Keyword arguments of the model's forward call.

    Returns:
        The count (0 when neither is given).
    """
    import torch

    keep = forward_kwargs.get("logits_to_keep")
    if torch.is_tensor(keep) and keep.dtype == torch.bool:
        return int(keep.sum())
    labels = forward_kwargs.get("labels")
    return int((labels != IGNORE_INDEX).sum()) if labels is not None else 0


class ThroughputProbe(TrainerCallback):
    """Times training steps, counts the tokens the model really processes, and scores the result.

    A forward pre-hook on the top-level model counts, for every training forward pass, the
    positions computed (``input_ids.numel()``), the real tokens (``attention_mask.sum()``, or
    every position for padding-free batches without a mask) and the trained positions (ours'
    ``logits_to_keep`` mask, else labels other than -100). Step ends are time-stamped; the rate is taken between the end of step
    ``warmup_steps`` and the end of the last step.

    Attributes:
        marks: ``(time, real_tokens, positions, trained_positions)`` at every step end.
        peak_memory_mb: Peak memory at the end of training (resident set on CPU, allocator peak on CUDA).
        final_loss: Masked response loss on the held-out rows after training (None without rows).
    """

    def __init__(self, eval_rows: list[dict[str, Any]], pad_token_id: int, warmup_steps: int = 1) -> None:
        """Creates the probe.

        Args:
            eval_rows: Held-out rows (``input_ids``, ``labels``) scored after training.
            pad_token_id: Padding id for the loss batches.
            warmup_steps: Steps excluded from the timing (the first one warms caches up).
        """
        self.eval_rows = eval_rows
        self.pad_token_id = pad_token_id
        self.warmup_steps = warmup_steps
        self.marks: list[tuple[float, int, int, int]] = []
        self.real_tokens = 0
        self.positions = 0
        self.trained_positions = 0
        self.peak_memory_mb = 0.0
        self.final_loss: float | None = None
        self.loss_seconds = 0.0
        self._handle: Any = None

    def _count(self, module: Any, args: tuple, kwargs: dict[str, Any]) -> None:
        if not module.training:
            return
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if input_ids is None:
            return
        mask = kwargs.get("attention_mask")
        self.positions += int(input_ids.numel())
        self.real_tokens += int(mask.sum()) if mask is not None else int(input_ids.numel())
        self.trained_positions += _trained_positions(kwargs)

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        """Attaches the token counter to the model."""
        self._handle = model.register_forward_pre_hook(self._count, with_kwargs=True)
        self.marks = [(time.perf_counter(), 0, 0, 0)]

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Time-stamps the end of an optimizer step."""
        self.marks.append((time.perf_counter(), self.real_tokens, self.positions, self.trained_positions))

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        """Records the peak memory, detaches the counter and scores the trained model."""
        from core.infrastructure.training.resources import peak_memory_mb

        self.peak_memory_mb = peak_memory_mb()  # CUDA allocator peak on a GPU, else peak RSS
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        if self.eval_rows and model is not None:
            from core.infrastructure.evaluation.loss import response_loss

            started = time.perf_counter()
            self.final_loss = response_loss(
                model, self.eval_rows, batch_size=8, pad_token_id=self.pad_token_id, show_progress=False
            ).loss
            self.loss_seconds = time.perf_counter() - started

    def summary(self) -> dict[str, Any]:
        """Throughput, padding waste, memory and loss of the run.

        Returns:
            JSON-serialisable figures of this side.
        """
        steps = len(self.marks) - 1
        start = min(self.warmup_steps, max(steps - 1, 0))
        begin, end = self.marks[start], self.marks[-1]
        seconds = max(end[0] - begin[0], 1e-9)
        real, positions, trained = end[1] - begin[1], end[2] - begin[2], end[3] - begin[3]
        timed_steps = max(steps - start, 1)
        return {
            "steps": steps,
            "timed_steps": steps - start,
            "timed_seconds": round(seconds, 3),
            "real_tokens": real,
            "positions": positions,
            "tokens_per_step": round(real / timed_steps, 1),
            "trained_positions_per_step": round(trained / timed_steps, 1),
            "tokens_per_second": round(real / seconds, 2),
            "padding_waste": round(1 - real / positions, 4) if positions else None,
            "peak_memory_mb": round(self.peak_memory_mb, 1),
            "final_loss": self.final_loss,
            "loss_seconds": round(self.loss_seconds, 2),
        }
