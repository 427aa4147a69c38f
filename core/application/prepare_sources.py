"""The sources of ``prepare-data``: which datasets to read, reading them (strict or lenient), mixing them.

``data.dataset`` is one source; ``data.datasets`` several; ``--input`` (repeatable) replaces both.
Every source is read, validated, deduplicated and capped on its own
(:mod:`core.infrastructure.data.source_pipeline`), then the sources are mixed
(:mod:`core.infrastructure.data.mixing`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from core.domain.config import Settings
from core.domain.data_settings import DatasetSource
from core.domain.errors import PROBLEMS_SHOWN, DataValidationError
from core.domain.manifest import write_json_atomic
from core.infrastructure.data.mixing import MixResult, SourcePool, mix_sources
from core.infrastructure.data.prepared import REPORT_FILE
from core.infrastructure.data.problems import Outcome
from core.infrastructure.data.record_pass import PassSettings, RecordPass
from core.infrastructure.data.record_store import RecordStore
from core.infrastructure.data.report import build_failure_report, where_listed
from core.infrastructure.data.source_pipeline import FormatUnknown, SourceData, read_source, select_records
from core.infrastructure.data.source_report import source_entry
from core.infrastructure.data.sources import InputSource


@dataclass
class MixedSources:
    """The sources after reading and mixing.

    Attributes:
        sources: Every source's data, in order.
        mix: The mixed records and each source's share.
        left_out: Valid records left out before or by the mix (``duplicate``, ``max_samples``, ``not_in_mix``).
    """

    sources: list[SourceData]
    mix: MixResult
    left_out: list[Outcome]

    @property
    def outcomes(self) -> list[Outcome]:
        """Conversion outcome of every record read, over all sources."""
        return [outcome for source in self.sources for outcome in source.outcomes]

    @property
    def label(self) -> str:
        """The inputs' names joined by `` + ``."""
        return " + ".join(source.input.name for source in self.sources)

    @property
    def data_format(self) -> str:
        """The format, or the sources' distinct formats joined by ``+``."""
        return "+".join(dict.fromkeys(source.data_format for source in self.sources))

    @property
    def format_reason(self) -> str:
        """Why each format was chosen."""
        if len(self.sources) == 1:
            return self.sources[0].format_reason
        return "; ".join(f"{source.input.name}: {source.format_reason}" for source in self.sources)


def source_specs(settings: Settings, input_path: Any, data_format: str | None) -> list[DatasetSource]:
    """The sources to read: ``--input`` (one or several) or the settings' ``data.sources()``.

    Args:
        settings: Validated settings.
        input_path: ``--input``: a name, a list of names, or None.
        data_format: ``--format``, applied to every source when given.

    Returns:
        The sources, in mixing order.
    """
    data = settings.data
    if input_path is None:
        specs = data.sources()
    else:
        names = list(input_path) if isinstance(input_path, list | tuple) else [input_path]
        single = (
            {} if data.datasets else {"format": data.format, "field_mapping": data.field_mapping, "split": data.split}
        )
        specs = [DatasetSource(dataset=str(name), **single) for name in names]
    if data_format:
        specs = [spec.model_copy(update={"format": data_format}) for spec in specs]
    return specs


def mix_settings(settings: Settings, specs: list[DatasetSource]) -> dict[str, Any]:
    """The mix's part of the fingerprinted settings (empty for one source read as always).

    Args:
        settings: Validated settings.
        specs: The sources.

    Returns:
        ``sources`` (every source's settings and weight), ``mix_strategy``, ``mix_size``.
    """
    data = settings.data
    if len(specs) == 1 and not data.datasets and data.mix_strategy == "concat":
        return {}
    return {
        "sources": [spec.model_dump(mode="json") for spec in specs],
        "mix_strategy": data.mix_strategy,
        "mix_size": data.mix_size,
    }


def record_pass_settings(settings: Settings, spec: DatasetSource, data_format: str) -> PassSettings:
    """What the per-record work of one source depends on.

    Args:
        settings: Validated settings.
        spec: The source.
        data_format: The format chosen for it.

    Returns:
        The pass settings.
    """
    data = settings.data
    return PassSettings(
        data_format=data_format,
        field_mapping=spec.field_mapping,
        system_prompt=data.system_prompt,
        train_on=data.train_on,
        max_length=data.max_seq_length,
        train_on_prompt=data.train_on_prompt,
        truncation=data.truncation,
        deduplicate=data.deduplicate,
    )


