"""Use case ``prepare-data``: raw instruction data -> validated, tokenized train/validation/test splits.

Steps: resolve the inputs (``demo``, a local file/directory, or a Hub id; one ``data.dataset`` or
several ``data.datasets``), compute the fingerprint (input bytes, tokenizer files, chat template,
data and mix settings) and reuse an existing prepared directory when it matches; otherwise read
every source, choose its format, convert and validate every record (strict: stop listing every
problem as ``file:line: field: problem``; lenient: skip and report), deduplicate and cap each
source, mix the sources (:mod:`core.application.prepare_sources`), add the system prompt, split,
tokenize with loss masks, and write the prepared directory with ``report.json`` and ``report.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from loguru import logger

from core.application.prepare_sources import (
    REPORT_FILE,
    MixedSources,
    mix_settings,
    read_and_mix,
    source_specs,
    sources_report,
)
from core.domain.config import Settings, load_settings
from core.domain.data_settings import DatasetSource
from core.domain.errors import ConfigError, DataValidationError
from core.domain.records import Conversation, Message
from core.infrastructure.data.dedup import remove_train_overlap
from core.infrastructure.data.fingerprint import compute_fingerprint
from core.infrastructure.data.prepared import PREPARED_FILE, PreparedData, load_prepared, save_prepared
from core.infrastructure.data.problems import DUPLICATE, Outcome
from core.infrastructure.data.report import build_report, report_markdown
from core.infrastructure.data.source_pipeline import limit_samples, resolve_sources
from core.infrastructure.data.source_report import sources_summary
from core.infrastructure.data.splits import assign_splits

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
    if not (directory / PREPARED_FILE).is_file() or not (directory / "report.json").is_file():
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
    mixed = read_and_mix(settings, specs, inputs, directory, lenient)
    splits, left_out = _split_records(mixed, settings)
    tokenizer = _load_tokenizer(model_dir, _template_argument(settings))
    kept_splits, tokenized, dropped, length_stats = _tokenize_splits(tokenizer, splits, settings)
    left_out += dropped
    _require_samples(mixed, tokenized)
    report = _report(settings, mixed, lenient, left_out, kept_splits, tokenized, length_stats)
    report.update(fingerprint=fingerprint)
    info = {
        "input": mixed.label,
        "format": mixed.data_format,
        "format_reason": mixed.format_reason,
        "template": settings.data.template,
        "tokenizer": str(model_dir),
        "settings": relevant,
    }
    prepared = _save(directory, fingerprint, tokenizer, kept_splits, tokenized, info, report)
    _log_summary(directory, report)
    return prepared


def _report(
    settings: Settings,
    mixed: MixedSources,
    lenient: bool,
    left_out: list[Outcome],
    splits: dict[str, list[Conversation]],
    tokenized: dict[str, list[dict[str, Any]]],
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
        splits=splits,
        tokenized=tokenized,
        truncation=settings.data.truncation,
        max_length=settings.data.max_seq_length,
        length_stats=length_stats,
    )
    report["warnings"] = [*mixed.mix.warnings, *report["warnings"]]  # a source short of its share first
    return {**report, **sources_report(mixed, settings), "template": settings.data.template}


def _require_samples(mixed: MixedSources, tokenized: dict[str, list[dict[str, Any]]]) -> None:
    """Stops when no training sample is left (every record skipped)."""
    if sum(len(rows) for rows in tokenized.values()) == 0:
        read = len(mixed.outcomes)
        raise DataValidationError(
            [f"{mixed.label}: record: no usable records ({read} read, all skipped; see the problems above)"]
        )


def _split_records(mixed: MixedSources, settings: Settings) -> tuple[dict[str, list[Conversation]], list[Outcome]]:
    """The mix capped by ``data.max_samples``, with the system prompt, split, without held-out leaks."""
    data = settings.data
    valid, capped = limit_samples(mixed.mix.records, data.max_samples, data.seed)
    left_out = mixed.left_out + capped
    conversations = [with_system_prompt(outcome.conversation, data.system_prompt) for outcome in valid]
    splits = assign_splits(
        conversations, [outcome.split for outcome in valid], data.validation_fraction, data.test_fraction, data.seed
    )
    splits, leaks = remove_train_overlap(splits)
    duplicates = sum(1 for outcome in left_out if outcome.reason == DUPLICATE)
    if duplicates or leaks:
        logger.info(
            "Removed {} duplicate(s) and {} held-out record(s) whose prompt is in train", duplicates, len(leaks)
        )
    return splits, left_out + leaks


def _save(
    directory: Path,
    fingerprint: str,
    tokenizer: Any,
    splits: dict[str, list[Conversation]],
    tokenized: dict[str, list[dict[str, Any]]],
    info: dict[str, Any],
    report: dict[str, Any],
) -> PreparedData:
    """Writes the prepared directory: splits, token ids and labels, info, report.json and report.md."""
    return save_prepared(
        directory,
        fingerprint,
        tokenizer.chat_template,
        splits,
        {
            split: [{"input_ids": row["input_ids"], "labels": row["labels"]} for row in rows]
            for split, rows in tokenized.items()
        },
        info=info,
        report=report,
        report_markdown=report_markdown(report),
    )


def _log_summary(directory: Path, report: dict[str, Any]) -> None:
    """Logs the report's warnings, then the lines a user reads after ``prepare-data``: counts, lengths, sources."""
    for warning in report["warnings"]:
        logger.warning("{}", warning)
    counts, lengths, tokens = report["counts"], report["lengths_before_truncation"], report["tokens"]
    splits = counts["splits"]
    reasons = f" {counts['skipped']}" if counts["skipped"] else ""
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


