"""Use case ``prepare-data``: raw instruction data -> validated, tokenized train/validation/test splits.

Steps: resolve the inputs (``demo``, a local file/directory, or a Hub id; one ``data.dataset`` or
several ``data.datasets``), compute the fingerprint (input bytes, tokenizer files, chat template,
data and mix settings) and reuse an existing prepared directory when it matches; otherwise load the
tokenizer (without torch), stream every source into Arrow on disk and, in one pass on every core,
convert, validate, hash and tokenize each record (strict: stop listing every problem as
``file:line: field: problem``; lenient: skip and report); deduplicate and cap each source, mix the
sources (:mod:`core.application.prepare_sources`), split, remove held-out records that leak train,
and write the prepared directory with ``report.json`` and ``report.md`` chunk by chunk. Memory
holds hashes and counts per record, never conversations or token ids.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from loguru import logger

from core.application.prepare_sources import (
    MixedSources,
    mix_settings,
    read_and_mix,
    source_specs,
    sources_report,
)
from core.domain.config import Settings, load_settings
from core.domain.data_settings import DatasetSource
from core.domain.errors import ConfigError, DataValidationError
from core.infrastructure.data.fingerprint import compute_fingerprint
from core.infrastructure.data.gc_pause import paused_gc
from core.infrastructure.data.kept_records import quality, rows_of, split_records, tokenized_records
from core.infrastructure.data.prepared import (
    PREPARED_FILE,
    REPORT_FILE,
    PreparedData,
    finish_prepared,
    load_prepared,
    start_prepared,
)
from core.infrastructure.data.prepared_writer import write_splits
from core.infrastructure.data.problems import DUPLICATE, TRAIN_OVERLAP, Outcome
from core.infrastructure.data.record_pass import with_system_prompt as with_system_prompt
from core.infrastructure.data.record_store import RecordStore
from core.infrastructure.data.report import build_report, report_markdown
from core.infrastructure.data.source_pipeline import resolve_sources
from core.infrastructure.data.source_report import sources_summary
from core.infrastructure.data.sources import InputSource

PREPARED_SUBDIR = "prepared"
"""Prepared datasets live in ``paths.data_dir / prepared / <fingerprint>``."""


def _template_argument(settings: Settings) -> str | None:
    """What ``load_tokenizer`` gets as ``chat_template`` for ``data.template``."""
    template = settings.data.template
    if template == "model":
        return None
    if template == "custom":
        return settings.data.custom_template
    return template


def _model_dir(settings: Settings) -> Path:
    from core.infrastructure.models.resolve import resolve_model

    return resolve_model(settings.model.name, settings.paths.model_cache, settings.model.revision).path


def _relevant_settings(settings: Settings, specs: list[DatasetSource], lenient: bool) -> dict[str, Any]:
    excluded = {"dataset", "format", "lenient", "datasets", "mix_strategy", "mix_size"}
    data = settings.data.model_dump(mode="json", exclude=excluded)
    return {**data, "format": specs[0].format, "lenient": lenient, **mix_settings(settings, specs)}


def _reusable(directory: Path, fingerprint: str) -> PreparedData | None:
    if not (directory / PREPARED_FILE).is_file() or not (directory / REPORT_FILE).is_file():
        return None
    try:
        prepared = load_prepared(directory)
    except (OSError, ValueError, KeyError):
        return None
    return prepared if prepared.fingerprint == fingerprint else None


def preparation_fingerprint(
    settings: Settings, input_path: str | Path | list[str] | None = None, data_format: str | None = None
) -> str:
    """The fingerprint ``prepare_data`` would give these settings: inputs, tokenizer, data and mix settings.

    Args:
        settings: Validated settings.
        input_path: As for :func:`prepare_data`.
        data_format: As for :func:`prepare_data`.

    Returns:
        The 16-character fingerprint (the prepared directory's name).
    """
    specs = source_specs(settings, input_path, data_format)
    relevant = _relevant_settings(settings, specs, settings.data.lenient)
    return compute_fingerprint(resolve_sources(specs), _model_dir(settings), relevant)


def prepare_data(
    settings: Settings,
    input_path: str | Path | list[str] | None = None,
    data_format: str | None = None,
    output_dir: str | Path | None = None,
    lenient: bool | None = None,
) -> PreparedData:
    """Prepares (or reuses) the tokenized dataset for the configured model and template.

    Args:
        settings: Validated settings (``data``, ``model``, ``paths`` are used).
        input_path: Input instead of ``data.dataset`` / ``data.datasets`` (``demo``, a path or a Hub
            id), or a list of them mixed by ``data.mix_strategy``.
        data_format: Format of every input instead of ``data.format`` (``auto`` detects it).
        output_dir: Output directory instead of ``paths.data_dir/prepared/<fingerprint>``.
        lenient: Skip bad records instead of stopping (default: ``data.lenient``).

    Returns:
        The prepared dataset.

    Raises:
        DataValidationError: In strict mode, listing every problem as ``file:line: field: problem``;
            in both modes when no usable record is left.
        ConfigError: For an unknown input, format or field mapping, or an ambiguous format.
    """
    lenient = settings.data.lenient if lenient is None else lenient
    specs = source_specs(settings, input_path, data_format)
    inputs = resolve_sources(specs)
    model_dir = _model_dir(settings)
    relevant = _relevant_settings(settings, specs, lenient)
    fingerprint = compute_fingerprint(inputs, model_dir, relevant)
    directory = Path(output_dir) if output_dir else Path(settings.paths.data_dir) / PREPARED_SUBDIR / fingerprint

    cached = _reusable(directory, fingerprint)
    if cached is not None:
        logger.info("Reusing prepared data {} (input, tokenizer and data settings unchanged)", directory)
        return cached
    if not _replaceable(directory):
        raise ConfigError(f"--output: {directory} exists and is not a prepared dataset; name an empty or new directory")
    with paused_gc():  # the tokenizer's JSON and the records' bookkeeping: many objects, no cycles
        tokenizer = _load_tokenizer(model_dir, _template_argument(settings))
        mixed, counts, report = _prepare(settings, specs, inputs, directory, lenient, tokenizer)
    report.update(fingerprint=fingerprint)
    info = {
        "input": mixed.label,
        "format": mixed.data_format,
        "format_reason": mixed.format_reason,
        "template": settings.data.template,
        "tokenizer": str(model_dir),
        "settings": relevant,
    }
    prepared = finish_prepared(
        directory, fingerprint, tokenizer.chat_template, counts, info, report, report_markdown(report)
    )
    _log_summary(directory, report)
    return prepared


def _prepare(
    settings: Settings,
    specs: list[DatasetSource],
    inputs: list[InputSource],
    directory: Path,
    lenient: bool,
    tokenizer: Any,
) -> tuple[MixedSources, dict[str, int], dict[str, Any]]:
    """Reads, checks, tokenizes, mixes and splits the sources, and writes the splits (the report comes back).

    The records and the pass's tables live in a work directory beside ``directory``, removed at the end.

    Returns:
        The sources and their mix, the samples per split, and the report (without its fingerprint).
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory.parent, prefix=f".{directory.name}.work-") as work:
        store = RecordStore(Path(work))
        mixed = read_and_mix(settings, specs, inputs, directory, lenient, store, tokenizer)
        template_error = store.first_template_error()
        if template_error is not None:
            raise ConfigError(f"data.template: {template_error}")
        splits, left_out = split_records(mixed.mix.records, settings.data, store)
        kept, dropped, length_stats = tokenized_records(splits, store)
        left_out = mixed.left_out + left_out + dropped
        _log_removed(left_out)
        _require_samples(mixed, kept)
        record_quality = quality(kept, store)  # read before the writing discards the pass files
        start_prepared(directory, tokenizer.chat_template)
        counts, samples = write_splits(directory, store, {split: rows_of(records) for split, records in kept.items()})
        split_counts = {split: len(records) for split, records in kept.items()}
        report = _report(settings, mixed, lenient, left_out, split_counts, samples, record_quality, length_stats)
    return mixed, counts, report


