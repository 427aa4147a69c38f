"""Values derived once per tokenizer and kept as long as it lives (byte-length tables, prefix encoders, template keys)."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

Value = TypeVar("Value")

_ABSENT = object()


class PerTokenizer(weakref.WeakKeyDictionary):
    """A value per tokenizer, built on first use (None is kept too: "not available for this tokenizer")."""

    def get_or_build(self, tokenizer: Any, build: Callable[[], Value]) -> Value:
        """The tokenizer's value, built by ``build`` the first time it is asked for.

        Args:
            tokenizer: The transformers tokenizer (the value is dropped with it).
            build: Makes the value.

        Returns:
            The value.
        """
        value = self.get(tokenizer, _ABSENT)
        if value is _ABSENT:
            value = build()
            self[tokenizer] = value
        return value


class TemplateKey(NamedTuple):
    """What a probe of a tokenizer's chat template depends on (probe results are kept per key).

    Attributes:
        chat_template: The template's text.
        eos_token: The EOS token's text.
        bos_token: The BOS token's text.
        kind: The tokenizer's class name.
    """

    chat_template: str | None
    eos_token: str | None
    bos_token: str | None
    kind: str


_TEMPLATE_KEYS = PerTokenizer()


def template_key(tokenizer: Any) -> TemplateKey:
    """The tokenizer's :class:`TemplateKey`, read again only when its chat template is replaced.

    Reading a special token of a transformers 5 tokenizer costs about a microsecond, and every
    record asked for two or three of them (1-2 % of a record's preparation).

    Args:
        tokenizer: The transformers tokenizer.

    Returns:
        The key.
    """
    template = tokenizer.chat_template
    key = _TEMPLATE_KEYS.get(tokenizer)
    if key is None or key.chat_template is not template:
        key = TemplateKey(template, tokenizer.eos_token, tokenizer.bos_token, type(tokenizer).__name__)
        _TEMPLATE_KEYS[tokenizer] = key
    return key
