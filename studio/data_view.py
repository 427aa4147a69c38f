"""The Data tab's logic: format detection, paged preview, validation report, lengths, the model's view.

Everything here calls the data use case (:mod:`core.application.prepare_data`) and the tokenizer
the training uses, so what the studio shows is exactly what training will see.
"""

from __future__ import annotations

import hashlib
import html
import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
from loguru import logger

from core.application.inspect_data import data_report_markdown, token_view
from core.domain.config import Settings, settings_from_dict
from core.domain.errors import PROBLEMS_SHOWN
from studio.data_sources import data_section
from studio.job_records import plain_config

PAGE_SIZE = 10
PREVIEW_LIMIT = 200


def settings_for_dataset(
    base: Settings,
    dataset: str,
    data_format: str = "auto",
    lenient: bool = False,
    field_mapping: dict[str, str] | None = None,
) -> Settings:
    """The studio's settings with another dataset, format, leniency and column mapping.

    Args:
        base: The studio's settings.
        dataset: ``demo``, a file path or a Hub dataset id, or several separated by commas (a mix).
        data_format: ``auto`` or a format name.
        lenient: Skip bad records instead of stopping.
        field_mapping: ``data.field_mapping`` (the custom format's columns), if any.

    Returns:
        Validated settings.
    """
    nested = plain_config(base)
    nested["data"] = data_section(nested["data"], dataset, data_format or "auto", field_mapping or {})
    nested["data"]["lenient"] = lenient
    return settings_from_dict(nested)


MAPPED_FIELDS = ("instruction", "input", "output", "system")
"""What the Data tab's column mapping can name (the custom format's ``data.field_mapping`` keys)."""

_LIKELY_COLUMNS = {
    "instruction": ("instruction", "question", "prompt", "query", "input_text", "q", "user"),
    "input": ("input", "context"),
    "output": ("output", "answer", "response", "completion", "target", "a", "assistant"),
    "system": ("system", "system_prompt"),
}


def guess_mapping(columns: list[str]) -> dict[str, str]:
    """A first column mapping from common column names (``question``/``answer``, ``prompt``/``completion``, ...).

    Args:
        columns: The input's columns.

    Returns:
        Mapping key -> column for the keys a likely column was found for.
    """
    lowered = {column.strip().lower(): column for column in columns}
    guessed = {}
    for key, candidates in _LIKELY_COLUMNS.items():
        found = next((lowered[name] for name in candidates if name in lowered), None)
        if found is not None and found not in guessed.values():
            guessed[key] = found
    return guessed


def input_columns(dataset: str) -> list[str]:
    """The columns of a dataset's first records."""
    from core.application.inspect_data import input_columns as columns_of

    return columns_of(dataset)


def store_upload(upload_path: str, data_dir: Path) -> Path:
    """Copies an uploaded file to ``<data_dir>/uploads/<content hash>/<its name>`` so runs can refer to it.

    Stored by content: two users uploading different ``data.jsonl`` files never overwrite each
    other, and the same file uploaded twice is stored once. The name is kept (formats are
    detected from it).

    Args:
        upload_path: Temporary path Gradio gave the upload.
        data_dir: ``paths.data_dir``.

    Returns:
        The stored file.
    """
    source = Path(upload_path)
    digest = hashlib.sha256()
    with source.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    destination = Path(data_dir) / "uploads" / digest.hexdigest()[:16] / source.name
    if not destination.exists():
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)
    logger.info("Stored upload {} as {}", source.name, destination)
    return destination


def detect(dataset: str) -> tuple[str, str]:
    """The detected format of a dataset and why.

    Args:
        dataset: ``demo``, a path or a Hub dataset id.

    Returns:
        ``(format_name, reason)``.
    """
    from core.application.inspect_data import detect_format

    return detect_format(dataset)


def preview_frame(settings: Settings, dataset: str, data_format: str | None) -> pd.DataFrame:
    """Up to :data:`PREVIEW_LIMIT` normalized records as a table.

    Args:
        settings: Settings (data section).
        dataset: Dataset to read.
        data_format: Format or None/``auto`` to detect.

    Returns:
        One row per record; nested values are shown as text.
    """
    from core.application.inspect_data import preview_records

    records = preview_records(
        settings, dataset, data_format=None if data_format in (None, "", "auto") else data_format, limit=PREVIEW_LIMIT
    )
    rows = [{key: _cell(value) for key, value in record.items() if key != "messages"} for record in records]
    frame = pd.DataFrame(rows)
    if "source" in frame.columns:  # the file's name and line, not a path on the server
        frame["source"] = frame["source"].map(_short_source)
    filled = [column for column in frame.columns if frame[column].replace("", None).notna().any()]
    first = [column for column in ("prompt", "response", "system", "turns", "problems") if column in filled]
    return frame[first + [column for column in filled if column not in first]]


def _short_source(value: Any) -> Any:
    """``/path/to/file.jsonl:12`` -> ``file.jsonl:12``."""
    if not isinstance(value, str):
        return value
    path, separator, line = value.rpartition(":")
    return f"{Path(path).name}:{line}" if separator and line.isdigit() else Path(value).name


