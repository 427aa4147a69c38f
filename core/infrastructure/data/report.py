"""The data report: counts that add up, duplicates, overlap, token statistics, as JSON and Markdown."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from core.infrastructure.data.problems import Outcome
from core.infrastructure.data.source_report import sources_markdown

MAX_LISTED = 2000
"""Most skipped records / examples listed individually in the report (counts are always complete)."""

HISTOGRAM_BINS = 8


def _histogram(lengths: list[int], max_length: int) -> list[dict[str, Any]]:
    width = max(1, -(-max_length // HISTOGRAM_BINS))
    counts = Counter(min((length - 1) // width, HISTOGRAM_BINS - 1) for length in lengths if length > 0)
    return [
        {"from": index * width + 1, "to": (index + 1) * width, "count": counts.get(index, 0)}
        for index in range(HISTOGRAM_BINS)
    ]


def build_report(
    *,
    input_name: str,
    data_format: str,
    format_reason: str,
    lenient: bool,
    outcomes: list[Outcome],
    left_out: list[Outcome],
    split_counts: dict[str, int],
    samples: dict[str, Any],
    quality: dict[str, Any],
    truncation: str,
    max_length: int,
    length_stats: dict[str, Any],
) -> dict[str, Any]:
    """Builds the data report.

    Args:
        input_name: What was read.
        data_format: Format used.
        format_reason: Why (auto-detection reason or "named explicitly").
        lenient: Whether bad records were skipped.
        outcomes: Conversion outcome of every record read.
        left_out: Valid records left out later (max_samples, too long, empty loss mask).
        split_counts: Kept records per split.
        samples: Per training sample (a long conversation may give several): ``length``,
            ``trained_tokens`` and ``truncated`` (sequences of equal length).
        quality: ``duplicates`` and ``overlap`` among the kept records (:mod:`core.infrastructure.data.dedup`).
        truncation: ``data.truncation``.
        max_length: ``data.max_seq_length``.
        length_stats: From tokenization: ``lengths`` (every conversation's length before any cut),
            ``assistant_turns``, ``assistant_turns_trained``, ``records_cut``.

    Returns:
        The report as JSON-compatible data; ``counts`` satisfies read = kept + sum(skipped), where
        kept counts records (``samples`` counts the training samples they became).
    """
    skipped_outcomes = [outcome for outcome in outcomes if outcome.conversation is None] + left_out
    skipped = Counter(outcome.reason or "unknown" for outcome in skipped_outcomes)
    return {
        "input": input_name,
        "format": data_format,
        "format_reason": format_reason,
        "mode": "lenient" if lenient else "strict",
        "counts": {
            "read": len(outcomes),
            "kept": sum(split_counts.values()),
            **_skip_counts(skipped),
            "splits": dict(split_counts),
            "samples": len(samples["length"]),
        },
        **_turns_and_lengths(length_stats, max_length, truncation),
        "skipped_records": _skipped_records(skipped_outcomes),
        "duplicates": quality["duplicates"],
        "overlap": quality["overlap"],
        **_loss_and_truncation(skipped, left_out, samples, truncation, max_length),
    }


def _loss_and_truncation(
    skipped: Counter[str], left_out: list[Outcome], samples: dict[str, Any], truncation: str, max_length: int
) -> dict[str, Any]:
    """The report's ``empty_loss_mask``, ``tokens`` and ``truncation`` parts."""
    return {
        "empty_loss_mask": {
            "count": skipped.get("empty_loss_mask", 0),
            "sources": [outcome.source for outcome in left_out if outcome.reason == "empty_loss_mask"][:MAX_LISTED],
        },
        "tokens": _token_summary(samples, max_length),
        "truncation": {
            "policy": truncation,
            "max_seq_length": max_length,
            "truncated": sum(bool(flag) for flag in samples["truncated"]),
            "dropped": skipped.get("too_long", 0),
        },
    }


def _turns_and_lengths(stats: dict[str, Any], max_length: int, truncation: str) -> dict[str, Any]:
    """The assistant turns meant and trained, records cut, lengths before truncation and their warning."""
    before = lengths_before_truncation(stats["lengths"], max_length)
    return {
        "assistant_turns": stats.get("assistant_turns"),
        "assistant_turns_trained": stats.get("assistant_turns_trained"),
        "records_truncated": stats["records_cut"],
        "lengths_before_truncation": before,
        "warnings": _length_warnings(stats, before, max_length, truncation),
    }


def where_listed(total: int, what: str, report: Any) -> str:
    """Says which of ``total`` problems or records the report lists one by one (at most :data:`MAX_LISTED`).

    Args:
        total: How many there are.
        what: Their name in the singular (``problem``, ``skipped invalid record``).
        report: The report's path.

    Returns:
        ``every <what> is listed in <report>``, or ``the first 2000 of the <total> <what>s are listed
        in <report>`` with a word on the counts.
    """
    if total <= MAX_LISTED:
        return f"every {what} is listed in {report}"
    return f"the first {MAX_LISTED} of the {total} {what}s are listed in {report} (the counts per reason are complete)"


def _skip_counts(skipped: Counter[str]) -> dict[str, Any]:
    return {"skipped": dict(sorted(skipped.items())), "skipped_total": sum(skipped.values())}


def _skipped_records(skipped: list[Outcome]) -> list[dict[str, Any]]:
    """The first :data:`MAX_LISTED` skipped records with their reasons and problems."""
    return [
        {
            "source": outcome.source,
            "reason": outcome.reason,
            "problems": [f"{problem.field}: {problem.message}" for problem in outcome.problems],
        }
        for outcome in skipped[:MAX_LISTED]
    ]


def _token_summary(samples: dict[str, Any], max_length: int) -> dict[str, Any]:
    """The report's ``tokens``: totals, trainable share, mean and longest sample, and the length histogram."""
    lengths = [int(length) for length in samples["length"]]
    total_tokens = sum(lengths)
    trainable = int(sum(samples["trained_tokens"]))
    return {
        "total": total_tokens,
        "trainable": trainable,
        "trainable_share": round(trainable / total_tokens, 4) if total_tokens else 0.0,
        "mean_length": round(total_tokens / len(lengths), 1) if lengths else 0.0,
        "max_length": max(lengths, default=0),
        "histogram": _histogram(lengths, max_length),
    }


def report_markdown(report: dict[str, Any], skipped_shown: int | None = None, report_path: Any = None) -> str:
    """Renders the report as Markdown (``report.md``).

    Args:
        report: The report from :func:`build_report`.
        skipped_shown: List only this many skipped records (the studio), saying how many more
            ``report_path`` lists; None: every record the report holds (at most :data:`MAX_LISTED`).
        report_path: The ``report.json`` the rest are in (with ``skipped_shown``).

    Returns:
        Markdown text.
    """
    counts = report["counts"]
    lines = [
        "# Data report",
        "",
        f"- Input: `{report['input']}`",
        f"- Format: **{report['format']}** ({report['format_reason']})",
        f"- Mode: {report['mode']}",
        f"- Fingerprint: `{report.get('fingerprint', '')}`",
        "",
        "## Counts",
        "",
        "| read | kept | skipped | train | validation | test |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {counts['read']} | {counts['kept']} | {counts['skipped_total']} | "
        + " | ".join(str(counts["splits"].get(split, 0)) for split in ("train", "validation", "test"))
        + " |",
        "",
    ]
    warnings = [f"> **Warning:** {warning}" for warning in report.get("warnings", [])]
    lines = [lines[0], "", *[line for warning in warnings for line in (warning, "")], *lines[2:]]
    before = report.get("lengths_before_truncation") or {}
    if report.get("assistant_turns") is not None:
        lines += [
            f"- Training samples: {counts.get('samples', counts['kept'])}; assistant turns trained: "
            f"{report['assistant_turns_trained']} of {report['assistant_turns']}; records longer than the window: "
            f"{report.get('records_truncated', 0)}",
            f"- Lengths before truncation: p50 {before.get('p50')}, p90 {before.get('p90')}, p95 {before.get('p95')}, "
            f"p99 {before.get('p99')}, max {before.get('max')}; suggested data.max_seq_length "
            f"{before.get('suggested_max_seq_length')}",
            "",
        ]
    if counts["skipped"]:
        lines += ["| skip reason | records |", "|---|---:|"]
        lines += [f"| {reason} | {count} |" for reason, count in counts["skipped"].items()]
        lines.append("")
    quality = _quality_markdown(report) + _skipped_markdown(report, skipped_shown, report_path)
    return "\n".join([*lines, *sources_markdown(report), *quality]) + "\n"


def _quality_markdown(report: dict[str, Any]) -> list[str]:
    """The ``## Quality`` and ``## Tokens`` parts of ``report.md``."""
    tokens = report["tokens"]
    lines = [
        "## Quality",
        "",
        f"- Exact duplicates: {report['duplicates']['exact']}; normalized duplicates: {report['duplicates']['normalized']}",
        f"- Train/eval overlap (same prompt): validation {report['overlap']['validation']}, test {report['overlap']['test']}",
        f"- Records whose loss mask is empty: {report['empty_loss_mask']['count']}",
        f"- Truncation ({report['truncation']['policy']}, max {report['truncation']['max_seq_length']} tokens): "
        f"{report['truncation']['truncated']} truncated, {report['truncation']['dropped']} dropped",
        "",
        "## Tokens",
        "",
        f"- Total {tokens['total']}, trainable {tokens['trainable']} ({tokens['trainable_share']:.1%}), "
        f"mean length {tokens['mean_length']}, longest {tokens['max_length']}",
        "",
        "| length | examples |",
        "|---|---:|",
    ]
    lines += [f"| {row['from']}-{row['to']} | {row['count']} |" for row in tokens["histogram"]]
    return lines


def _skipped_markdown(report: dict[str, Any], shown: int | None, report_path: Any) -> list[str]:
    """The ``## Skipped records`` part: a table of the listed ones and, when there are more, how many."""
    records = report["skipped_records"][:shown] if shown is not None else report["skipped_records"]
    if not records:
        return []
    lines = ["", "## Skipped records", "", "| source | reason | problems |", "|---|---|---|"]
    for record in records:
        problems = "; ".join(record["problems"]).replace("|", "\\|")
        lines.append(f"| {record['source']} | {record['reason']} | {problems} |")
    total = report["counts"].get("skipped_total", len(report["skipped_records"]))
    if total > len(records):
        listed = (
            where_listed(total, "skipped record", f"`{report_path}`")  # a path in Markdown: as code
            if shown is not None
            else "the counts per reason above are complete"
        )
        lines += ["", f"The first {len(records)} of the {total} skipped records are shown; {listed}."]
    return lines


def build_failure_report(
    *, input_name: str, data_format: str | None, format_reason: str, outcomes: list[Outcome]
) -> dict[str, Any]:
    """The report of a strict run that stopped on invalid records (nothing was prepared).

    Args:
        input_name: What was read.
        data_format: Format used (None when it could not be chosen).
        format_reason: Why (or why not).
        outcomes: Conversion outcome of every record read.

    Returns:
        JSON-compatible data: ``counts`` (``read``, ``valid``, ``invalid`` per reason), the
        first problems (up to ``MAX_LISTED``) and their total.
    """
    invalid = [outcome for outcome in outcomes if outcome.conversation is None]
    problems = [str(problem) for outcome in invalid for problem in outcome.problems]
    return {
        "input": input_name,
        "format": data_format,
        "format_reason": format_reason,
        "mode": "strict",
        "status": "failed: invalid records in strict mode; nothing was prepared (--lenient skips and counts them)",
        "counts": {
            "read": len(outcomes),
            "valid": len(outcomes) - len(invalid),
            "invalid": dict(sorted(Counter(outcome.reason or "unknown" for outcome in invalid).items())),
            "invalid_total": len(invalid),
        },
        "problems_total": len(problems),
        "problems": problems[:MAX_LISTED],
    }


def lengths_before_truncation(lengths: list[int], max_length: int) -> dict[str, Any]:
    """Percentiles, histogram and a suggested ``max_seq_length`` of conversations as they are, before any cut.

    Args:
        lengths: Token length of every conversation.
        max_length: The configured ``data.max_seq_length`` (the histogram's scale).

    Returns:
        ``p50``, ``p90``, ``p95``, ``p99``, ``max``, ``suggested_max_seq_length`` (covers 95 % of the
        records, rounded up to a multiple of 64) and ``histogram``.
    """
    ordered = sorted(length for length in lengths if length > 0)
    if not ordered:
        return {"p50": 0, "p90": 0, "p95": 0, "p99": 0, "max": 0, "suggested_max_seq_length": None, "histogram": []}

    def percentile(share: float) -> int:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(len(ordered) * share) - 1))]

    p95 = percentile(0.95)
    return {
        "p50": percentile(0.50),
        "p90": percentile(0.90),
        "p95": p95,
        "p99": percentile(0.99),
        "max": ordered[-1],
        "suggested_max_seq_length": -(-p95 // 64) * 64,
        "histogram": _histogram(ordered, max(max_length, ordered[-1])),
    }


def _length_warnings(stats: dict[str, Any], before: dict[str, Any], max_length: int, truncation: str) -> list[str]:
    total = len(stats["lengths"])
    cut = stats["records_cut"]
    if not total or cut / total <= 0.10:
        return []
    what = {
        "split_turns": "split at turn boundaries into several samples (every answer is still trained)",
        "drop": "dropped",
    }.get(truncation, "truncated to one window (later answers are lost)")
    return [
        f"{cut} of {total} records ({cut / total:.0%}) are longer than data.max_seq_length={max_length} and were "
        f"{what}; 95 % of the records fit in {before['p95']} tokens (data.max_seq_length="
        f"{before['suggested_max_seq_length']} would cover them)"
    ]