def _report(
    settings: Settings,
    mixed: MixedSources,
    lenient: bool,
    left_out: list[Outcome],
    split_counts: dict[str, int],
    samples: dict[str, Any],
    record_quality: dict[str, Any],
    length_stats: dict[str, Any],
) -> dict[str, Any]:
    """The data report: counts over the mix, quality, tokens, and the ``sources`` and ``mix`` of the mix."""
    report = build_report(
        input_name=mixed.label,
        data_format=mixed.data_format,
        format_reason=mixed.format_reason,
        lenient=lenient,
        outcomes=mixed.outcomes,
        left_out=left_out,
        split_counts=split_counts,
        samples=samples,
        quality=record_quality,
        truncation=settings.data.truncation,
        max_length=settings.data.max_seq_length,
        length_stats=length_stats,
    )
    report["warnings"] = [*mixed.mix.warnings, *report["warnings"]]  # a source short of its share first
    return {**report, **sources_report(mixed, settings), "template": settings.data.template}


def _require_samples(mixed: MixedSources, kept: dict[str, list[Outcome]]) -> None:
    """Stops when no training sample is left (every record skipped)."""
    if sum(len(outcomes) for outcomes in kept.values()) == 0:
        read = len(mixed.outcomes)
        raise DataValidationError(
            [f"{mixed.label}: record: no usable records ({read} read, all skipped; see the problems above)"]
        )


