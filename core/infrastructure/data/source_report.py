"""The report's ``sources`` part: every source's counts up to the mix, as JSON, Markdown and a log line.

Per source: ``read = kept + skipped_total`` (skipped per reason: invalid records, ``duplicate``,
``max_samples``), ``kept = used + not_used``, and the mix holds ``used + repeated`` of its records.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from core.infrastructure.data.mixing import MixShare
from core.infrastructure.data.problems import Outcome


def source_entry(
    *,
    name: str,
    data_format: str,
    format_reason: str,
    weight: float,
    outcomes: list[Outcome],
    kept: int,
    left_out: list[Outcome],
    share: MixShare,
) -> dict[str, Any]:
    """One entry of the report's ``sources`` list.

    Args:
        name: The source as named in the settings.
        data_format: Its format.
        format_reason: Why that format.
        weight: Its weight.
        outcomes: Conversion outcome of every record read from it.
        kept: Valid records it offered to the mix.
        left_out: Valid records removed before the mix (duplicates, ``max_samples``).
        share: What it gave to the mix.

    Returns:
        JSON-compatible counts.
    """
    skipped = Counter(outcome.reason or "unknown" for outcome in outcomes if outcome.conversation is None)
    skipped.update(outcome.reason or "unknown" for outcome in left_out)
    return {
        "dataset": name,
        "format": data_format,
        "format_reason": format_reason,
        "weight": weight,
        "read": len(outcomes),
        "kept": kept,
        "skipped": dict(sorted(skipped.items())),
        "skipped_total": sum(skipped.values()),
        "requested": share.requested,
        "used": share.used,
        "not_used": len(share.not_used),
        "repeated": share.repeated,
    }


def sources_markdown(report: dict[str, Any]) -> list[str]:
    """The ``## Sources`` table of ``report.md`` (only for a mix of several sources).

    Args:
        report: The report, with ``sources`` and ``mix``.

    Returns:
        Markdown lines (none for one source).
    """
    sources = report.get("sources") or []
    if len(sources) < 2:
        return []
    mix = report.get("mix", {})
    lines = [
        "## Sources",
        "",
        f"- Mix: **{mix.get('strategy')}**"
        + (f", mix_size {mix['mix_size']}" if mix.get("mix_size") else "")
        + f"; {mix.get('records')} records in the mix ({mix.get('repeated', 0)} repeated)",
        "",
        "| source | format | weight | read | kept | skipped | asked | used | not used | repeated |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for source in sources:
        reasons = ", ".join(f"{reason} {count}" for reason, count in source["skipped"].items())
        asked = "" if source["requested"] is None else source["requested"]
        lines.append(
            f"| `{source['dataset']}` | {source['format']} | {source['weight']:g} | {source['read']} | "
            f"{source['kept']} | {source['skipped_total']}{f' ({reasons})' if reasons else ''} | {asked} | "
            f"{source['used']} | {source['not_used']} | {source['repeated']} |"
        )
    return [*lines, ""]


def sources_summary(report: dict[str, Any]) -> str | None:
    """The log line naming every source of a mix with its counts (None for one source).

    Args:
        report: The report, with ``sources`` and ``mix``.

    Returns:
        ``Sources (weighted): a.jsonl (alpaca, weight 0.75): read 40, kept 40, used 30, repeated 0; ...``.
    """
    sources = report.get("sources") or []
    if len(sources) < 2:
        return None
    parts = []
    for source in sources:
        reasons = ", ".join(f"{reason} {count}" for reason, count in source["skipped"].items())
        skipped = f" (skipped {source['skipped_total']}: {reasons})" if source["skipped_total"] else ""
        parts.append(
            f"{source['dataset']} ({source['format']}, weight {source['weight']:g}): read {source['read']}, "
            f"kept {source['kept']}{skipped}, used {source['used']}, repeated {source['repeated']}"
        )
    return f"Sources ({report.get('mix', {}).get('strategy')}): " + "; ".join(parts)