def _train_last_assistant_only(conversation: Conversation) -> Conversation:
    """``data.train_on=last_assistant``: earlier assistant turns become context (as in TRL's and axolotl's option)."""
    last = max(index for index, message in enumerate(conversation.messages) if message.role == "assistant")
    messages = [
        message.model_copy(update={"trained": False}) if message.role == "assistant" and index != last else message
        for index, message in enumerate(conversation.messages)
    ]
    return conversation.model_copy(update={"messages": messages})


def _load_tokenizer(model_dir: Path, template: str | None) -> Any:
    from core.infrastructure.models.tokenizer_loading import load_tokenizer

    return load_tokenizer(model_dir, template)


def with_system_prompt(conversation: Conversation, system_prompt: str | None) -> Conversation:
    """Adds ``data.system_prompt`` to a conversation that has no system turn."""
    if not system_prompt or conversation.messages[0].role == "system":
        return conversation
    messages = [Message(role="system", content=system_prompt), *conversation.messages]
    return conversation.model_copy(update={"messages": messages})


def _tokenize_splits(
    tokenizer: Any, splits: dict[str, list[Conversation]], settings: Settings
) -> tuple[dict[str, list[Conversation]], dict[str, list[dict[str, Any]]], list[Outcome], dict[str, Any]]:
    """Tokenizes every split into samples (``data.truncation``); left-out conversations come back as skipped.

    Returns:
        Kept conversations and their sample rows per split, the left-out outcomes, and the counts
        of the report (lengths before truncation, assistant turns meant and trained, records cut).
    """
    from core.infrastructure.data.turn_split import tokenize_record

    data = settings.data
    kept: dict[str, list[Conversation]] = {}
    rows: dict[str, list[dict[str, Any]]] = {}
    dropped: list[Outcome] = []
    stats: dict[str, Any] = {"lengths": [], "assistant_turns": 0, "assistant_turns_trained": 0, "records_cut": 0}
    for split, conversations in splits.items():
        kept[split], rows[split] = [], []
        for conversation in conversations:
            if data.train_on == "last_assistant":
                conversation = _train_last_assistant_only(conversation)
            try:
                samples = tokenize_record(
                    tokenizer, conversation, data.max_seq_length, data.train_on_prompt, data.truncation
                )
            except ValueError as error:  # a template that is not prefix-stable
                raise ConfigError(f"data.template: {error}") from error
            stats["lengths"].append(samples.length)
            stats["assistant_turns"] += samples.assistant_turns
            stats["assistant_turns_trained"] += samples.assistant_turns_trained
            stats["records_cut"] += samples.cut
            if not samples.examples:
                dropped.append(Outcome(conversation.source, reason=samples.reason))
                continue
            kept[split].append(conversation)
            rows[split].extend(
                {
                    "input_ids": example.input_ids,
                    "labels": example.labels,
                    "trained_tokens": example.trained_tokens,
                    "truncated": example.truncated,
                }
                for example in samples.examples
            )
    return kept, rows, dropped, stats


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
