"""The per-record work of ``prepare-data``, done once per record in one pass on every core.

For a batch of records (:mod:`core.infrastructure.data.pass_workers`) the pass converts and
validates each record (the problems and skip reasons of :func:`convert_record`), adds the system
prompt and ``data.train_on``, hashes what deduplication, decontamination and the report compare
(64-bit hashes of the keys in :mod:`core.infrastructure.data.comparison_keys`), and tokenizes the record
into its training samples (:func:`tokenize_record`). Everything it returns is a column of the
pass's Arrow table on disk; the main process keeps only hashes and counts.
"""

from __future__ import annotations

import io
import json
import pickle
from dataclasses import dataclass
from typing import Any, NamedTuple

import pyarrow as pa

from core.domain.records import Conversation, Message
from core.infrastructure.data.comparison_keys import comparison_keys, exact_key, normalized_key
from core.infrastructure.data.convert import convert_record
from core.infrastructure.data.formats import record_converter
from core.infrastructure.data.problems import Outcome, Problem
from core.infrastructure.data.readers import RawRecord
from core.infrastructure.data.turn_split import tokenize_record

PASS_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("reason", pa.string()),
        ("problems", pa.string()),
        ("split", pa.string()),
        ("conversation", pa.string()),
        ("dedup_key", pa.int64()),
        ("exact_key", pa.int64()),
        ("normalized_key", pa.int64()),
        ("prompt_key", pa.int64()),
        ("length", pa.int64()),
        ("assistant_turns", pa.int64()),
        ("assistant_turns_trained", pa.int64()),
        ("cut", pa.bool_()),
        ("token_reason", pa.string()),
        ("template_error", pa.string()),
        ("input_ids", pa.list_(pa.list_(pa.int32()))),  # as the tokenized splits keep them
        ("labels", pa.list_(pa.list_(pa.int32()))),  # token ids or -100; the splits widen them to int64
        ("trained_tokens", pa.list_(pa.int64())),
        ("truncated", pa.list_(pa.bool_())),
    ]
)
"""Columns of the pass (the Arrow schema of its files): a record's outcome, hashes, token counts and samples."""


class PassRow(NamedTuple):
    """One record's row of the pass, in the order of :data:`PASS_SCHEMA` (the names of its columns)."""

    source: str
    reason: str | None
    problems: str | None
    split: str | None
    conversation: str | None
    dedup_key: int
    exact_key: int
    normalized_key: int
    prompt_key: int
    length: int
    assistant_turns: int
    assistant_turns_trained: int
    cut: bool
    token_reason: str | None
    template_error: str | None
    input_ids: list[list[int]]
    labels: list[list[int]]
    trained_tokens: list[int]
    truncated: list[bool]


_SKIPPED_ROW = PassRow("", None, None, None, None, 0, 0, 0, 0, 0, 0, 0, False, None, None, [], [], [], [])
"""The row of a record left out before tokenization (its outcome's fields replaced)."""


class _SpoolUnpickler(pickle.Unpickler):
    """Reads back only what :meth:`RecordStore.spool` writes: this project's record classes and builtins."""

    def find_class(self, module: str, name: str) -> Any:
        """Allows ``core.*`` classes and plain builtin containers; refuses anything else."""
        if module.startswith("core.") or (module == "builtins" and name in _BUILTINS):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"spool files hold no {module}.{name}")


_BUILTINS = frozenset({"dict", "list", "tuple", "set", "frozenset", "str", "int", "float", "bool", "bytes"})


def dump_payload(item: Any) -> bytes:
    """One record for the spool: a raw record as the tuple of its fields, anything else (an outcome) pickled whole.

    A tuple of builtins pickles four times faster than the dataclass and unpickles without a class
    lookup (200k Alpaca records: 0.3 s less in the main process, 0.15 s less per worker).
    """
    if type(item) is RawRecord:
        item = (item.data, item.source, item.split, item.problems)
    return pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)


def load_payload(payload: bytes) -> Any:
    """One spooled record (:func:`dump_payload`), unpickled allowing only this project's classes (never code)."""
    item = _SpoolUnpickler(io.BytesIO(payload)).load()
    return RawRecord(*item) if type(item) is tuple else item


@dataclass(frozen=True)
class PassSettings:
    """The settings the per-record work depends on.

    Attributes:
        data_format: The source's format (records of ``oasst`` arrive converted).
        field_mapping: ``field_mapping`` of the source.
        system_prompt: ``data.system_prompt``.
        train_on: ``data.train_on``.
        max_length: ``data.max_seq_length``.
        train_on_prompt: ``data.train_on_prompt``.
        truncation: ``data.truncation``.
        deduplicate: ``data.deduplicate`` (which key ``dedup_key`` hashes).
    """

    data_format: str
    field_mapping: dict[str, str] | None
    system_prompt: str | None
    train_on: str
    max_length: int
    train_on_prompt: bool
    truncation: str
    deduplicate: str


def key_hash(key: str) -> int:
    """A signed 64-bit hash of a comparison key (what the main process keeps instead of the text).

    Python's own string hash (64-bit SipHash-1-3, keyed per process): the pass's workers are forked
    from the main process and share its key, and the hashes live only as long as the run. A tenth
    of blake2b's cost (a 1.2 kB key: 0.3 against 3 us; four keys per record).
    """
    return hash(key)


