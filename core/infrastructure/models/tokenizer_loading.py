"""Loading a tokenizer without torch or the model stack, for commands that only tokenize (``prepare-data``).

``transformers.AutoTokenizer`` imports the model configuration classes and with them torch (about
3 s and 1 GB before a 7-record file is read). A checkpoint's ``tokenizer_config.json`` names its
tokenizer class; that class alone is imported from transformers, which needs only ``tokenizers``.
Without a class name, or with one transformers does not have, ``AutoTokenizer`` decides as before.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loguru import logger

from core.domain.prompts import BUILTIN_TEMPLATES


def _named_tokenizer_class(path: Path) -> Any:
    """The tokenizer class the checkpoint's ``tokenizer_config.json`` names, or None."""
    config_file = path / "tokenizer_config.json"
    if not config_file.is_file():
        return None
    try:
        name = json.loads(config_file.read_text(encoding="utf-8")).get("tokenizer_class")
    except (OSError, ValueError):
        return None
    if not isinstance(name, str):
        return None
    import transformers

    try:
        return getattr(transformers, name)
    except AttributeError:
        return None


def load_tokenizer(path: Path | str, chat_template: str | None = None) -> Any:
    """Loads a tokenizer and makes it ready for training and batched generation.

    A missing pad token is set to EOS (labels are built from the loss mask, never from the pad
    id, so EOS is still trained). A ``chat_template`` argument (a builtin name or Jinja text)
    replaces the tokenizer's own.

    Args:
        path: Model directory.
        chat_template: ``None`` (keep the tokenizer's), ``"alpaca"``, ``"chatml"`` or Jinja text.

    Returns:
        The tokenizer (a ``transformers.PreTrainedTokenizerBase``).
    """
    tokenizer_class = _named_tokenizer_class(Path(path))
    if tokenizer_class is None:
        from transformers import AutoTokenizer

        tokenizer_class = AutoTokenizer
    tokenizer = tokenizer_class.from_pretrained(str(path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if chat_template is not None:
        tokenizer.chat_template = BUILTIN_TEMPLATES.get(chat_template, chat_template)
    if tokenizer.chat_template is None:
        logger.info("{} has no chat template; using the Alpaca format", path)
        tokenizer.chat_template = BUILTIN_TEMPLATES["alpaca"]
    return tokenizer
