"""Looking at an input before preparing it (the studio's Data tab): its format, its columns, a preview.

Nothing here tokenizes or fails on bad records; :mod:`core.application.prepare_data` does the real work.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.application.prepare_data import with_system_prompt
from core.domain.config import Settings
from core.infrastructure.data.convert import choose_format, convert_records
from core.infrastructure.data.sources import InputSource, resolve_input

COLUMN_SAMPLE = 200
"""Records looked at to list an input's columns."""


def input_columns(path: str | Path) -> list[str]:
    """The field names of an input's first records, in first-seen order (what a mapping can name).

    Args:
        path: ``demo``, a local file or directory, or a Hub dataset id.

    Returns:
        Column names (none for a known Hub dataset, which is not read here).
    """
    source = resolve_input(path)
    if _known_hub(source):
        return []
    columns: dict[str, None] = {}
    for record in source.read()[:COLUMN_SAMPLE]:
        columns.update(dict.fromkeys(record.data))
    return list(columns)


def detect_format(path: str | Path) -> tuple[str, str]:
    """Detects the format of an input and explains why.

    Args:
        path: ``demo``, a local file or directory, or a Hub dataset id.

    Returns:
        ``(format, reason)``.

    Raises:
        ConfigError: When the format is ambiguous or unrecognised (name it explicitly then).
    """
    source = resolve_input(path)
    records = [] if _known_hub(source) else source.read()
    return choose_format(records, source.name, "auto", None, source.hub_id)


def _known_hub(source: InputSource) -> bool:
    from core.infrastructure.data.formats import HUB_FORMATS

    return (source.hub_id or "").lower() in HUB_FORMATS


def preview_records(
    settings: Settings, input_path: str | Path, data_format: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Converts the first records of an input for display, without tokenizing or failing on bad records.

    Args:
        settings: Settings (``data.format``, ``data.field_mapping``, ``data.oasst_language``, ``data.system_prompt``).
        input_path: ``demo``, a path or a Hub id.
        data_format: Format to use (default: ``data.format``, ``auto`` detects).
        limit: Most records returned.

    Returns:
        One mapping per record: ``source``, ``format``, ``system``, ``prompt`` (last user turn),
        ``response`` (last answer), ``turns``, ``messages`` (role/content list), ``problems``
        (``field: problem`` lines joined by ``; ``, empty when valid).

    Raises:
        ConfigError: When the format cannot be determined.
    """
    data = settings.data
    source = resolve_input(input_path, data.split)
    records = source.read()
    chosen_format, _reason = choose_format(
        records, source.name, data_format or data.format, data.field_mapping, source.hub_id
    )
    if chosen_format != "oasst":
        records = records[:limit]
    rows = []
    for outcome in convert_records(records, chosen_format, data.field_mapping, data.oasst_language)[:limit]:
        conversation = outcome.conversation
        if conversation is not None:
            conversation = with_system_prompt(conversation, data.system_prompt)
        messages = [message.model_dump() for message in conversation.messages] if conversation else []
        rows.append(
            {
                "source": outcome.source,
                "format": chosen_format,
                "system": next((m["content"] for m in messages if m["role"] == "system"), ""),
                "prompt": next((m["content"] for m in reversed(messages) if m["role"] == "user"), ""),
                "response": conversation.reference if conversation else "",
                "turns": len(messages),
                "messages": messages,
                "problems": "; ".join(f"{problem.field}: {problem.message}" for problem in outcome.problems)
                or (outcome.reason or ""),
            }
        )
    return rows


def data_report_markdown(report: dict[str, Any], skipped_shown: int | None = None, report_path: Any = None) -> str:
    """The Markdown data report (what ``prepare-data`` writes as ``report.md``).

    Args:
        report: ``PreparedData.report``.
        skipped_shown: List only this many skipped records (the rest are counted, and in ``report_path``).
        report_path: The prepared data's ``report.json``.

    Returns:
        Markdown text.
    """
    from core.infrastructure.data.report import report_markdown

    return report_markdown(report, skipped_shown, report_path)


@dataclass(frozen=True)
class TokenView:
    """One example as the model sees it: each token's text and whether the loss trains on it.

    Attributes:
        pieces: ``(token text, trained)`` in order.
        trained_tokens: Tokens the loss is computed on.
        truncated: True when the example was cut at ``max_seq_length``.
    """

    pieces: list[tuple[str, bool]]
    trained_tokens: int
    truncated: bool


@functools.lru_cache(maxsize=4)
def _tokenizer(model_name: str, model_cache: str, chat_template: str) -> Any:
    from core.infrastructure.models.resolve import resolve_model
    from core.infrastructure.models.tokenizer_loading import load_tokenizer

    resolved = resolve_model(model_name, Path(model_cache))
    return load_tokenizer(resolved.path, chat_template=chat_template)


def token_view(settings: Settings, conversation: Any, chat_template: str) -> TokenView | None:
    """Tokenizes one conversation exactly as training does (template, truncation, loss mask).

    Args:
        settings: Settings (model, data).
        conversation: A prepared :class:`~core.domain.records.Conversation`.
        chat_template: The prepared data's chat template.

    Returns:
        The view, or None when the example has nothing to train on (it is dropped).
    """
    from core.infrastructure.data.tokenize import IGNORE_INDEX, tokenize_conversation

    tokenizer = _tokenizer(settings.model.name, str(settings.paths.model_cache), chat_template)
    example = tokenize_conversation(
        tokenizer,
        conversation,
        max_length=settings.data.max_seq_length,
        train_on_prompt=settings.data.train_on_prompt,
        truncation="truncate",
    )
    if example is None:
        return None
    pieces = [
        (tokenizer.decode([token_id]), label != IGNORE_INDEX)
        for token_id, label in zip(example.input_ids, example.labels, strict=True)
    ]
    return TokenView(pieces=pieces, trained_tokens=example.trained_tokens, truncated=example.truncated)
