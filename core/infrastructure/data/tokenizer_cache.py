"""Values derived once per tokenizer and kept as long as it lives (byte-length tables, prefix encoders)."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, TypeVar

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
