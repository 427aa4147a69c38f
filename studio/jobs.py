"""Job supervisor: a background thread that runs training, evaluation and comparison jobs one at a time.

Every job runs in a child process (``python -m core.cli <command> --config <file> ...``), so Stop
frees the memory it used and a crash never takes the studio down. All state lives on disk:

* ``runs/.studio/jobs/<job_id>.json``: the job (kind, run, state, pid, return code), written atomically;
* ``runs/.studio/jobs/<job_id>.yaml``: the complete configuration the child reads;
* ``runs/.studio/jobs/<job_id>.log``: the child's stdout and stderr;
* ``runs/<run>/STOP``: a stop request that training honours within one step (keeping a checkpoint).

A browser refresh, a second tab or a restarted studio therefore sees the same queue and runs. A
job that was running when the studio stopped is adopted again when its process is still alive.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import psutil
import yaml
from loguru import logger

from core.domain.config import Settings
from core.domain.manifest import STOP_REQUEST_FILE, write_json_atomic
from studio.job_records import (
    ACTIVE_STATES,
    STUDIO_DIR,
    Job,
    JobKind,
    failure_message,
    live_child,
    now_iso,
    plain_config,
    run_status,
    settle_run,
    start_detached,
)


class JobSupervisor:
    """Queues jobs and runs them one at a time in child processes, from a background thread.

    Args:
        runs_dir: ``paths.runs_dir`` of the studio's settings.
        poll_interval_s: How often the background thread checks the child and the queue.
        stop_grace_s: Seconds a stopping child gets before it is terminated.
        niceness: Added to the child's nice value so the UI stays responsive while it trains.
        working_dir: Working directory of the children (the repository root by default).
    """

    def __init__(
        self,
        runs_dir: Path,
        poll_interval_s: float = 0.5,
        stop_grace_s: float = 180.0,
        niceness: int = 10,
        working_dir: Path | None = None,
    ) -> None:
        self.runs_dir = Path(runs_dir)
        self.jobs_dir = self.runs_dir / STUDIO_DIR / "jobs"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.poll_interval_s = poll_interval_s
        self.stop_grace_s = stop_grace_s
        self.niceness = niceness
        self.working_dir = Path(working_dir) if working_dir else Path.cwd()
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._process: subprocess.Popen | psutil.Process | None = None
        self._current: Job | None = None
        self._thread: threading.Thread | None = None
        self._adopt_running_jobs()

    # ------------------------------------------------------------------ files

    def _job_path(self, job_id: str) -> Path:
        return self.jobs_dir / f"{job_id}.json"

    def config_path(self, job_id: str) -> Path:
        """Path of the configuration file a job's child reads."""
        return self.jobs_dir / f"{job_id}.yaml"

    def log_path(self, job_id: str) -> Path:
        """Path of a job's captured stdout/stderr."""
        return self.jobs_dir / f"{job_id}.log"

    def _save(self, job: Job) -> None:
        write_json_atomic(self._job_path(job.job_id), asdict(job))

    def jobs(self) -> list[Job]:
        """All jobs on disk, oldest first.

        Returns:
            The jobs, sorted by submission time.
        """
        jobs = []
        for path in self.jobs_dir.glob("*.json"):
            try:
                jobs.append(Job(**json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, TypeError, ValueError) as error:
                logger.warning("Ignoring unreadable job file {}: {}", path, error)
        return sorted(jobs, key=lambda job: job.queued_at)

    def queued(self) -> list[Job]:
        """Jobs waiting to start, in the order they will run."""
        return [job for job in self.jobs() if job.state == "queued"]

    def jobs_ahead(self, job_id: str) -> int | None:
        """How many jobs run before a queued job, the running one included.

        Args:
            job_id: A job.

        Returns:
            The count, or None when the job is no longer queued (it started or ended).
        """
        queued = [job.job_id for job in self.queued()]
        if job_id not in queued:
            return None
        return queued.index(job_id) + (1 if self.current() is not None else 0)

    def current(self) -> Job | None:
        """The running job, if any."""
        with self._lock:
            return self._current

    def latest_job_for(self, run_name: str, kind: JobKind = "train") -> Job | None:
        """The most recent job of a kind for a run.

        Args:
            run_name: The run.
            kind: Job kind.

        Returns:
            The job or None.
        """
        matches = [job for job in self.jobs() if job.run_name == run_name and job.kind == kind]
        return matches[-1] if matches else None

    # ---------------------------------------------------------------- submit

    def submit(
        self,
        kind: JobKind,
        run_name: str,
        settings: Settings,
        arguments: list[str] | None = None,
        output: str | None = None,
    ) -> Job:
        """Queues a job; it starts when no other job is running.

        Args:
            kind: ``train``, ``evaluate`` or ``compare``.
            run_name: Run the job is about (for train: the run it creates or resumes).
            settings: Complete validated settings; written to the job's YAML file.
            arguments: Extra CLI arguments (e.g. ``["--run", "my-run"]``).
            output: A path the job writes, shown when it finishes.

        Returns:
            The queued job.

        Raises:
            ValueError: If a training job for this run is already queued or running.
        """
        with self._lock:
            if kind == "train":
                for job in self.jobs():
                    if job.kind == "train" and job.run_name == run_name and job.state in ACTIVE_STATES:
                        raise ValueError(f"run {run_name!r} is already {job.state}")
            job_id = f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{kind}-{uuid.uuid4().hex[:6]}"
            job = Job(job_id=job_id, kind=kind, run_name=run_name, arguments=list(arguments or []), output=output)
            self.config_path(job_id).write_text(
                yaml.safe_dump(plain_config(settings), sort_keys=False), encoding="utf-8"
            )
            self._save(job)
        logger.info("Queued {} job {} for {}", kind, job_id, run_name)
        self._wake.set()
        return job

    def stop(self, run_name: str) -> str:
        """Stops a run: cancels it when queued, or asks the training to stop at the next step.

        Args:
            run_name: The run.

        Returns:
            What happened, in plain words.
        """
        with self._lock:
            for job in self.jobs():
                if job.run_name == run_name and job.state == "queued":
                    job.state, job.finished_at, job.message = "cancelled", now_iso(), "cancelled before it started"
                    self._save(job)
                    logger.info("Cancelled queued job {} ({})", job.job_id, run_name)
                    return f"{run_name}: removed from the queue"
            current = self._current
            if current is None or current.run_name != run_name:
                raise ValueError(f"run {run_name!r} is not running or queued")
            if current.kind == "train":
                run_dir = self.runs_dir / run_name
                run_dir.mkdir(parents=True, exist_ok=True)
                (run_dir / STOP_REQUEST_FILE).write_text(now_iso(), encoding="utf-8")
            else:
                self._terminate()
            current.stop_requested_at = time.time()
            self._save(current)
        logger.info("Stop requested for {}", run_name)
        return f"{run_name}: stopping at the next training step (a checkpoint is kept)"

    # --------------------------------------------------------------- lifecycle

    def start(self) -> JobSupervisor:
        """Starts the background thread (idempotent).

        Returns:
            The supervisor.
        """
        if self._thread is None or not self._thread.is_alive():
            self._closing.clear()
            self._thread = threading.Thread(target=self._loop, name="studio-jobs", daemon=True)
            self._thread.start()
        return self

    def close(self, stop_running: bool = True, wait_s: float = 30.0) -> None:
        """Stops the background thread; by default also stops the running job.

        Args:
            stop_running: Ask the running job to stop (training keeps a checkpoint).
            wait_s: Seconds to wait for it before terminating it.
        """
        current = self.current()
        if stop_running and current is not None:
            with contextlib.suppress(ValueError):
                self.stop(current.run_name)
            deadline = time.time() + wait_s
            while time.time() < deadline and self._alive():
                time.sleep(0.2)
            if self._alive():
                logger.warning("Job {} did not stop in {} s; terminating it", current.job_id, wait_s)
                self._terminate()
                time.sleep(1.0)
            with self._lock:
                if self._current is not None and not self._alive():
                    self._reap()
        self._closing.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._closing.is_set():
            try:
                self._tick()
            except Exception:  # the supervisor must survive anything a job does
                logger.exception("Job supervisor error")
            self._wake.wait(self.poll_interval_s)
            self._wake.clear()

    def _tick(self) -> None:
        with self._lock:
            if self._current is not None:
                if self._alive():
                    self._escalate_stop()
                    return
                self._reap()
            queued = self.queued()
            if queued and not self._closing.is_set():
                self._launch(queued[0])

    def _alive(self) -> bool:
        process = self._process
        if process is None:
            return False
        if isinstance(process, subprocess.Popen):
            return process.poll() is None
        try:
            return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def _terminate(self) -> None:
        process = self._process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError, psutil.Error):
            process.terminate()

    def _escalate_stop(self) -> None:
        current = self._current
        if current is None or current.stop_requested_at is None:
            return
        if time.time() - current.stop_requested_at > self.stop_grace_s:
            logger.warning("{} ignored the stop request for {} s; terminating it", current.run_name, self.stop_grace_s)
            self._terminate()
            current.stop_requested_at = time.time() + 3600  # terminate once
            self._save(current)

    def _launch(self, job: Job) -> None:
        command = [
            sys.executable,
            "-m",
            "core.cli",
            job.kind,
            "--config",
            str(self.config_path(job.job_id)),
            *job.arguments,
        ]
        if job.kind == "train":
            stop_file = self.runs_dir / job.run_name / STOP_REQUEST_FILE
            stop_file.unlink(missing_ok=True)
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
        log_handle = self.log_path(job.job_id).open("ab")
        try:
            process = start_detached(command, self.working_dir, log_handle, environment)
        except OSError as error:
            job.state, job.finished_at, job.message = "failed", now_iso(), f"could not start: {error}"
            self._save(job)
            logger.error("Could not start job {}: {}", job.job_id, error)
            return
        finally:
            log_handle.close()
        try:
            psutil.Process(process.pid).nice(self.niceness)
        except (psutil.Error, OSError):
            logger.debug("Could not lower the priority of pid {}", process.pid)
        job.state, job.started_at, job.pid = "running", now_iso(), process.pid
        self._save(job)
        self._process, self._current = process, job
        logger.info("Started {} job {} for {} (pid {})", job.kind, job.job_id, job.run_name, process.pid)

    def _reap(self) -> None:
        job, process = self._current, self._process
        if job is None:
            return
        returncode = process.poll() if isinstance(process, subprocess.Popen) else None
        job.returncode = returncode
        job.finished_at = now_iso()
        job.pid = None
        if job.stop_requested_at is not None:
            job.state, job.message = "cancelled", "stopped on request"
        elif returncode == 0 or (returncode is None and self._run_status(job) in {"completed", "stopped"}):
            job.state, job.message = "finished", "finished"
        else:
            job.state = "failed"
            job.message = self._failure_message(job, returncode)
            self._mark_run_failed(job)
        self._save(job)
        log = logger.info if job.state != "failed" else logger.error
        log("Job {} ({} {}) ended: {}", job.job_id, job.kind, job.run_name, job.message)
        self._current, self._process = None, None

    def _run_status(self, job: Job) -> str | None:
        return run_status(self.runs_dir / job.run_name)

    def _failure_message(self, job: Job, returncode: int | None) -> str:
        return failure_message(self.log_path(job.job_id), returncode)

    def _mark_run_failed(self, job: Job) -> None:
        if job.kind == "train":
            settle_run(self.runs_dir / job.run_name, "failed", job.message, unless={"failed", "completed", "stopped"})

    def _adopt_running_jobs(self) -> None:
        for job in self.jobs():
            if job.state != "running":
                continue
            process = live_child(job.pid, job.job_id)
            if process is not None and self._current is None:
                self._process, self._current = process, job
                logger.info("Adopted running job {} (pid {})", job.job_id, job.pid)
                continue
            job.state, job.finished_at, job.pid = "interrupted", now_iso(), None
            job.message = "the studio stopped while this job ran; Resume continues from the last checkpoint"
            self._save(job)
            if job.kind == "train":
                settle_run(
                    self.runs_dir / job.run_name, "stopped", job.message, unless={"failed", "completed", "stopped"}
                )