def _log_removed(left_out: list[Outcome]) -> None:
    """Logs how many duplicates and held-out records that leak train were removed."""
    duplicates = sum(1 for outcome in left_out if outcome.reason == DUPLICATE)
    leaks = sum(1 for outcome in left_out if outcome.reason == TRAIN_OVERLAP)
    if duplicates or leaks:
        logger.info("Removed {} duplicate(s) and {} held-out record(s) whose prompt is in train", duplicates, leaks)


def _log_summary(directory: Path, report: dict[str, Any]) -> None:
    """Logs the report's warnings, then the lines a user reads after ``prepare-data``: counts, lengths, sources."""
    for warning in report["warnings"]:
        logger.warning("{}", warning)
    counts, lengths, tokens = report["counts"], report["lengths_before_truncation"], report["tokens"]
    splits = counts["splits"]
    per_reason = ", ".join(f"{reason} {count}" for reason, count in counts["skipped"].items())
    reasons = f" ({per_reason})" if per_reason else ""
    logger.info(
        f"Prepared {directory}: read {counts['read']}, kept {counts['kept']} as {counts['samples']} samples "
        f"(train {splits['train']}, validation {splits['validation']}, test {splits['test']}), "
        f"skipped {counts['skipped_total']}{reasons}"
    )
    logger.info(
        f"Lengths before truncation: median {lengths['p50']}, p95 {lengths['p95']}, max {lengths['max']} tokens "
        f"(suggested max_seq_length {lengths['suggested_max_seq_length']}); mean {tokens['mean_length']} tokens "
        f"per sample, {100 * tokens['trainable_share']:.1f} % of tokens trained"
    )
    per_source = sources_summary(report)
    if per_source:
        logger.info("{}", per_source)


def _replaceable(directory: Path) -> bool:
    """A new or empty directory, a prepared dataset, or the report of a failed strict run."""
    if not directory.exists() or (directory / PREPARED_FILE).is_file():
        return True
    return {entry.name for entry in directory.iterdir()} <= {REPORT_FILE}


def _load_tokenizer(model_dir: Path, template: str | None) -> Any:
    from core.infrastructure.models.tokenizer_loading import load_tokenizer

    return load_tokenizer(model_dir, template)


def ensure_prepared(settings: Settings) -> PreparedData:
    """Returns the prepared dataset for the settings, preparing it only when nothing matches the fingerprint.

    Args:
        settings: Validated settings.

    Returns:
        The prepared dataset (from ``paths.data_dir/prepared/<fingerprint>``).
    """
    return prepare_data(settings)


def run(arguments: argparse.Namespace) -> int:
    """CLI entry: prepares the data and writes the report's counts as JSON to stdout.

    Args:
        arguments: ``--config``, overrides, ``--input``, ``--format``, ``--output``, ``--lenient``.

    Returns:
        0 on success (invalid data raises ``DataValidationError``: exit code 2 in the CLI).
    """
    settings = load_settings(arguments.config, arguments.overrides)
    inputs = getattr(arguments, "input", None)
    prepared = prepare_data(
        settings,
        input_path=inputs[0] if isinstance(inputs, list) and len(inputs) == 1 else inputs,
        data_format=getattr(arguments, "format", None),
        output_dir=getattr(arguments, "output", None),
        lenient=True if getattr(arguments, "lenient", False) else None,
    )
    report = prepared.report
    summary = {
        "directory": str(prepared.directory),
        "fingerprint": prepared.fingerprint,
        "format": report.get("format"),
        **report.get("counts", {}),
        **({"sources": report["sources"], "mix": report.get("mix")} if len(report.get("sources", [])) > 1 else {}),
        "report": str(prepared.directory / "report.md"),
    }
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    return 0
