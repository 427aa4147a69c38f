"""Format detection: which instruction format a file's records are in, decided by their field names."""

from __future__ import annotations

from collections import Counter
from typing import Any

from core.domain.errors import ConfigError
from core.infrastructure.data.formats import FORMATS


def _turn_keys(data: dict[str, Any]) -> set[str]:
    for key in ("conversations", "messages"):
        turns = data.get(key)
        if isinstance(turns, list):
            first = next((turn for turn in turns if isinstance(turn, dict)), None)
            if first is not None:
                return set(first)
    return set()


def formats_matching(data: dict[str, Any]) -> list[str]:
    """Lists the formats whose signature fields a record has.

    Args:
        data: A raw record.

    Returns:
        Matching format names (empty or several when the record is not clear-cut).
    """
    keys = set(data)
    matches = []
    if {"message_id", "parent_id", "text", "role"} <= keys:
        matches.append("oasst")
    turn_keys = _turn_keys(data)
    if turn_keys & {"from", "value"}:
        matches.append("sharegpt")
    elif {"role", "content"} <= turn_keys:
        matches.append("openai")
    if {"instruction", "response"} <= keys:
        matches.append("dolly")
    if {"instruction", "output"} <= keys:
        matches.append("alpaca")
    return matches


_SIGNATURES = {
    "oasst": "message_id, parent_id, role and text fields (OpenAssistant message trees)",
    "sharegpt": "a conversations/messages list of from/value turns",
    "openai": "a messages list of role/content turns",
    "dolly": "instruction and response fields",
    "alpaca": "instruction and output fields",
}


def detect_format_of(records: list[dict[str, Any]], name: str, sample: int = 200) -> tuple[str, str]:
    """Detects the format of records from their field names.

    Args:
        records: Raw records (only the first ``sample`` readable ones are looked at).
        name: The input's name, for messages.
        sample: How many records to inspect.

    Returns:
        ``(format, reason)``, the reason saying which fields decided it.

    Raises:
        ConfigError: If no format or more than one format fits; the message asks for ``--format``.
    """
    looked = [record for record in records if record][:sample]
    tally: Counter[str] = Counter()
    for record in looked:
        tally.update(formats_matching(record))
    allowed = ", ".join(FORMATS)
    if not tally:
        keys = sorted({key for record in looked for key in record})[:20]
        raise ConfigError(
            f"data.format: cannot detect the format of {name} (fields: {', '.join(keys) or 'none'}); "
            f"name it with --format / data.format ({allowed}; custom needs data.field_mapping)"
        )
    if len(tally) > 1:
        found = "; ".join(f"{fmt} ({count} record(s) with {_SIGNATURES[fmt]})" for fmt, count in tally.most_common())
        raise ConfigError(
            f"data.format: {name} is ambiguous: it fits {found}; name the format with --format / data.format ({allowed})"
        )
    data_format, count = tally.most_common(1)[0]
    return data_format, f"{data_format}: {count} of {len(looked)} inspected records have {_SIGNATURES[data_format]}"
