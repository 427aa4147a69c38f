"""From raw records to conversations: choose the format, convert every record, keep every problem."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.domain.errors import ConfigError, DataValidationError
from core.infrastructure.data.detection import detect_format_of
from core.infrastructure.data.formats import FORMATS, HUB_FORMATS, record_converter
from core.infrastructure.data.oasst import convert_oasst
from core.infrastructure.data.problems import Outcome, RecordProblems
from core.infrastructure.data.readers import RawRecord, normalize_split
from core.infrastructure.data.unsupported import unsupported_problems


def choose_format(
    records: list[RawRecord],
    input_name: str,
    requested: str = "auto",
    field_mapping: dict[str, str] | None = None,
    hub_id: str | None = None,
) -> tuple[str, str]:
    """Decides the input format and explains the choice.

    Args:
        records: Raw records.
        input_name: Input name for messages.
        requested: ``auto`` or a format name.
        field_mapping: ``data.field_mapping``; when set, ``auto`` means ``custom``.
        hub_id: Hub dataset id, when the input comes from the Hub.

    Returns:
        ``(format, reason)``.

    Raises:
        ConfigError: For an unknown format name, or when auto-detection is ambiguous or fails.
        DataValidationError: When no record could be read at all (auto-detection has nothing to go on).
    """
    if requested != "auto":
        if requested not in FORMATS:
            raise ConfigError(f"data.format: unknown format {requested!r}; allowed values: auto, {', '.join(FORMATS)}")
        return requested, f"{requested}: named explicitly"
    if field_mapping:
        return "custom", "custom: data.field_mapping is set"
    if hub_id is not None and hub_id.lower() in HUB_FORMATS:
        data_format = HUB_FORMATS[hub_id.lower()]
        return data_format, f"{data_format}: known Hub dataset {hub_id}"
    readable = [record for record in records if not record.problems]
    if not readable:  # nothing to detect from: the read errors are the answer
        raise DataValidationError([str(problem) for record in records for problem in record.problems])
    try:
        return detect_format_of([record.data for record in readable], input_name)
    except ConfigError:
        refused = [unsupported_problems(record.data, record.source, "auto") for record in readable[:200]]
        if all(refused):  # say what the data is rather than that its format is unknown
            raise DataValidationError([str(problem) for problems in refused for problem in problems]) from None
        raise


def convert_records(
    records: list[RawRecord],
    data_format: str,
    field_mapping: dict[str, str] | None = None,
    oasst_language: str | None = None,
) -> list[Outcome]:
    """Converts raw records into conversations, one outcome per record (per tree for oasst).

    Args:
        records: Raw records (records with read problems become skipped outcomes).
        data_format: A name from :data:`FORMATS`.
        field_mapping: Column mapping of the custom format.
        oasst_language: Language filter of the oasst format.

    Returns:
        The outcomes; a skipped outcome carries its problems and reason.
    """
    if data_format == "oasst":
        return convert_oasst(records, oasst_language)
    convert = record_converter(data_format, field_mapping)
    return [convert_record(record, convert, data_format) for record in records]


def convert_record(record: RawRecord, convert: Callable[[dict[str, Any], str], Any], data_format: str) -> Outcome:
    """Converts one raw record of a flat format (every format but ``oasst``) into its outcome.

    Args:
        record: The raw record (one with read problems becomes a skipped outcome).
        convert: The format's converter (:func:`record_converter`).
        data_format: The format's name (for the checks of unsupported content).

    Returns:
        The outcome; a skipped outcome carries its problems and reason.
    """
    if record.problems:
        return Outcome(record.source, problems=record.problems, reason=record.problems[0].reason)
    split = normalize_split(record.data.get("split")) or record.split
    refused = unsupported_problems(record.data, record.source, data_format)
    if refused:
        return Outcome(record.source, problems=refused, reason=refused[0].reason, split=split)
    try:
        return Outcome(record.source, conversation=convert(record.data, record.source), split=split)
    except RecordProblems as failure:
        return Outcome(record.source, problems=failure.problems, reason=failure.problems[0].reason)


def outcomes_without_format(records: list[RawRecord]) -> list[Outcome]:
    """Outcomes when no format could be chosen: each record's read or refusal problems (for the report).

    Args:
        records: Raw records.

    Returns:
        One skipped outcome per record.
    """
    outcomes = []
    for record in records:
        problems = record.problems or unsupported_problems(record.data, record.source, "auto")
        outcomes.append(
            Outcome(record.source, problems=problems, reason=problems[0].reason if problems else "format_unknown")
        )
    return outcomes
