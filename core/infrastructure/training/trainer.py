"""``StudioTrainer``: transformers' Trainer with crash-safe checkpoints, NaN policy and token counting."""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from accelerate.utils import DistributedType
from loguru import logger
from transformers import Trainer
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

from core.domain.errors import FinetuneStudioError
from core.infrastructure.training.callbacks import EvaluationAborted
from core.infrastructure.training.checkpoint_sealing import CheckpointSealCallback
from core.infrastructure.training.chunked_loss import OutputLayer, chunkable_output_layer
from core.infrastructure.training.collators import count_tokens
from core.infrastructure.training.loss import accepts_logits_mask, masked_causal_lm_loss


class TrainingDivergedError(FinetuneStudioError):
    """The loss or the gradients became NaN/inf and ``training.nan_policy=stop``."""


class SeededLengthGroupedSampler(LengthGroupedSampler):
    """Length-grouped sampler whose order depends only on (seed, epoch).

    A resumed run thus sees the same batches as an uninterrupted one (transformers' own sampler
    draws from the global RNG at the start of each epoch).
    """

    def __init__(self, batch_size: int, lengths: list[int], seed: int) -> None:
        """Creates the sampler.

        Args:
            batch_size: Sequences per optimizer step on this process (batch x accumulation).
            lengths: Sequence lengths of the dataset.
            seed: Base seed; epoch ``e`` uses ``seed + e``.
        """
        super().__init__(batch_size, lengths=lengths)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose order is produced next (called by accelerate's data loader)."""
        self.epoch = epoch

    def __iter__(self):
        """Yields indices grouped by length, shuffled by a generator seeded with ``seed + epoch``."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


class StudioTrainer(Trainer):
    """Trainer whose checkpoints are sealed (``on_save``) and which never lets a NaN/inf pass silently.

    Everything else (loop, accumulation, clipping, schedulers, mixed precision, evaluation,
    checkpoint writing, DDP/FSDP/DeepSpeed through accelerate, resume) is transformers' own.

    Attributes:
        run_config: The run's configuration, stored in every checkpoint for resume checks.
        nan_policy: ``skip`` (drop the update and count it) or ``stop`` (raise).
        skipped_updates: Optimizer steps dropped because of non-finite gradients.
        tokens_seen: Real tokens processed by this process since the start of this call.
        start_eval_dataset: Records of the step-0 evaluation (None: the evaluation dataset).
        run_progress: The run's :class:`~core.infrastructure.training.progress.RunProgress` (or None).
    """

    def __init__(
        self,
        *args: Any,
        run_config: dict[str, Any],
        save_total_limit: int | None = None,
        nan_policy: str = "skip",
        chunked_loss: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.remove_callback(PrinterCallback)  # metrics go to loguru and metrics.jsonl, not print()
        # First, so that every other on_save (metrics, monitoring) sees a sealed checkpoint.
        self.callback_handler.callbacks.insert(0, CheckpointSealCallback(self, save_total_limit))
        self.run_config = run_config
        self.nan_policy = nan_policy
        self.skipped_updates = 0
        self.tokens_seen = 0
        self.masked_logits = accepts_logits_mask(self.accelerator.unwrap_model(self.model))
        self.chunked_loss = chunked_loss
        self.output_layer = chunkable_output_layer(self.accelerator.unwrap_model(self.model))
        if chunked_loss:
            logger.info(
                "Loss: {}",
                "vocabulary projection and cross-entropy a chunk of positions at a time"
                if self.output_layer and self.masked_logits
                else "every trained position's logits at once (this model's output layer cannot be bypassed)",
            )
        self.start_eval_dataset: Any = None
        self.run_progress: Any = None

    def evaluate(self, eval_dataset: Any = None, ignore_keys: Any = None, metric_key_prefix: str = "eval") -> Any:
        """Runs the evaluation of transformers, on the step-0 records at step 0, reporting its progress.

        A stop request during the evaluation aborts it at the next batch (see ``StopCallback``): the
        metrics are then empty and the training loop saves a checkpoint and stops.

        Args:
            eval_dataset: Records to evaluate (None: the step-0 records at step 0, else the evaluation set).
            ignore_keys: Output keys to ignore.
            metric_key_prefix: Prefix of the metric names.

        Returns:
            The metrics (empty when aborted).
        """
        if eval_dataset is None and self.state.global_step == 0 and self.start_eval_dataset is not None:
            eval_dataset = self.start_eval_dataset
        records = len(eval_dataset if eval_dataset is not None else self.eval_dataset)
        if self.run_progress is not None:
            batch = self.args.per_device_eval_batch_size * max(self.args.world_size, 1)
            self.run_progress.evaluation_started(self.state, math.ceil(records / batch))
        started = time.perf_counter()
        try:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        except EvaluationAborted:
            logger.warning(
                "Evaluation at step {} skipped after {:.1f} s: stop requested",
                self.state.global_step,
                time.perf_counter() - started,
            )
            return {}
        finally:
            if self.run_progress is not None:
                self.run_progress.evaluation_finished()

    def _determine_best_metric(self, metrics: dict[str, float], trial: Any) -> bool:
        """Best-checkpoint tracking of transformers; an aborted evaluation (no metrics) is never the best."""
        if not metrics:
            return False
        return super()._determine_best_metric(metrics, trial)

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        """Uses :class:`SeededLengthGroupedSampler` for length-grouped batching (exact resume)."""
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy == "group_by_length" and "length" in dataset.column_names:
            return SeededLengthGroupedSampler(
                self.args.train_batch_size * self.args.gradient_accumulation_steps,
                lengths=list(dataset["length"]),
                seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed,
            )
        return super()._get_train_sampler(train_dataset)

    def training_step(self, model: torch.nn.Module, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
        """Runs transformers' forward/backward and counts the batch's real tokens.

        Args:
            model: The (wrapped) model.
            inputs: The collated batch.
            num_items_in_batch: Label tokens in the accumulation window.

        Returns:
            The detached loss.
        """
        self.tokens_seen += count_tokens(inputs)
        return super().training_step(model, inputs, num_items_in_batch)

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        """Computes the causal-LM loss with logits only at trained positions (see ``training/loss.py``).

        Falls back to transformers' own loss for models without ``logits_to_keep`` or with label
        smoothing / a custom loss function.

        Args:
            model: The (wrapped) model.
            inputs: The collated batch.
            return_outputs: Also return the model outputs.
            num_items_in_batch: Label tokens in the accumulation window.

        Returns:
            The loss, or ``(loss, outputs)``.
        """
        if (
            not self.masked_logits
            or "labels" not in inputs
            or self.label_smoother is not None
            or self.compute_loss_func is not None
        ):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        loss, outputs = masked_causal_lm_loss(model, inputs, num_items_in_batch, self._chunkable_layer())
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            # As Trainer.compute_loss: gradients are averaged across processes, the token count summed.
            loss = loss * (
                self.accelerator.num_processes // self.get_tp_size() if self.args.n_gpu <= 1 else self.args.n_gpu
            )
        return (loss, outputs) if return_outputs else loss

    def _chunkable_layer(self) -> OutputLayer | None:
        """The output layer a training batch's loss may be chunked over (see ``training/chunked_loss.py``).

        None outside training (evaluation keeps its logits), with ``training.chunked_loss=false``, while
        a hook runs around the layer (a callback may add one: it must see the logits), and
        where the layer's weight is sharded (FSDP, DeepSpeed) or trained by several processes (DDP
        synchronises only gradients of its forward).
        """
        layer = self.output_layer
        if layer is None or not self.chunked_loss or not torch.is_grad_enabled() or layer.hooked:
            return None
        distributed = self.accelerator.distributed_type
        if distributed in (DistributedType.FSDP, DistributedType.DEEPSPEED, DistributedType.MEGATRON_LM):
            return None
        if distributed != DistributedType.NO and layer.layer.weight.requires_grad:
            return None
        return layer

    def _get_grad_norm(self, model: torch.nn.Module, grad_norm: Any = None) -> Any:
        """Returns the gradient norm; a non-finite norm skips the update or stops, per ``nan_policy``."""
        grad_norm = super()._get_grad_norm(model, grad_norm=grad_norm)
        value = float(grad_norm.item() if hasattr(grad_norm, "item") else grad_norm)
        if math.isfinite(value):
            return grad_norm
        step = self.state.global_step + 1
        if self.nan_policy == "stop":
            raise TrainingDivergedError(
                f"non-finite loss/gradients (grad norm {value}) at step {step}; training stopped "
                "(training.nan_policy=stop). Lower training.learning_rate, keep training.max_grad_norm > 0, "
                "or use training.precision=fp32."
            )
        for parameter in model.parameters():
            parameter.grad = None  # optimizers skip parameters without gradients: no update at all
        self.skipped_updates += 1
        logger.warning(
            "Non-finite loss/gradients at step {}: update skipped ({} skipped so far; training.nan_policy=skip)",
            step,
            self.skipped_updates,
        )
        return grad_norm

    def _issue_warnings_after_load(self, load_result: Any) -> None:
        """Warns about missing keys after loading the best checkpoint, except tied weights.

        Safetensors stores a tied ``lm_head.weight`` once (as the embedding), so it is always
        "missing" from a checkpoint of a model with tied embeddings while loaded correctly.
        """
        model = self.accelerator.unwrap_model(self.model)
        tied = set(getattr(model, "all_tied_weights_keys", None) or {})
        missing = [key for key in load_result.missing_keys if key not in tied]
        if len(missing) != len(load_result.missing_keys):
            model.tie_weights()
        super()._issue_warnings_after_load(load_result._replace(missing_keys=missing))
