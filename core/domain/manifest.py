"""Run manifest: the one file that describes a run directory (``runs/<name>/manifest.json``)."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

RunStatus = Literal["created", "preparing", "training", "stopped", "failed", "completed"]

MANIFEST_FILE = "manifest.json"
METRICS_FILE = "metrics.jsonl"
EVALUATION_FILE = "evaluation.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
FINAL_DIR = "final"
CHECKPOINTS_DIR = "checkpoints"
STOP_REQUEST_FILE = "STOP"
LOG_FILE = "train.log"
PROGRESS_FILE = "progress.json"
"""Live phase of a training run (training / evaluating k of N) and its time estimate, rewritten as it goes."""


class RunManifest(BaseModel):
    """Everything needed to understand, reproduce and serve a run.

    Attributes:
        run_name: Directory name under ``runs/``.
        status: Lifecycle state; the studio shows it.
        created_at: ISO timestamp of creation.
        updated_at: ISO timestamp of the last write.
        config: The resolved configuration (secrets masked).
        versions: Library versions (python, torch, transformers, peft, ...).
        data_fingerprint: Hash of the prepared dataset.
        chat_template: The Jinja chat template used for training (and for serving).
        technique: The technique traits as a mapping.
        base_model_path: Local directory of the base model weights.
        trainable_parameters: Parameters updated by training.
        total_parameters: All parameters of the model.
        metrics: Summary metrics (initial/final/best eval loss, tokens/s, wall time, peak memory).
        error: Message of the failure when ``status == "failed"``.
        final_path: Directory of the final adapter or model, relative to the run directory.
        hardware: Device description (CPU/GPU, memory).
        process: The training process while the run is preparing or training (``pid``, ``host``,
            ``started`` as the process creation time), so a reader can tell a live run from one
            whose process was killed.
    """

    run_name: str
    status: RunStatus = "created"
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())
    updated_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())
    config: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    data_fingerprint: str | None = None
    chat_template: str | None = None
    technique: dict[str, Any] = Field(default_factory=dict)
    base_model_path: str | None = None
    trainable_parameters: int | None = None
    total_parameters: int | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    final_path: str | None = None
    hardware: dict[str, Any] = Field(default_factory=dict)
    process: dict[str, Any] = Field(default_factory=dict)

    def save(self, run_dir: Path) -> Path:
        """Writes the manifest atomically (temporary file, fsync, rename).

        Args:
            run_dir: The run directory.

        Returns:
            Path of the written manifest.
        """
        self.updated_at = datetime.now(UTC).isoformat()
        return write_json_atomic(Path(run_dir) / MANIFEST_FILE, self.model_dump(mode="json"))

    @classmethod
    def load(cls, run_dir: Path) -> RunManifest:
        """Reads the manifest of a run directory.

        Args:
            run_dir: The run directory.

        Returns:
            The manifest.
        """
        return cls.model_validate_json((Path(run_dir) / MANIFEST_FILE).read_text(encoding="utf-8"))


def write_json_atomic(path: Path, data: Any) -> Path:
    """Writes JSON so that readers never see a half-written file.

    Args:
        path: Destination file.
        data: JSON-serialisable data.

    Returns:
        The destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=False, default=str)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(handle.name, path)
    return path


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Reads ``metrics.jsonl``, skipping a trailing partial line written concurrently.

    Args:
        run_dir: The run directory.

    Returns:
        One mapping per logged event, in order.
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return rows
