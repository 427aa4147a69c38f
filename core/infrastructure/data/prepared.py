"""The prepared-dataset store: what ``prepare-data`` writes and training and evaluation read.

Layout of a prepared directory::

    prepared.json                  fingerprint, tokenizer, settings used, counts per split
    chat_template.jinja            the template the tokens were rendered with
    conversations/<split>.jsonl    normalized conversations (one Conversation per line)
    tokenized/<split>/             datasets.Dataset.save_to_disk: input_ids, labels, length
    report.json, report.md         the data report

Splits are ``train``, ``validation`` and ``test``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.domain.manifest import write_json_atomic
from core.domain.records import Conversation

if TYPE_CHECKING:
    from datasets import Dataset

SPLITS = ("train", "validation", "test")
PREPARED_FILE = "prepared.json"
REPORT_FILE = "report.json"


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """Hides ``datasets``' progress bars for the duration (the CLI logs its own summary)."""
    from datasets.utils.logging import disable_progress_bar, enable_progress_bar, is_progress_bar_enabled

    was_enabled = is_progress_bar_enabled()
    disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            enable_progress_bar()


@dataclass
class PreparedData:
    """A prepared dataset on disk.

    Attributes:
        directory: The prepared directory.
        fingerprint: Hash of inputs, tokenizer and preprocessing settings.
        chat_template: Jinja template the tokens were rendered with.
        info: Contents of ``prepared.json``.
    """

    directory: Path
    fingerprint: str
    chat_template: str
    info: dict[str, Any] = field(default_factory=dict)

    def tokenized(self, split: str) -> Dataset:
        """Returns the tokenized split (columns ``input_ids``, ``labels``, ``length``).

        Args:
            split: ``train``, ``validation`` or ``test``.

        Returns:
            The dataset (empty when the split has no records).
        """
        from datasets import Dataset, load_from_disk  # not at import: prepare-data writes splits without it

        path = self.directory / "tokenized" / split
        if not path.exists():
            return Dataset.from_dict({"input_ids": [], "labels": [], "length": []})
        return load_from_disk(str(path))

    def conversations(self, split: str) -> list[Conversation]:
        """Returns the normalized conversations of a split.

        Args:
            split: ``train``, ``validation`` or ``test``.

        Returns:
            The conversations, in order.
        """
        path = self.directory / "conversations" / f"{split}.jsonl"
        if not path.exists():
            return []
        with path.open(encoding="utf-8") as handle:
            return [Conversation.model_validate_json(line) for line in handle if line.strip()]

    @property
    def report_path(self) -> Path:
        """Where the data report (``report.json``) is."""
        return self.directory / REPORT_FILE

    @property
    def report(self) -> dict[str, Any]:
        """The data report (``report.json``), or an empty mapping."""
        path = self.report_path
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def save_prepared(
    directory: Path,
    fingerprint: str,
    chat_template: str,
    conversations: dict[str, list[Conversation]],
    tokenized: dict[str, list[dict[str, Any]]],
    info: dict[str, Any] | None = None,
    report: dict[str, Any] | None = None,
    report_markdown: str | None = None,
) -> PreparedData:
    """Writes a prepared dataset from lists in memory; ``prepared.json`` is written last, marking it complete.

    Args:
        directory: Output directory (replaced if it exists).
        fingerprint: Dataset fingerprint.
        chat_template: Template used for rendering.
        conversations: Normalized conversations per split.
        tokenized: Rows with ``input_ids`` and ``labels`` per split.
        info: Extra metadata for ``prepared.json``.
        report: The data report, written as ``report.json``.
        report_markdown: The report as Markdown, written as ``report.md``.

    Returns:
        The prepared dataset.
    """
    from datasets import Dataset

    directory = start_prepared(directory, chat_template)
    counts = {}
    with quiet_datasets():
        for split in SPLITS:
            _write_jsonl(directory / "conversations" / f"{split}.jsonl", conversations.get(split, []))
            rows = tokenized.get(split, [])
            columns = {
                "input_ids": [row["input_ids"] for row in rows],
                "labels": [row["labels"] for row in rows],
                "length": [len(row["input_ids"]) for row in rows],
            }
            if rows:  # datasets cannot read back a zero-row split; tokenized() returns an empty one instead
                Dataset.from_dict(columns).save_to_disk(str(directory / "tokenized" / split))
            counts[split] = len(rows)
    return finish_prepared(directory, fingerprint, chat_template, counts, info, report, report_markdown)


def start_prepared(directory: Path, chat_template: str) -> Path:
    """Replaces the directory with an empty prepared layout holding the chat template.

    Args:
        directory: Output directory (removed first if it exists).
        chat_template: Template used for rendering.

    Returns:
        The directory.
    """
    directory = Path(directory)
    if directory.exists():
        shutil.rmtree(directory)
    (directory / "conversations").mkdir(parents=True)
    (directory / "chat_template.jinja").write_text(chat_template, encoding="utf-8")
    return directory


def finish_prepared(
    directory: Path,
    fingerprint: str,
    chat_template: str,
    counts: dict[str, int],
    info: dict[str, Any] | None = None,
    report: dict[str, Any] | None = None,
    report_markdown: str | None = None,
) -> PreparedData:
    """Writes the report and, last, ``prepared.json`` (the mark of a complete prepared dataset).

    Args:
        directory: The prepared directory with its splits written.
        fingerprint: Dataset fingerprint.
        chat_template: Template used for rendering.
        counts: Training samples per split.
        info: Extra metadata for ``prepared.json``.
        report: The data report, written as ``report.json``.
        report_markdown: The report as Markdown, written as ``report.md``.

    Returns:
        The prepared dataset.
    """
    if report is not None:
        write_json_atomic(directory / REPORT_FILE, report)
    if report_markdown is not None:
        (directory / "report.md").write_text(report_markdown, encoding="utf-8")
    meta = {**(info or {}), "fingerprint": fingerprint, "counts": counts}
    write_json_atomic(directory / PREPARED_FILE, meta)
    return PreparedData(directory, fingerprint, chat_template, meta)


def load_prepared(directory: Path) -> PreparedData:
    """Opens a prepared dataset.

    Args:
        directory: A directory written by :func:`save_prepared`.

    Returns:
        The prepared dataset.

    Raises:
        FileNotFoundError: If the directory is not a complete prepared dataset.
    """
    directory = Path(directory)
    meta_path = directory / PREPARED_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{directory}: not a prepared dataset (no {PREPARED_FILE}); run prepare-data")
    info = json.loads(meta_path.read_text(encoding="utf-8"))
    template = (directory / "chat_template.jinja").read_text(encoding="utf-8")
    return PreparedData(directory, info["fingerprint"], template, info)


def _write_jsonl(path: Path, conversations: Iterable[Conversation]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for conversation in conversations:
            handle.write(conversation.model_dump_json() + "\n")
