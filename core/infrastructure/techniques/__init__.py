"""Technique implementations and THE registry of them, keyed like :data:`core.domain.techniques.TECHNIQUE_TRAITS`.

Adding a technique: a variant in the config union (:mod:`core.domain.config`), its traits in
:mod:`core.domain.techniques`, one module here and one line in :data:`TECHNIQUES`.
"""

from __future__ import annotations

from core.infrastructure.techniques.base import LoadOptions, Technique
from core.infrastructure.techniques.full import FullFinetuning
from core.infrastructure.techniques.lora import LoraFinetuning
from core.infrastructure.techniques.prefix import PrefixFinetuning
from core.infrastructure.techniques.qlora import QLoraFinetuning

TECHNIQUES: dict[str, Technique] = {
    "full": FullFinetuning(),
    "lora": LoraFinetuning(),
    "qlora": QLoraFinetuning(),
    "prefix": PrefixFinetuning(),
}
"""Technique name -> implementation (load options + model preparation)."""


def technique_for(name: str) -> Technique:
    """Returns the implementation of a technique.

    Args:
        name: ``technique.name`` from the config.

    Returns:
        The technique.

    Raises:
        KeyError: If no implementation is registered; the message lists the known ones.
    """
    try:
        return TECHNIQUES[name]
    except KeyError:
        raise KeyError(f"no implementation for technique {name!r}; registered: {sorted(TECHNIQUES)}") from None


__all__ = ["TECHNIQUES", "LoadOptions", "Technique", "technique_for"]
