"""Trainer callbacks: metrics.jsonl, stop requests, sample generations."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from loguru import logger
from transformers import PreTrainedTokenizerBase, TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from core.domain.manifest import METRICS_FILE
from core.infrastructure.data.tokenize import render_prompt_ids
from core.infrastructure.inference.generation import generate_ids
from core.infrastructure.training.resources import current_memory_mb, peak_memory_mb


class MetricsLog:
    """Appends rows to ``metrics.jsonl`` (one JSON object per line, flushed at once for live readers).

    Attributes:
        path: The metrics file.
    """

    def __init__(self, run_dir: Path, keep_until_step: int | None = None) -> None:
        """Opens the log; when resuming, rows after the checkpoint step are dropped.

        Args:
            run_dir: The run directory.
            keep_until_step: None starts a fresh file; a step keeps the rows up to that step.
        """
        self.path = Path(run_dir) / METRICS_FILE
        kept: list[str] = []
        if keep_until_step is not None and self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if row.get("event") != "end" and row.get("step", 0) <= keep_until_step:
                    kept.append(line)
        self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        """Appends one row.

        Args:
            row: JSON-serialisable mapping.
        """
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
            handle.flush()


def perplexity(loss: float) -> float:
    """Returns ``exp(loss)``, capped to stay finite."""
    return math.exp(min(loss, 50.0))


class MetricsCallback(TrainerCallback):
    """Writes training and evaluation rows and keeps the run's summary metrics.

    Training rows: step, epoch, loss, learning_rate, grad_norm, tokens_per_second, elapsed_s,
    memory_mb. Evaluation rows: step, eval_loss, eval_perplexity.

    Attributes:
        summary: initial/final/best eval loss, peak memory, tokens per second, and so on.
    """

    def __init__(self, log: MetricsLog, trainer: Any = None, earlier_rows: Sequence[dict[str, Any]] = ()) -> None:
        """Creates the callback.

        Args:
            log: Where rows go (only on the main process).
            trainer: The :class:`StudioTrainer`, for token counts (set after construction).
            earlier_rows: The rows a resumed run keeps (up to its checkpoint step): the summary
                continues from them (step-0 evaluation, best loss) and so does the wall time
                (the ``elapsed_s`` at the checkpoint, so steps replayed after a crash count once).
        """
        self.log = log
        self.trainer = trainer
        self.elapsed_before_s = 0.0
        self.summary: dict[str, Any] = {}
        self._started = time.perf_counter()
        self._last_time = self._started
        self._last_tokens = 0
        self._total_tokens = 0
        for row in earlier_rows:
            if row.get("eval_loss") is not None:
                self._update_eval_summary(int(row.get("step", 0)), float(row["eval_loss"]))
            elif row.get("loss") is not None:
                self.summary["final_train_loss"] = float(row["loss"])
            if row.get("elapsed_s") is not None:
                self.elapsed_before_s = max(self.elapsed_before_s, float(row["elapsed_s"]))

    def elapsed_s(self) -> float:
        """Training wall time including earlier sessions of a resumed run."""
        return self.elapsed_before_s + time.perf_counter() - self._started

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        """Starts the clocks."""
        self._started = self._last_time = time.perf_counter()
        self._last_tokens = 0

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        """Excludes evaluation time from the next throughput measurement."""
        self._last_time = time.perf_counter()

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        """Records the wall time at the checkpoint (where a resume continues) and restarts the throughput clock."""
        if state.is_world_process_zero and self.log is not None:
            self.log.write({"step": state.global_step, "event": "checkpoint", "elapsed_s": round(self.elapsed_s(), 3)})
        self._last_time = time.perf_counter()

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ):
        """Turns Trainer logs into metrics rows."""
        if not state.is_world_process_zero or not logs:
            return
        if "eval_loss" in logs:
            self.record_eval(state.global_step, float(logs["eval_loss"]))
        elif "loss" in logs:
            now = time.perf_counter()
            tokens = (self.trainer.tokens_seen if self.trainer is not None else 0) * max(args.world_size, 1)
            rate = (tokens - self._last_tokens) / max(now - self._last_time, 1e-9)
            self._total_tokens += tokens - self._last_tokens
            self._last_time, self._last_tokens = now, tokens
            row = {
                "step": state.global_step,
                "epoch": round(float(state.epoch or 0.0), 4),
                "loss": float(logs["loss"]),
                "learning_rate": float(logs.get("learning_rate", 0.0)),
                "grad_norm": float(logs["grad_norm"]) if logs.get("grad_norm") is not None else None,
                "tokens_per_second": round(rate, 1),
                "elapsed_s": round(self.elapsed_s(), 3),
                "memory_mb": round(current_memory_mb(), 1),
            }
            skipped = getattr(self.trainer, "skipped_updates", 0)
            if skipped:
                row["skipped_updates"] = skipped
            self.log.write(row)
            self.summary["final_train_loss"] = row["loss"]

    def record_eval(self, step: int, eval_loss: float) -> None:
        """Writes an evaluation row and updates initial/final/best eval loss.

        Args:
            step: Optimizer step of the evaluation.
            eval_loss: Mean validation loss.
        """
        self.log.write({"step": step, "eval_loss": eval_loss, "eval_perplexity": perplexity(eval_loss)})
        self._update_eval_summary(step, eval_loss)

    def _update_eval_summary(self, step: int, eval_loss: float) -> None:
        self.summary.setdefault("initial_eval_loss", eval_loss)
        self.summary["final_eval_loss"] = eval_loss
        self.summary["final_eval_step"] = step
        if eval_loss < self.summary.get("best_eval_loss", math.inf):
            self.summary["best_eval_loss"] = eval_loss
            self.summary["best_eval_step"] = step

    def finish(self) -> dict[str, Any]:
        """Completes and returns the summary (wall time, throughput, peak memory).

        Returns:
            The summary metrics for the manifest.
        """
        elapsed = self.elapsed_s()
        session = max(time.perf_counter() - self._started, 1e-9)
        self.summary.update(
            train_runtime_s=round(elapsed, 2),
            tokens_per_second=round(self._total_tokens / session, 1),
            peak_memory_mb=round(peak_memory_mb(), 1),
            skipped_updates=getattr(self.trainer, "skipped_updates", 0),
        )
        return self.summary


class EvaluationAborted(Exception):
    """Raised from an evaluation batch when a stop was requested; the trainer skips the evaluation."""


class StopCallback(TrainerCallback):
    """Honours a stop request (``runs/<name>/STOP`` or a ``threading.Event``) at the end of the step.

    A checkpoint is saved at that step, so the run can be resumed exactly. During an evaluation the
    request is seen at the next evaluation batch: the evaluation is abandoned (no row), then the
    checkpoint is saved and the run stops. At step 0 (no checkpoint possible) the run stops after step 1.

    Attributes:
        stopped: True once a request was honoured.
    """

    def __init__(self, stop_file: Path, stop_event: threading.Event | None = None) -> None:
        """Creates the callback.

        Args:
            stop_file: File whose existence requests a stop.
            stop_event: Optional in-process flag (used by the studio).
        """
        self.stop_file = Path(stop_file)
        self.stop_event = stop_event
        self.stopped = False

    def requested(self) -> bool:
        """Returns True when a stop was requested by file or flag."""
        return self.stop_file.exists() or (self.stop_event is not None and self.stop_event.is_set())

    def requested_on_any_process(self) -> bool:
        """Returns True when any process saw a stop request (the same answer on every process)."""
        requested = self.requested()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            flag = torch.tensor([1 if requested else 0], dtype=torch.int32)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            requested = bool(flag.item())
        return requested

    def on_prediction_step(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        """Abandons a running evaluation when a stop was requested (checkpoint and stop follow).

        Raises:
            EvaluationAborted: On a stop request.
        """
        if not self.requested_on_any_process():
            return control
        logger.warning("Stop requested during the evaluation at step {}: skipping it", state.global_step)
        if state.global_step > 0:
            self.stopped = True
            control.should_save = True
            control.should_training_stop = True
        raise EvaluationAborted(f"stop requested during the evaluation at step {state.global_step}")

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        """Stops after this optimizer step and saves a checkpoint."""
        requested = self.requested_on_any_process()
        if requested and not self.stopped:
            logger.warning("Stop requested: saving a checkpoint at step {} and stopping", state.global_step)
            self.stopped = True
            control.should_save = True
            control.should_training_stop = True
        return control


class SampleCallback(TrainerCallback):
    """Generates answers to fixed prompts every N steps (greedy) and logs them as a sample row."""

    def __init__(
        self,
        log: MetricsLog,
        tokenizer: PreTrainedTokenizerBase,
        prompts: list[str],
        every_steps: int,
        max_new_tokens: int = 48,
    ) -> None:
        """Creates the callback.

        Args:
            log: Where the sample rows go.
            tokenizer: Tokenizer with the training chat template.
            prompts: User prompts to answer.
            every_steps: Generation interval in optimizer steps.
            max_new_tokens: Longest answer.
        """
        self.log = log
        self.tokenizer = tokenizer
        self.prompts = prompts
        self.every_steps = every_steps
        self.max_new_tokens = max_new_tokens

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        """Generates and logs samples on the main process."""
        if not self.prompts or state.global_step % self.every_steps != 0 or not state.is_world_process_zero:
            return
        samples = generate_samples(kwargs["model"], self.tokenizer, self.prompts, self.max_new_tokens)
        for sample in samples:
            logger.info("Sample at step {}: {!r} -> {!r}", state.global_step, sample["prompt"], sample["output"])
        self.log.write({"step": state.global_step, "samples": samples})


@torch.no_grad()
def generate_samples(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, prompts: list[str], max_new_tokens: int
) -> list[dict[str, str]]:
    """Greedy answers to prompts, one at a time (no padding effects), restoring train mode after.

    Args:
        model: The model being trained (unwrapped).
        tokenizer: Tokenizer with the chat template.
        prompts: User prompts.
        max_new_tokens: Longest answer.

    Returns:
        ``[{"prompt": ..., "output": ...}, ...]``.
    """
    model = getattr(model, "module", model)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    samples = []
    try:
        for prompt in prompts:
            ids = render_prompt_ids(tokenizer, [{"role": "user", "content": prompt}])
            input_ids = torch.tensor([ids], device=device)
            output = generate_ids(  # keeps a Prefix Tuning prefix, unlike PeftModel.generate
                model,
                input_ids,
                torch.ones_like(input_ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                use_cache=True,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            text = tokenizer.decode(output[0], skip_special_tokens=True)
            samples.append({"prompt": prompt, "output": text.strip()})
    finally:
        if was_training:
            model.train()
    return samples
