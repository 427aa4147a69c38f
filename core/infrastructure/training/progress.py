"""Live progress of a run: ``progress.json`` with the phase (``evaluating k/N``) and a measured time estimate.

The studio polls this file. The estimate adds up what is left, each part timed earlier in this run:
optimizer steps, evaluations (seconds per evaluation batch), sample generations and checkpoints.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from core.domain.manifest import PROGRESS_FILE, write_json_atomic


@dataclass
class Schedule:
    """When the run evaluates, samples and saves (0: never / unknown).

    Attributes:
        eval_every: Evaluation interval in steps (an epoch's steps for per-epoch evaluation).
        eval_batches: Batches of a regular (not step-0) evaluation.
        sample_every: Sample interval in steps.
        save_every: Checkpoint interval in steps.
    """

    eval_every: int = 0
    eval_batches: int = 0
    sample_every: int = 0
    save_every: int = 0


@dataclass
class Timings:
    """Measured durations of this run (seconds); None until measured once."""

    step_s: list[float] = field(default_factory=list)
    eval_batch_s: list[float] = field(default_factory=list)
    sample_s: float | None = None
    checkpoint_s: float | None = None

    def mean_step(self) -> float | None:
        """Mean optimizer-step time (the last 20 steps)."""
        recent = self.step_s[-20:]
        return sum(recent) / len(recent) if recent else None

    def mean_eval_batch(self) -> float | None:
        """Mean evaluation-batch time."""
        return sum(self.eval_batch_s) / len(self.eval_batch_s) if self.eval_batch_s else None


def count_due(every: int, after: int, until: int) -> int:
    """How many multiples of ``every`` lie in ``(after, until]``.

    Args:
        every: Interval (0: none).
        after: Exclusive start step.
        until: Inclusive end step.

    Returns:
        The count.
    """
    if every <= 0 or until <= after:
        return 0
    return until // every - after // every


def remaining_seconds(
    step: int,
    max_steps: int,
    schedule: Schedule,
    timings: Timings,
    eval_batches_left: int = 0,
    final_eval_pending: bool = True,
) -> float | None:
    """Time left: steps, the evaluation in progress, later evaluations, samples and checkpoints.

    The final evaluation (at ``max_steps`` when the schedule does not evaluate there) and the final
    save count too. Parts not measured yet count as 0, except evaluations (timed per batch at step 0).

    Args:
        step: Optimizer steps done.
        max_steps: Planned steps.
        schedule: The run's schedule.
        timings: Durations measured so far.
        eval_batches_left: Batches of a running evaluation still to do.
        final_eval_pending: False once the final evaluation started (or the schedule ends on one).

    Returns:
        Seconds, or None before any step or evaluation batch was timed.
    """
    step_s, batch_s = timings.mean_step(), timings.mean_eval_batch()
    if step_s is None and batch_s is None:
        return None
    evaluations = count_due(schedule.eval_every, step, max_steps)
    if schedule.eval_batches and final_eval_pending and (schedule.eval_every <= 0 or max_steps % schedule.eval_every):
        evaluations += 1  # train() evaluates once more after the last step
    saves = count_due(schedule.save_every, step, max_steps) + 1  # + final/
    seconds = (step_s or 0.0) * max(max_steps - step, 0)
    seconds += (batch_s or 0.0) * (eval_batches_left + evaluations * schedule.eval_batches)
    seconds += (timings.sample_s or 0.0) * count_due(schedule.sample_every, step, max_steps)
    return seconds + (timings.checkpoint_s or 0.0) * saves


class RunProgress(TrainerCallback):
    """Writes ``progress.json`` at every step and every evaluation batch (main process only).

    Phases: ``training``, ``evaluating`` (with ``eval_done``/``eval_total`` batches), ``saving``.
    :class:`~core.infrastructure.training.trainer.StudioTrainer` reports evaluation start/end and
    checkpoint durations; :meth:`after_sampling` is a second callback that times sample generation.
    """

    def __init__(self, run_dir: Path, schedule: Schedule, enabled: bool = True) -> None:
        """Creates the callback.

        Args:
            run_dir: The run directory.
            schedule: The run's evaluation/sample/save schedule.
            enabled: False on processes other than the main one (nothing is written).
        """
        self.path = Path(run_dir) / PROGRESS_FILE
        self.schedule = schedule
        self.enabled = enabled
        self.timings = Timings()
        self.state: TrainerState | None = None
        self.phase = "training"
        self.eval_done = self.eval_total = 0
        self._step_started: float | None = None
        self._step_ended: float | None = None
        self._last_activity: float | None = None
        self._last_batch: float = 0.0
        self._evaluated_at_end = False

    def write(self) -> None:
        """Rewrites the progress file (atomically) with the phase and the estimate."""
        if not self.enabled or self.state is None:
            return
        step, max_steps = self.state.global_step, self.state.max_steps
        final_pending = step < max_steps or (self.phase != "evaluating" and not self._evaluated_at_end)
        eta = remaining_seconds(
            step, max_steps, self.schedule, self.timings, self.eval_total - self.eval_done, final_pending
        )
        write_json_atomic(
            self.path,
            {
                "phase": self.phase,
                "step": step,
                "max_steps": max_steps,
                "eval_done": self.eval_done,
                "eval_total": self.eval_total,
                "eta_s": round(eta, 1) if eta is not None else None,
                "updated_at": time.time(),
                "timings": {
                    "step_s": self.timings.mean_step(),
                    "eval_batch_s": self.timings.mean_eval_batch(),
                    "sample_s": self.timings.sample_s,
                    "checkpoint_s": self.timings.checkpoint_s,
                },
            },
        )

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        """Starts the file for this session."""
        self.state = state
        self.write()

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        """Starts the step clock."""
        self._step_started = time.perf_counter()

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        """Records the step time (forward, backward, optimizer) and the new step."""
        now = time.perf_counter()
        if self._step_started is not None:
            self.timings.step_s.append(now - self._step_started)
        self._step_ended = self._last_activity = now
        self.write()

    def evaluation_started(self, state: TrainerState, batches: int) -> None:
        """Called by the trainer when an evaluation begins.

        Args:
            state: The trainer state.
            batches: Batches this evaluation runs on this process.
        """
        self.state = state
        self.phase, self.eval_done, self.eval_total = "evaluating", 0, batches
        self._last_batch = time.perf_counter()
        self.write()

    def on_prediction_step(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        """Counts one evaluation batch and times it."""
        now = time.perf_counter()
        self.timings.eval_batch_s.append(now - self._last_batch)
        self._last_batch = now
        self.eval_done = min(self.eval_done + 1, self.eval_total or math.inf)
        self.write()

    def evaluation_finished(self) -> None:
        """Called by the trainer when an evaluation ends (or was aborted)."""
        if self.state is not None and self.state.global_step >= self.state.max_steps:
            self._evaluated_at_end = True
        self.phase, self.eval_done, self.eval_total = "training", 0, 0
        self._last_activity = time.perf_counter()
        self.write()

    def checkpoint_saved(self) -> None:
        """Records the duration of the checkpoint save just sealed.

        Transformers writes the checkpoint right after the step, its log line, samples and any
        evaluation, so the save took the time since the last of those ended.
        """
        if self._last_activity is not None:
            self.timings.checkpoint_s = time.perf_counter() - self._last_activity
        self.write()

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        """Notes the time (a checkpoint save, if one is due, starts after the log line)."""
        self._last_activity = time.perf_counter()

    def after_sampling(self) -> TrainerCallback:
        """A callback to register after the sample generator: it times the generation just done."""
        progress = self

        class _AfterSampling(TrainerCallback):
            def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
                every = progress.schedule.sample_every
                if every and state.global_step % every == 0 and progress._step_ended is not None:
                    progress._last_activity = time.perf_counter()
                    progress.timings.sample_s = progress._last_activity - progress._step_ended
                    progress.write()

        return _AfterSampling()


def schedule_for(
    arguments: TrainingArguments, eval_records: int, sample_every: int | None, steps_per_epoch: int
) -> Schedule:
    """The schedule of a run from its training arguments.

    Args:
        arguments: The run's training arguments.
        eval_records: Records of a regular evaluation (0: no evaluation).
        sample_every: ``training.sample_every_steps``.
        steps_per_epoch: Optimizer steps per epoch (for per-epoch evaluation and saving).

    Returns:
        The schedule.
    """
    eval_every = 0
    if eval_records:
        eval_every = int(arguments.eval_steps or 0) if arguments.eval_strategy == "steps" else steps_per_epoch
    save_every = int(arguments.save_steps or 0) if arguments.save_strategy == "steps" else steps_per_epoch
    batch = arguments.per_device_eval_batch_size * max(arguments.world_size, 1)
    return Schedule(
        eval_every=eval_every,
        eval_batches=math.ceil(eval_records / batch) if eval_records else 0,
        sample_every=sample_every or 0,
        save_every=save_every if arguments.save_strategy != "no" else 0,
    )
