"""Writing a prepared dataset's splits from the record pass's table, a chunk of rows at a time.

``conversations/<split>.jsonl`` and ``tokenized/<split>`` (the layout of
:mod:`core.infrastructure.data.prepared`) are written from the rows the mix and the split kept;
a record's samples (several for a conversation cut at turn boundaries) become consecutive rows.
Memory holds one chunk of rows, whatever the size of the data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset

from core.infrastructure.data.prepared import SPLITS
from core.infrastructure.data.record_store import quiet_datasets

CHUNK_ROWS = 2000
"""Records written per chunk."""

_SAMPLE_SCHEMA = pa.schema(
    [("input_ids", pa.list_(pa.int32())), ("labels", pa.list_(pa.int64())), ("length", pa.int64())]
)
"""The columns of a tokenized split, typed as ``datasets.Dataset.from_dict`` types them (``input_ids``: int32)."""


def write_splits(
    directory: Path, table: Dataset, split_rows: dict[str, list[int]], work_dir: Path
) -> tuple[dict[str, int], dict[str, np.ndarray]]:
    """Writes every split's conversations and samples into a directory from :func:`start_prepared`.

    Args:
        directory: The prepared directory.
        table: The pass's table (columns ``conversation``, ``input_ids``, ``labels``,
            ``trained_tokens``, ``truncated``).
        split_rows: The table rows kept per split, in order.
        work_dir: A directory for the intermediate Arrow files.

    Returns:
        Samples per split, and per sample (train, validation, test in order) its ``length``,
        ``trained_tokens`` and ``truncated``.
    """
    counts: dict[str, int] = {}
    per_sample: dict[str, list[np.ndarray]] = {"length": [], "trained_tokens": [], "truncated": []}
    with quiet_datasets():
        for split in SPLITS:
            rows = split_rows.get(split, [])
            _write_conversations(directory / "conversations" / f"{split}.jsonl", table, rows)
            stats = _write_samples(directory / "tokenized" / split, table, rows, work_dir / f"samples-{split}.arrow")
            counts[split] = len(stats["length"])
            for name, values in stats.items():
                per_sample[name].append(values)
    return counts, {name: np.concatenate(parts) for name, parts in per_sample.items()}


def _chunks(rows: list[int]) -> list[pa.Array]:
    return [pa.array(rows[start : start + CHUNK_ROWS], pa.int64()) for start in range(0, len(rows), CHUNK_ROWS)]


def _write_conversations(path: Path, table: Dataset, rows: list[int]) -> None:
    column = table.data.column("conversation")
    with path.open("w", encoding="utf-8") as handle:
        for chunk in _chunks(rows):
            handle.writelines(text + "\n" for text in column.take(chunk).to_pylist())


def _write_samples(target: Path, table: Dataset, rows: list[int], work_file: Path) -> dict[str, np.ndarray]:
    """Writes the samples of the rows as a ``datasets`` split (none when there are none); returns their figures."""
    columns = {name: table.data.column(name) for name in ("input_ids", "labels", "trained_tokens", "truncated")}
    stats: dict[str, list[Any]] = {"length": [], "trained_tokens": [], "truncated": []}
    with pa.OSFile(str(work_file), "wb") as sink, pa.ipc.new_stream(sink, _SAMPLE_SCHEMA) as writer:
        for chunk in _chunks(rows):
            input_ids = pc.list_flatten(columns["input_ids"].take(chunk)).cast(pa.list_(pa.int32()))
            lengths = pc.list_value_length(input_ids).cast(pa.int64())
            labels = pc.list_flatten(columns["labels"].take(chunk))
            writer.write_table(pa.Table.from_arrays([input_ids, labels, lengths], schema=_SAMPLE_SCHEMA))
            stats["length"].append(lengths.to_numpy())
            stats["trained_tokens"].append(pc.list_flatten(columns["trained_tokens"].take(chunk)).to_numpy())
            stats["truncated"].append(pc.list_flatten(columns["truncated"].take(chunk)).to_numpy(zero_copy_only=False))
    figures = {
        name: np.concatenate(parts) if parts else np.zeros(0, dtype=bool if name == "truncated" else np.int64)
        for name, parts in stats.items()
    }
    if len(figures["length"]):  # datasets cannot read back a zero-row split; tokenized() returns an empty one instead
        Dataset.from_file(str(work_file)).save_to_disk(str(target))
    return figures