def several_datasets(settings: Settings, names: list[str], data_format: str | None) -> tuple[str, pd.DataFrame]:
    """What the Data tab shows for a mix: each source's detected format, and a preview of all of them.

    Args:
        settings: The studio's settings.
        names: The datasets, in mixing order.
        data_format: The chosen format (``auto``: each source's own).

    Returns:
        Markdown naming every source and its format, and the preview with a ``dataset`` column first.
    """
    strategy = settings.data.mix_strategy
    lines = [f"**{len(names)} datasets**, mixed by `{strategy}` with equal weights (`data.mix_strategy`):"]
    frames = []
    for name in names:
        try:
            found, reason = detect(name) if data_format in (None, "", "auto") else (data_format, "chosen")
        except Exception as error:  # shown per source; preparing reports it properly
            lines.append(f"- `{name}`: format not detected: {str(error).removeprefix('data.format: ')}")
            continue
        lines.append(f"- `{name}`: `{found}`: {reason}")
        frame = preview_frame(settings_for_dataset(settings, name, found), name, found)
        frames.append(frame.assign(dataset=name)[["dataset", *frame.columns]])
    return "\n".join(lines), pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


COLUMN_WEIGHTS = {"prompt": 4, "response": 4, "system": 2, "problems": 2, "dataset": 2, "source": 2, "format": 1.5}
"""Relative preview column widths: the text columns share the table instead of the first taking it all."""


def column_widths(columns: list[str]) -> list[str]:
    """Preview column widths in percent, by :data:`COLUMN_WEIGHTS` (other columns weigh 1).

    Args:
        columns: The preview's columns.

    Returns:
        One ``"NN%"`` per column.
    """
    weights = [COLUMN_WEIGHTS.get(column, 1) for column in columns]
    return [f"{100 * weight / sum(weights):.0f}%" for weight in weights]


def _cell(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list) and value and all(isinstance(item, dict) and "role" in item for item in value):
        return "\n".join(f"[{item['role']}] {item.get('content', '')}" for item in value)
    return str(value)


def page_of(frame: pd.DataFrame, page: int, page_size: int = PAGE_SIZE) -> tuple[pd.DataFrame, str]:
    """One page of a table and a ``page x of y`` label.

    Args:
        frame: The whole table.
        page: One-based page number (clamped).
        page_size: Rows per page.

    Returns:
        The rows of the page and the label.
    """
    pages = max(1, -(-len(frame) // page_size))
    page = min(max(1, int(page or 1)), pages)
    start = (page - 1) * page_size
    return frame.iloc[start : start + page_size], f"page {page} of {pages} · {len(frame)} records previewed"


def prepare(settings: Settings) -> Any:
    """Validates and tokenizes the dataset of the settings (cached by fingerprint).

    Args:
        settings: Settings naming the dataset, format and leniency.

    Returns:
        The ``PreparedData``.
    """
    from core.application.prepare_data import prepare_data

    return prepare_data(settings)


def report_markdown(report: dict[str, Any], report_path: Path | None = None) -> str:
    """The validation report as Markdown: counts, skipped records with file:line and reasons, token figures.

    Args:
        report: ``PreparedData.report``.
        report_path: The prepared data's ``report.json`` (where the skipped records not shown are).

    Returns:
        Markdown text (the report ``prepare-data`` writes as ``report.md``, with the first
        :data:`~core.domain.errors.PROBLEMS_SHOWN` skipped records).
    """
    if not report:
        return "No report."
    try:
        return (
            data_report_markdown(report, PROBLEMS_SHOWN, report_path)
            .replace("# Data report", "### Validation report", 1)
            .replace("\n## ", "\n#### ")
        )
    except (KeyError, TypeError) as error:
        logger.warning("Could not render the data report: {}", error)
        return "```json\n" + json.dumps(report, indent=2)[:20000] + "\n```"


def token_lengths(prepared: Any) -> dict[str, list[int]]:
    """Token counts per split of a prepared dataset.

    Args:
        prepared: ``PreparedData``.

    Returns:
        Split -> lengths.
    """
    lengths = {}
    for split in ("train", "validation", "test"):
        dataset = prepared.tokenized(split)
        lengths[split] = list(dataset["length"]) if len(dataset) else []
    return lengths


def model_view_html(settings: Settings, prepared: Any, index: int, split: str = "train") -> tuple[str, str]:
    """One example rendered with the chat template, trained tokens highlighted.

    Args:
        settings: Settings (model, data).
        prepared: ``PreparedData``.
        index: Example index (wraps around).
        split: Split to read.

    Returns:
        ``(html, caption)``.
    """
    conversations = prepared.conversations(split)
    if not conversations:
        return "<p>No examples in this split.</p>", ""
    index = int(index or 0) % len(conversations)
    conversation = conversations[index]
    view = token_view(settings, conversation, prepared.chat_template)
    if view is None:
        return "<p>This example has nothing to train on (dropped).</p>", ""
    pieces = [
        f'<span class="{"tok-trained" if trained else "tok-context"}">{html.escape(text)}</span>'
        for text, trained in view.pieces
    ]
    caption = (
        f"Example {index + 1} of {len(conversations)} ({split}, {conversation.source}): "
        f"{len(view.pieces)} tokens, {view.trained_tokens} trained" + (" · truncated" if view.truncated else "")
    )
    legend = (
        '<div class="tok-legend"><span class="tok-trained">trained (assistant + end of turn)</span> '
        '<span class="tok-context">context only (no loss)</span></div>'
    )
    return f'{legend}<div class="model-view">{"".join(pieces)}</div>', caption
