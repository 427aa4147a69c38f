"""Batch inference: JSONL in, JSONL out, batched by length, resumable after an interruption.

Input lines hold ``{"prompt": "..."}`` or ``{"messages": [...]}`` and an optional ``"id"``
(default: ``line-<n>``) and ``"system"``. Each output line repeats the id and the input, and adds
the answer and the decoding settings used::

    {"id": "q1", "prompt": "...", "output": "...", "finish_reason": "stop", "prompt_tokens": 21,
     "completion_tokens": 9, "settings": {"max_new_tokens": 128, "temperature": 0.0, ...}}

Prompts are generated in batches of similar length (longest first), so answers arrive out of
order; they are appended and flushed (fsync) after every batch. A rerun reads the ids already in
the output file, drops a partially written last line, and generates only the missing records, so
an interrupted job never duplicates or loses an answer. When every record is answered the file is
rewritten in input order (atomically; rows of ids the input no longer holds are kept at the end).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger
from tqdm import tqdm

from core.domain.errors import DataValidationError
from core.infrastructure.inference.predictor import Predictor, SamplingOptions


@dataclass(frozen=True)
class BatchRecord:
    """One prompt of a batch job.

    Attributes:
        record_id: Identifier copied to the output.
        messages: The conversation to answer.
        given: The input line's own ``prompt`` / ``system`` / ``messages`` fields, copied to the output.
    """

    record_id: str
    messages: list[dict[str, str]]
    given: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchSummary:
    """What a batch job did.

    Attributes:
        output_file: The JSONL output.
        total: Records in the input.
        already_done: Records found in the output from an earlier, interrupted run.
        generated: Records answered by this run.
    """

    output_file: Path
    total: int
    already_done: int
    generated: int


def read_batch_input(path: Path) -> list[BatchRecord]:
    """Reads and validates a JSONL prompt file.

    Args:
        path: The input file.

    Returns:
        The records in file order.

    Raises:
        DataValidationError: Listing every bad line (``file:line: problem``).
    """
    records: list[BatchRecord] = []
    problems: list[str] = []
    seen: set[str] = set()
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            problems.append(f"{where}: invalid JSON ({error.msg})")
            continue
        if not isinstance(data, dict):
            problems.append(f"{where}: expected an object with 'prompt' or 'messages'")
            continue
        messages = _messages_of(data)
        if isinstance(messages, str):
            problems.append(f"{where}: {messages}")
            continue
        record_id = str(data.get("id", f"line-{number}"))
        if record_id in seen:
            problems.append(f"{where}: duplicate id {record_id!r}")
            continue
        seen.add(record_id)
        given = {key: data[key] for key in ("prompt", "system", "messages") if key in data}
        records.append(BatchRecord(record_id, messages, given))
    if problems:
        raise DataValidationError(problems)
    return records


def _messages_of(data: dict[str, Any]) -> list[dict[str, str]] | str:
    if isinstance(data.get("messages"), list):
        messages = data["messages"]
        if not messages or not all(
            isinstance(item, dict) and item.get("role") in {"system", "user", "assistant"} and "content" in item
            for item in messages
        ):
            return "'messages' must be a non-empty list of {role: system|user|assistant, content} objects"
        if messages[-1]["role"] != "user":
            return "'messages' must end with a user turn"
        return [{"role": item["role"], "content": str(item["content"])} for item in messages]
    if isinstance(data.get("prompt"), str) and data["prompt"].strip():
        system = data.get("system")
        head = [{"role": "system", "content": str(system)}] if system else []
        return [*head, {"role": "user", "content": data["prompt"]}]
    return "needs a non-empty 'prompt' string or a 'messages' list"


def completed_ids(output_file: Path) -> set[str]:
    """Ids already answered in an output file; a partially written last line is cut off.

    Args:
        output_file: The JSONL output (may not exist).

    Returns:
        The ids found.
    """
    path = Path(output_file)
    if not path.exists():
        return set()
    content = path.read_bytes()
    complete = content[: content.rfind(b"\n") + 1] if b"\n" in content else b""
    if len(complete) != len(content):
        logger.warning("{}: dropping a partially written last line from an interrupted run", path)
        with path.open("r+b") as handle:
            handle.truncate(len(complete))
    return {str(row["id"]) for row in _read_rows(path)}


def _read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _rewrite_in_input_order(output_file: Path, records: list[BatchRecord]) -> None:
    """Rewrites the output with rows in input order; rows of ids not in the input follow, kept."""
    rows = _read_rows(output_file)
    position = {record.record_id: index for index, record in enumerate(records)}
    ordered = sorted(rows, key=lambda row: position.get(str(row["id"]), len(position)))
    if ordered == rows:
        return
    partial = output_file.with_name(output_file.name + ".ordering")
    with partial.open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in ordered)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, output_file)


def _append_answers(handle: Any, batch: list[Any], completions: list[Any], settings: dict[str, Any]) -> None:
    """Appends one answer row per record (its id, given fields, output, finish reason, tokens) and fsyncs."""
    for record, completion in zip(batch, completions, strict=True):
        row = {
            "id": record.record_id,
            **record.given,
            "output": completion.text,
            "finish_reason": completion.finish_reason,
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "settings": settings,
        }
        handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    handle.flush()
    os.fsync(handle.fileno())


def run_batch_inference(
    predictor: Predictor,
    input_file: Path,
    output_file: Path,
    options: SamplingOptions,
    batch_size: int = 8,
    stop_event: threading.Event | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> BatchSummary:
    """Answers every prompt of a JSONL file that the output file does not already hold.

    Args:
        predictor: The model.
        input_file: JSONL prompts.
        output_file: JSONL answers (appended to; created when missing).
        options: Decoding options.
        batch_size: Prompts per batch; batches hold prompts of similar length.
        stop_event: When set, the job stops after the current batch (resumable later).
        on_batch: Called with the number of records written so far by this run, after each batch.

    Returns:
        The summary.
    """
    settings = {**asdict(options), "stop": list(options.stop)}
    records = read_batch_input(Path(input_file))
    output_file = Path(output_file)
    output_file.parent.mkdir(parents=True, exist_ok=True)
    done = completed_ids(output_file)
    pending = [record for record in records if record.record_id not in done]
    if done:
        logger.info(
            "Resuming: {} of {} records already answered in {}", len(records) - len(pending), len(records), output_file
        )
    prompts = {record.record_id: predictor.render(record.messages) for record in pending}
    pending.sort(key=lambda record: -len(prompts[record.record_id]))
    written = 0
    with (
        output_file.open("a", encoding="utf-8") as handle,
        tqdm(
            total=len(records), initial=len(records) - len(pending), desc="generate", unit="prompt", disable=None
        ) as progress,
    ):
        for start in range(0, len(pending), batch_size):
            if stop_event is not None and stop_event.is_set():
                logger.warning("Stopped after {} records; rerun to continue", written)
                break
            batch = pending[start : start + batch_size]
            completions = predictor.complete_ids([prompts[record.record_id] for record in batch], options)
            _append_answers(handle, batch, completions, settings)
            written += len(batch)
            progress.update(len(batch))
            if on_batch is not None:
                on_batch(written)
    if len(completed_ids(output_file) & {record.record_id for record in records}) == len(records):
        _rewrite_in_input_order(output_file, records)
    return BatchSummary(output_file, len(records), len(records) - len(pending), written)
