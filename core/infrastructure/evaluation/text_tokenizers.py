"""Tokenizer choices for ROUGE and BLEU: a ROUGE tokenizer that keeps every script, sentence splitting.

rouge-score's default tokenizer keeps only ``[a-z0-9]``, so an identical Chinese, Arabic or
Cyrillic pair scores 0 and "café" loses its "é". :class:`UnicodeRougeTokenizer` keeps Unicode
letters, digits and combining marks (lowercased, NFC), splits Chinese, Japanese and Thai-family
text per character, and gives the same tokens as rouge-score's default on ASCII text.
"""

from __future__ import annotations

import importlib.util
import re
import unicodedata

from core.domain.errors import ConfigError
from core.domain.text_scripts import UNSEGMENTED_SCRIPTS, auto_bleu_tokenizer, character_script, is_ascii_only

BLEU_TOKENIZERS = ("13a", "intl", "zh", "ja-mecab", "char")
ROUGE_TOKENIZERS = ("default", "unicode")

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])\s*|\n+")


class UnicodeRougeTokenizer:
    """rouge-score tokenizer (``.tokenize(text)``) that keeps every script.

    Words are runs of Unicode letters, digits and combining marks; Chinese, Japanese, Thai, Lao,
    Khmer and Myanmar characters (with their combining marks) are one token each, since those
    scripts do not put spaces between words.
    """

    def tokenize(self, text: str) -> list[str]:
        """Splits a text into lowercased tokens.

        Args:
            text: The text.

        Returns:
            The tokens.
        """
        tokens: list[str] = []
        current: list[str] = []
        current_unsegmented = False
        for character in unicodedata.normalize("NFC", text.lower()):
            category = unicodedata.category(character)
            if category[0] == "M" and current:
                current.append(character)
                continue
            if category[0] not in "LN":
                current_unsegmented = _flush(tokens, current)
                continue
            unsegmented = character_script(character) in UNSEGMENTED_SCRIPTS
            if unsegmented or current_unsegmented:
                _flush(tokens, current)
            current.append(character)
            current_unsegmented = unsegmented
        _flush(tokens, current)
        return tokens


def _flush(tokens: list[str], current: list[str]) -> bool:
    """Ends the current token (if any); returns False (the next token starts fresh)."""
    if current:
        tokens.append("".join(current))
        current.clear()
    return False


def resolve_rouge_tokenizer(name: str, texts: list[str]) -> str:
    """The ROUGE tokenizer for ``evaluation.rouge_tokenizer`` (``auto`` resolved from the texts).

    Args:
        name: ``default``, ``unicode`` or ``auto`` (default for ASCII-only texts, unicode otherwise).
        texts: The predictions and references (for ``auto``).

    Returns:
        ``default`` or ``unicode``.

    Raises:
        ConfigError: If the name is unknown.
    """
    if name == "auto":
        return "default" if is_ascii_only(texts) else "unicode"
    if name not in ROUGE_TOKENIZERS:
        raise ConfigError(f"evaluation.rouge_tokenizer={name!r} is not one of default, unicode, auto")
    return name


def rouge_tokenizer(name: str) -> UnicodeRougeTokenizer | None:
    """The tokenizer object for a resolved ROUGE tokenizer name (None: rouge-score's default).

    Args:
        name: ``default`` or ``unicode``.

    Returns:
        A tokenizer for ``RougeScorer(tokenizer=...)``, or None for rouge-score's default.
    """
    return UnicodeRougeTokenizer() if name == "unicode" else None


def mecab_available() -> bool:
    """Whether sacreBLEU's ``ja-mecab`` tokenizer can run (mecab-python3 and ipadic installed)."""
    return all(importlib.util.find_spec(module) is not None for module in ("MeCab", "ipadic"))


def resolve_bleu_tokenizer(name: str, references: list[str]) -> str:
    """The sacreBLEU tokenizer for ``evaluation.bleu_tokenizer`` (``auto`` resolved from the references).

    Args:
        name: ``13a``, ``intl``, ``zh``, ``ja-mecab``, ``char`` or ``auto``.
        references: Reference texts (for ``auto``).

    Returns:
        A sacreBLEU tokenizer name.

    Raises:
        ConfigError: If the name is unknown, or ``ja-mecab`` is chosen but MeCab is not installed.
    """
    if name == "auto":
        return auto_bleu_tokenizer(references, mecab_available())
    if name not in BLEU_TOKENIZERS:
        raise ConfigError(f"evaluation.bleu_tokenizer={name!r} is not one of {', '.join(BLEU_TOKENIZERS)}, auto")
    if name == "ja-mecab" and not mecab_available():
        raise ConfigError(
            "evaluation.bleu_tokenizer=ja-mecab needs MeCab: pip install 'sacrebleu[ja]' "
            "(mecab-python3 and ipadic), or choose char or auto"
        )
    return name


def split_sentences(text: str) -> str:
    """One sentence per line, as rouge-score's rougeLsum expects (split after . ! ? 。 ！ ？ and at newlines).

    Args:
        text: The text.

    Returns:
        The sentences joined with newlines.
    """
    return "\n".join(part.strip() for part in _SENTENCE_END.split(text) if part.strip())