def read_and_mix(
    settings: Settings,
    specs: list[DatasetSource],
    inputs: list[InputSource],
    directory: Path,
    lenient: bool,
    store: RecordStore,
    tokenizer: Any,
) -> MixedSources:
    """Reads every source, stops in strict mode on any invalid record, then mixes the valid ones.

    Each source is converted, validated and tokenized in one pass (:class:`RecordPass`).

    Args:
        settings: Validated settings.
        specs: The sources.
        inputs: Their resolved inputs.
        directory: The prepared directory (a failed strict run writes its ``report.json`` there).
        lenient: Skip bad records instead of stopping.
        store: Where the records and the pass's tables go.
        tokenizer: Tokenizer with the chat template to train with.

    Returns:
        The sources and their mix.

    Raises:
        DataValidationError: In strict mode, with every problem of every source as ``file:line: field: problem``.
    """
    data = settings.data
    sources = [
        _read_one(settings, spec, source, directory, store, tokenizer)
        for spec, source in zip(specs, inputs, strict=True)
    ]
    problems = [problem for source in sources for problem in source.problems]
    mixed = MixedSources(sources, MixResult([], [], []), [])
    if problems and not lenient:
        error = DataValidationError(problems)
        raise strict_failure(directory, mixed.label, mixed.data_format, mixed.format_reason, mixed.outcomes, error)
    _log_skipped(mixed.outcomes, directory)
    select_records(sources, data.deduplicate, data.seed, store.column("dedup_key"))
    pools = [
        SourcePool(source.input.name, source.available, source.spec.weight, source.spec.repeat) for source in sources
    ]
    mixed.mix = mix_sources(pools, data.mix_strategy, data.mix_size, data.seed)  # warnings: in the report
    mixed.left_out = [
        outcome
        for source, share in zip(sources, mixed.mix.shares, strict=True)
        for outcome in source.left_out + share.not_used
    ]
    return mixed


def _log_skipped(outcomes: list[Outcome], directory: Path) -> None:
    """Names the first skipped invalid records on the console, then how many more ``report.json`` lists.

    Args:
        outcomes: Every record's outcome.
        directory: The prepared directory (where ``report.json`` goes).
    """
    invalid = [outcome for outcome in outcomes if outcome.problems]
    for outcome in invalid[:PROBLEMS_SHOWN]:
        logger.warning("Skipped {}", "; ".join(str(problem) for problem in outcome.problems))
    if len(invalid) > PROBLEMS_SHOWN:
        listed = where_listed(len(invalid), "skipped invalid record", directory / REPORT_FILE)
        logger.warning("... and {} more invalid records skipped; {}", len(invalid) - PROBLEMS_SHOWN, listed)


def _read_one(
    settings: Settings, spec: DatasetSource, source: InputSource, directory: Path, store: RecordStore, tokenizer: Any
) -> SourceData:
    """Reads one source through the record pass; a source with nothing readable stops with its failure report."""

    def record_pass(data_format: str) -> RecordPass:
        return RecordPass(tokenizer, record_pass_settings(settings, spec, data_format))

    try:
        read = read_source(spec, source, settings.data.oasst_language, store, record_pass)
    except FormatUnknown as failure:
        error = DataValidationError(failure.problems)
        raise strict_failure(directory, source.name, None, "no usable record", failure.outcomes, error) from None
    logger.info("Format of {}: {}", source.name, read.format_reason)
    return read


def sources_report(mixed: MixedSources, settings: Settings) -> dict[str, Any]:
    """The report's ``sources`` list and ``mix`` block.

    Args:
        mixed: The sources and their mix.
        settings: Validated settings.

    Returns:
        ``{"sources": [...], "mix": {"strategy", "mix_size", "records", "repeated"}}``.
    """
    entries = [
        source_entry(
            name=source.input.name,
            data_format=source.data_format,
            format_reason=source.format_reason,
            weight=source.spec.weight,
            outcomes=source.outcomes,
            kept=len(source.available),
            left_out=source.left_out,
            share=share,
        )
        for source, share in zip(mixed.sources, mixed.mix.shares, strict=True)
    ]
    mix = {
        "strategy": settings.data.mix_strategy,
        "mix_size": settings.data.mix_size,
        "records": len(mixed.mix.records),
        "repeated": sum(share.repeated for share in mixed.mix.shares),
    }
    return {"sources": entries, "mix": mix}


def strict_failure(
    directory: Path,
    input_name: str,
    data_format: str | None,
    reason: str,
    outcomes: list[Outcome],
    error: DataValidationError,
) -> DataValidationError:
    """Writes ``report.json`` of a stopped strict run and returns the error, with the counts per reason added."""
    report = build_failure_report(
        input_name=input_name, data_format=data_format, format_reason=reason, outcomes=outcomes
    )
    write_json_atomic(directory / REPORT_FILE, report)
    counts = report["counts"]
    per_reason = ", ".join(f"{name} {count}" for name, count in counts["invalid"].items())
    return DataValidationError(
        error.problems,
        note=(
            f"read {counts['read']}, valid {counts['valid']}, invalid {counts['invalid_total']} ({per_reason}); "
            f"{where_listed(report['problems_total'], 'problem', directory / REPORT_FILE)}; "
            "--lenient skips and counts them"
        ),
    )
