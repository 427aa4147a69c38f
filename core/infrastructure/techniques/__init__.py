"""Technique implementations: ``core/infrastructure/techniques/<name>.py`` for each registered technique.

The registry of techniques is :mod:`core.domain.techniques`; the implementation of technique
``<name>`` is the ``IMPLEMENTATION`` object of the module of the same name here, found by that
name, so adding a technique adds one module here and nothing else in this package.
"""

from __future__ import annotations

import importlib

from core.domain.techniques import technique_names, technique_spec
from core.infrastructure.techniques.base import LoadOptions, Technique


def technique_for(name: str) -> Technique:
    """Returns the implementation of a technique.

    Args:
        name: ``technique.name`` from the config.

    Returns:
        The technique.

    Raises:
        KeyError: If the technique is not registered or has no implementation; the message lists the known ones.
    """
    technique_spec(name)  # unknown names fail with the list of registered techniques
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as error:
        if error.name != f"{__name__}.{name}":
            raise
        raise KeyError(f"no implementation for technique {name!r} ({__name__}.{name} is missing)") from None
    return module.IMPLEMENTATION


def implementations() -> dict[str, Technique]:
    """Every registered technique's implementation, keyed by name (registry order)."""
    return {name: technique_for(name) for name in technique_names()}


__all__ = ["LoadOptions", "Technique", "implementations", "technique_for"]