def with_system_prompt(conversation: Conversation, system_prompt: str | None) -> Conversation:
    """Adds ``data.system_prompt`` to a conversation that has no system turn.

    Args:
        conversation: The conversation.
        system_prompt: ``data.system_prompt`` (None or empty: nothing is added).

    Returns:
        The conversation, with the system turn first.
    """
    if not system_prompt or conversation.messages[0].role == "system":
        return conversation
    messages = [Message(role="system", content=system_prompt), *conversation.messages]
    return conversation.model_copy(update={"messages": messages})


def train_last_assistant_only(conversation: Conversation) -> Conversation:
    """``data.train_on=last_assistant``: earlier assistant turns become context (as in TRL's and axolotl's option)."""
    last = max(index for index, message in enumerate(conversation.messages) if message.role == "assistant")
    messages = [
        message.model_copy(update={"trained": False}) if message.role == "assistant" and index != last else message
        for index, message in enumerate(conversation.messages)
    ]
    return conversation.model_copy(update={"messages": messages})


class RecordPass:
    """The per-record work, run on batches of records by the pass's workers (:mod:`core.infrastructure.data.pass_workers`).

    Args:
        tokenizer: Tokenizer with the chat template to train with.
        settings: The settings the work depends on.
    """

    def __init__(self, tokenizer: Any, settings: PassSettings) -> None:
        self.tokenizer = tokenizer
        self.settings = settings
        self._convert: Any = None

    def table(self, items: list[Any]) -> pa.Table:
        """Converts, validates, hashes and tokenizes records.

        Args:
            items: Raw records, or converted outcomes.

        Returns:
            One row per record with every column of :data:`PASS_SCHEMA`, built column by column
            (``datasets``' writer would check and convert every nested list again: 3x the time) from
            the records' :class:`PassRow` tuples (a dict per row and an append per value took 5 % of
            a generated Alpaca record's time).
        """
        rows = [self.record_row(item) for item in items]
        columns = zip(*rows, strict=True) if rows else ([] for _ in PASS_SCHEMA)
        arrays = [pa.array(values, type=field.type) for values, field in zip(columns, PASS_SCHEMA, strict=True)]
        return pa.Table.from_arrays(arrays, schema=PASS_SCHEMA)

    def record_row(self, item: Any) -> PassRow:
        """The pass's row of one record: its outcome, and for a valid record its hashes and samples."""
        outcome = item if isinstance(item, Outcome) else self._converted(item)
        problems = [[problem.source, problem.field, problem.message, problem.reason] for problem in outcome.problems]
        problems_json = json.dumps(problems) if problems else None
        if outcome.conversation is None:
            return _SKIPPED_ROW._replace(
                source=outcome.source, reason=outcome.reason, problems=problems_json, split=outcome.split
            )
        return self._valid_row(outcome.conversation, (outcome.source, None, problems_json, outcome.split))

    def _converted(self, record: Any) -> Outcome:
        if self._convert is None:
            self._convert = record_converter(self.settings.data_format, self.settings.field_mapping)
        return convert_record(record, self._convert, self.settings.data_format)

    def _valid_row(self, conversation: Conversation, outcome: tuple[str, None, str | None, str | None]) -> PassRow:
        settings = self.settings
        final = with_system_prompt(conversation, settings.system_prompt)
        if settings.train_on == "last_assistant":
            final = train_last_assistant_only(final)
        exact, normalized, prompt = comparison_keys(final)
        hashes = {"exact": key_hash(exact), "normalized": key_hash(normalized)}
        dedup_key = hashes.get(settings.deduplicate, 0)
        if settings.deduplicate in hashes and len(final.messages) != len(
            conversation.messages
        ):  # without system prompt
            dedup = {"exact": exact_key, "normalized": normalized_key}[settings.deduplicate]
            dedup_key = key_hash(dedup(conversation))
        keys = (final.model_dump_json(), dedup_key, hashes["exact"], hashes["normalized"], key_hash(prompt))
        try:
            samples = tokenize_record(
                self.tokenizer, final, settings.max_length, settings.train_on_prompt, settings.truncation
            )
        except ValueError as error:  # a template that is not prefix-stable: a settings problem, raised by the caller
            return PassRow(*outcome, *keys, *_SKIPPED_ROW[len(outcome) + len(keys) :])._replace(
                template_error=str(error)
            )
        examples = samples.examples
        return PassRow(
            *outcome,
            *keys,
            samples.length,
            samples.assistant_turns,
            samples.assistant_turns_trained,
            samples.cut,
            None if examples else samples.reason,
            None,
            [example.input_ids for example in examples],
            [example.labels for example in examples],
            [example.trained_tokens for example in examples],
            [example.truncated for example in examples],
        )


def problems_of(column_value: str | None) -> list[Problem]:
    """The problems of a record from the pass's ``problems`` column.

    Args:
        column_value: The JSON list written by the pass, or None.

    Returns:
        The problems, in order.
    """
    if not column_value:
        return []
    return [Problem(*fields) for fields in json.loads(column_value)]
