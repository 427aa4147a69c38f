"""Which writing system a text is in, and which metric tokenizers suit it (Unicode ranges only).

Used by ``evaluation.bleu_tokenizer = auto`` and ``evaluation.rouge_tokenizer = auto``: the script
is detected from the references' letters, so no language-identification model is needed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

_SCRIPT_RANGES: tuple[tuple[int, int, str], ...] = (
    (0x3040, 0x30FF, "japanese"),  # hiragana, katakana
    (0x31F0, 0x31FF, "japanese"),  # katakana phonetic extensions
    (0xFF66, 0xFF9F, "japanese"),  # half-width katakana
    (0x3400, 0x4DBF, "han"),
    (0x4E00, 0x9FFF, "han"),
    (0xF900, 0xFAFF, "han"),
    (0x20000, 0x2FA1F, "han"),
    (0xAC00, 0xD7AF, "hangul"),
    (0x1100, 0x11FF, "hangul"),
    (0x3130, 0x318F, "hangul"),
    (0x0E00, 0x0EFF, "thai"),  # Thai and Lao
    (0x1000, 0x109F, "thai"),  # Myanmar
    (0x1780, 0x17FF, "thai"),  # Khmer
)
"""(first, last, script) for the scripts whose tokenizer choice differs from the other non-Latin ones."""

UNSEGMENTED_SCRIPTS = frozenset({"han", "japanese", "thai"})
"""Scripts written without spaces between words."""


def character_script(character: str) -> str:
    """The script of one letter: latin, han, japanese, hangul, thai, or other (any other non-Latin).

    Args:
        character: One character (a letter or digit; callers skip punctuation and spaces).

    Returns:
        The script name.
    """
    code = ord(character)
    if code < 0x0250 or 0x1E00 <= code <= 0x1EFF:  # ASCII, Latin-1, Latin Extended-A/B and Additional
        return "latin"
    for first, last, script in _SCRIPT_RANGES:
        if first <= code <= last:
            return script
    return "other"


def dominant_script(texts: Iterable[str]) -> str:
    """The script of the texts: japanese when any kana appears, else the most frequent non-Latin script.

    Chinese characters also occur in Japanese text, so kana decide for Japanese; the texts count as
    non-Latin once a quarter of their letters are (a Chinese character is a word, a Latin letter is
    not), so a few foreign names in English text do not change the choice.

    Args:
        texts: The texts (usually the references).

    Returns:
        ``latin``, ``han``, ``japanese``, ``hangul``, ``thai`` or ``other``.
    """
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(character_script(character) for character in text if character.isalnum())
    letters = sum(counts.values())
    if counts["japanese"]:
        return "japanese"
    non_latin = [(count, script) for script, count in counts.items() if script != "latin"]
    if not non_latin or sum(count for count, _ in non_latin) * 4 < letters:
        return "latin"
    return max(non_latin)[1]


def is_ascii_only(texts: Iterable[str]) -> bool:
    """Whether every text is plain ASCII (where rouge-score's default tokenizer loses nothing).

    Args:
        texts: The texts.

    Returns:
        True when no character is outside ASCII.
    """
    return all(text.isascii() for text in texts)


def auto_bleu_tokenizer(texts: Iterable[str], mecab_available: bool) -> str:
    """Tokenizer for sacreBLEU suited to the script of the texts.

    Args:
        texts: The references.
        mecab_available: Whether sacreBLEU's ``ja-mecab`` tokenizer can be used.

    Returns:
        ``zh`` (Chinese), ``ja-mecab`` or ``char`` (Japanese), ``char`` (Thai, Lao, Khmer,
        Myanmar), ``intl`` (other non-Latin scripts) or ``13a`` (Latin).
    """
    script = dominant_script(texts)
    if script == "han":
        return "zh"
    if script == "japanese":
        return "ja-mecab" if mecab_available else "char"
    if script == "thai":
        return "char"
    return "13a" if script == "latin" else "intl"
