"""Comparison keys of a conversation: what deduplication, decontamination and the report compare.

The exact key is the roles and contents as they are; the normalized key ignores case,
punctuation and whitespace (near duplicates); the prompt key is the normalized prompt alone
(a held-out record whose prompt is in train leaks). The record pass hashes them
(:func:`core.infrastructure.data.record_pass.key_hash`).
"""

from __future__ import annotations

import unicodedata

from core.domain.records import Conversation


class _PunctuationAsSpace(dict):
    """``str.translate`` table: punctuation (Unicode category P*) becomes a space, other characters stay.

    Filled as characters are met, so each character's category is looked up once per process and
    the translation itself runs in C.
    """

    def __missing__(self, code: int) -> int:
        value = 32 if unicodedata.category(chr(code)).startswith("P") else code
        self[code] = value
        return value


_PUNCTUATION_AS_SPACE = _PunctuationAsSpace()

_ASCII_TABLE = bytes(
    32 if unicodedata.category(chr(code)).startswith("P") or chr(code).isspace() else code for code in range(128)
) + bytes(range(128, 256))
"""``bytes.translate`` table of ASCII: punctuation and every character ``str.split`` splits at become a space."""


def exact_key(conversation: Conversation) -> str:
    """Identity of a conversation: roles and contents as they are."""
    return "\x1e".join(f"{message.role}\x1f{message.content}" for message in conversation.messages)


def normalize_text(text: str) -> str:
    """Lower-cases, drops punctuation and collapses whitespace (for near-duplicate detection).

    Args:
        text: Any text.

    Returns:
        The normalized text.
    """
    if text.isascii():  # the same steps on bytes, a third faster (NFKC leaves ASCII as it is)
        return b" ".join(text.encode("ascii").lower().translate(_ASCII_TABLE).split()).decode("ascii")
    text = unicodedata.normalize("NFKC", text).lower().translate(_PUNCTUATION_AS_SPACE)
    return " ".join(text.split())  # whitespace runs collapsed and the ends stripped (str.isspace is re's \\s)


def normalized_key(conversation: Conversation) -> str:
    """Identity of a conversation up to case, punctuation and whitespace."""
    return "\x1e".join(f"{message.role}\x1f{normalize_text(message.content)}" for message in conversation.messages)


def prompt_key(conversation: Conversation) -> str:
    """Normalized identity of a conversation's prompt (every turn before the last answer)."""
    return "\x1e".join(
        f"{message.role}\x1f{normalize_text(message.content)}"
        for message in conversation.prompt_messages
        if message.role != "system"
    )


def comparison_keys(conversation: Conversation) -> tuple[str, str, str]:
    """:func:`exact_key`, :func:`normalized_key` and :func:`prompt_key` at once, every content normalized once.

    Args:
        conversation: The conversation.

    Returns:
        ``(exact, normalized, prompt)``.
    """
    messages = conversation.messages
    normalized = [f"{message.role}\x1f{normalize_text(message.content)}" for message in messages]
    last = max(index for index, message in enumerate(messages) if message.role == "assistant")
    prompt = [entry for entry, message in zip(normalized[:last], messages, strict=False) if message.role != "system"]
    return exact_key(conversation), "\x1e".join(normalized), "\x1e".join(prompt)
