"""Records this text-only supervised pipeline cannot use, refused by name instead of losing data silently.

* Media fields (``images``, ``audios``, ``videos`` and their singulars, as LLaMA-Factory's
  multimodal datasets have them): training on the text alone would teach answers about pictures
  the model never sees.
* Preference pairs (``chosen`` and ``rejected``): they belong to a preference trainer (DPO, ORPO);
  taking one side would discard half the signal. Mapping ``chosen`` explicitly
  (``data.field_mapping`` with the custom format) is the way to train on the chosen answers.
"""

from __future__ import annotations

from typing import Any

from core.infrastructure.data.problems import PREFERENCE_DATA, UNSUPPORTED_MEDIA, Problem

MEDIA_FIELDS = ("images", "image", "audios", "audio", "videos", "video")
PREFERENCE_FIELDS = ("chosen", "rejected")


def unsupported_problems(data: dict[str, Any], source: str, data_format: str) -> list[Problem]:
    """The reasons a record cannot be used at all (empty when it can).

    Args:
        data: A raw record.
        source: Its ``file:line``.
        data_format: The chosen format (``custom`` maps fields explicitly, so preference fields are allowed).

    Returns:
        Problems naming the field and what to do.
    """
    problems = []
    for name in MEDIA_FIELDS:
        value = data.get(name)
        if value not in (None, "", [], {}):
            problems.append(
                Problem(
                    source,
                    name,
                    f"text-only finetuning cannot use {name}: remove the `{name}` field (and any <image>/<audio>/"
                    "<video> placeholders in the text) or use a vision-language training pipeline",
                    UNSUPPORTED_MEDIA,
                )
            )
    if data_format != "custom" and all(name in data for name in PREFERENCE_FIELDS):
        problems.append(
            Problem(
                source,
                "chosen/rejected",
                "preference data (chosen/rejected) is not supervised finetuning data; use a preference trainer "
                "(DPO/ORPO), or train on the chosen answers with --format custom and data.field_mapping "
                '(e.g. {"instruction": "prompt", "output": "chosen"})',
                PREFERENCE_DATA,
            )
        )
    return problems
