"""One source's way to the mix: read, choose the format, convert and validate, deduplicate, cap.

Every source of ``data.datasets`` (or the one of ``data.dataset``) goes through the same steps as a
single dataset always did. Deduplication runs over the sources in order, so a record repeated in
a later source is counted as that source's ``duplicate``.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from core.domain.data_settings import DatasetSource
from core.domain.errors import ConfigError
from core.infrastructure.data.convert import choose_format, outcomes_without_format
from core.infrastructure.data.dedup import remove_duplicates
from core.infrastructure.data.jsonl_ranges import line_ranges, streamed_jsonl_file
from core.infrastructure.data.jsonl_stream import stream_jsonl
from core.infrastructure.data.oasst import convert_oasst
from core.infrastructure.data.problems import MAX_SAMPLES, Outcome
from core.infrastructure.data.readers import RawRecord, as_record, problem_record, split_from_name
from core.infrastructure.data.record_pass import RecordPass
from core.infrastructure.data.record_store import RecordStore
from core.infrastructure.data.sources import InputSource, resolve_input

DETECTION_SAMPLE = 200
"""Readable records (and records with fields) that format detection looks at."""

SAMPLE_LINES = 5000
"""Records (non-blank lines) of a JSON Lines file within which the sample must be complete for the workers to read it."""

LINES_PER_TASK = 1000
"""Lines of a JSON Lines file per task of the pass."""


class FormatUnknown(Exception):
    """No format could be chosen for a source: nothing in it was readable.

    Attributes:
        source: The source's input.
        outcomes: One skipped outcome per record (for the failure report).
        problems: The read problems.
    """

    def __init__(self, source: InputSource, outcomes: list[Outcome], problems: list[str]) -> None:
        self.source = source
        self.outcomes = outcomes
        self.problems = problems
        super().__init__(f"{source.name}: no usable record")


@dataclass
class SourceData:
    """What one source gave: its format, every record's outcome, and the records it offers to the mix.

    Attributes:
        spec: The source's settings.
        input: The resolved input.
        data_format: The format used.
        format_reason: Why that format.
        outcomes: Conversion outcome of every record read.
        available: Valid records after deduplication and the source's ``max_samples``.
        left_out: Valid records removed here (``duplicate``, ``max_samples``).
    """

    spec: DatasetSource
    input: InputSource
    data_format: str
    format_reason: str
    outcomes: list[Outcome]
    available: list[Outcome] = field(default_factory=list)
    left_out: list[Outcome] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """Every validation problem of the source as ``file:line: field: problem``."""
        return [str(problem) for outcome in self.outcomes for problem in outcome.problems]


def resolve_sources(specs: list[DatasetSource]) -> list[InputSource]:
    """Resolves every source's dataset name (``demo``, a path or a Hub id).

    Args:
        specs: The sources.

    Returns:
        One input per source.

    Raises:
        ConfigError: For a name that is neither the demo, an existing path, nor a Hub id; with
            several sources the message names the source (``data.datasets[1].dataset: ...``).
    """
    inputs = []
    for index, spec in enumerate(specs):
        try:
            inputs.append(resolve_input(spec.dataset, spec.split))
        except ConfigError as error:
            if len(specs) == 1:
                raise
            raise ConfigError(str(error).replace("data.dataset:", f"data.datasets[{index}].dataset:", 1)) from None
    return inputs


def read_source(
    spec: DatasetSource,
    source: InputSource,
    oasst_language: str | None,
    store: RecordStore,
    record_pass: Callable[[str], RecordPass],
) -> SourceData:
    """Reads one source into the store, chooses its format, and converts, validates and tokenizes every record.

    The records stream into the store's spool (one uncompressed JSON Lines file is read by the
    pass's workers instead: :func:`_read_by_workers`); the format is chosen from the first readable
    ones (:data:`DETECTION_SAMPLE`); one pass (:meth:`RecordStore.process`) does the per-record
    work. Problems are kept, not raised.

    Args:
        spec: The source's settings (format, field mapping).
        source: Its resolved input.
        oasst_language: ``data.oasst_language``.
        store: Where the records and the pass's table go.
        record_pass: Builds the per-record work for a format.

    Returns:
        The source's outcomes (``available`` is filled by :func:`select_records`).

    Raises:
        FormatUnknown: When nothing in the source could be read.
        ConfigError: For an unknown or ambiguous format or a bad field mapping.
    """
    from core.domain.errors import DataValidationError

    direct = _read_by_workers(spec, source, store, record_pass)
    if direct is not None:
        return direct
    sample = _Sample()
    spool = store.spool(sample.collecting(source.records()))
    try:
        chosen, reason = choose_format(
            sample.records or store.spooled(spool), source.name, spec.format, spec.field_mapping, source.hub_id
        )
    except DataValidationError as error:
        raise FormatUnknown(source, outcomes_without_format(store.spooled(spool)), error.problems) from None
    if chosen == "oasst":  # message trees: converted here, as a whole, then tokenized in the pass
        spool = store.spool(convert_oasst(store.spooled(spool), oasst_language))
    outcomes = store.process(spool, record_pass(chosen))
    return SourceData(spec, source, chosen, reason, outcomes)


def _read_by_workers(
    spec: DatasetSource, source: InputSource, store: RecordStore, record_pass: Callable[[str], RecordPass]
) -> SourceData | None:
    """One uncompressed JSON Lines file whose format its first lines settle: the pass's workers read its lines.

    The format is chosen from the same sample the spool would collect (complete within its first
    :data:`SAMPLE_LINES` lines); anything else (other files, oasst trees, a sample that takes
    longer, no format) returns None and goes through the spool.
    """
    from core.domain.errors import DataValidationError

    path = streamed_jsonl_file(source)
    if path is None:
        return None
    sample, records = _Sample(), stream_jsonl(path, as_record, problem_record)
    with contextlib.closing(records):
        for count, _record in enumerate(sample.collecting(records), 1):
            if sample.complete or count == SAMPLE_LINES:
                break
    if not sample.complete:
        return None
    split = split_from_name(path.name)
    for record in sample.records:
        record.split = split
    try:
        chosen, reason = choose_format(sample.records, source.name, spec.format, spec.field_mapping, source.hub_id)
    except DataValidationError:
        return None
    if chosen == "oasst":
        return None
    with path.open("rb") as handle:  # open until the pass is done: its workers read through it
        outcomes = store.process_lines(line_ranges(handle, LINES_PER_TASK), record_pass(chosen))
    return SourceData(spec, source, chosen, reason, outcomes)


class _Sample:
    """The records format detection looks at: the first readable ones, then those with fields, up to :data:`DETECTION_SAMPLE`."""

    def __init__(self) -> None:
        self.records: list[RawRecord] = []
        self._filled = 0

    @property
    def complete(self) -> bool:
        """True when no later record would join the sample."""
        return self._filled >= DETECTION_SAMPLE

    def collecting(self, records: Iterable[RawRecord]) -> Iterator[RawRecord]:
        """Passes the records on, keeping those the sample takes."""
        for record in records:
            wanted = len(self.records) < DETECTION_SAMPLE or (not self.complete and record.data)
            if not record.problems and wanted:
                self.records.append(record)
                self._filled += bool(record.data)
            yield record


def select_records(
    sources: list[SourceData], deduplicate: Literal["exact", "normalized", "none"], seed: int, keys: np.ndarray
) -> None:
    """Fills every source's ``available`` records: valid, not a duplicate of an earlier one, capped.

    Args:
        sources: The sources, in order (changed in place).
        deduplicate: ``data.deduplicate``.
        seed: ``data.seed`` (which records a source's ``max_samples`` keeps).
        keys: The pass's ``dedup_key`` column (the hash of each record's key under ``deduplicate``).
    """
    seen: set[int] = set()
    for source in sources:
        valid = [outcome for outcome in source.outcomes if outcome.conversation is not None]
        valid, duplicates = remove_duplicates(
            valid, deduplicate, seen, lambda outcome: int(keys[outcome.conversation.row])
        )
        source.available, capped = limit_samples(valid, source.spec.max_samples, seed)
        source.left_out = duplicates + capped


def limit_samples(valid: list[Outcome], max_samples: int | None, seed: int) -> tuple[list[Outcome], list[Outcome]]:
    """Keeps at most ``max_samples`` records chosen by a seeded shuffle; the rest are skipped.

    Args:
        valid: Valid records in input order.
        max_samples: The cap (None: no cap).
        seed: Shuffle seed.

    Returns:
        The kept records (input order) and one ``max_samples`` outcome per record left out.
    """
    if max_samples is None or len(valid) <= max_samples:
        return valid, []
    order = list(range(len(valid)))
    random.Random(seed).shuffle(order)
    keep = set(order[:max_samples])
    left_out = [Outcome(outcome.source, reason=MAX_SAMPLES) for index, outcome in enumerate(valid) if index not in keep]
    return [outcome for index, outcome in enumerate(valid) if index in keep], left_out
