"""IFEval instruction verdicts, delegated to the reference implementation (if-verifiable).

if-verifiable (Apache-2.0) packages Google's IFEval instruction registry with the loose variant
(the response, without ``*``, without its first and/or last line). Each check is one call of its
``evaluate_instructions`` with a single instruction, so strict and loose verdicts are the reference's
own; this module adds only what the reference leaves to its caller:

- the English punkt_tab model that the sentence counter loads comes from ``assets/nltk_data``
  (nothing is downloaded at run time);
- langdetect, which ``language:response_language`` calls, is seeded (IFEval leaves it random);
- an empty answer, for which the reference returns no result, fails both ways;
- missing keyword arguments fail the check instead of letting the reference pick random ones.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NLTK_DATA_DIR = Path(__file__).resolve().parents[3] / "assets" / "nltk_data"
"""The bundled NLTK data (punkt_tab, English) that IFEval's sentence counter needs."""


@dataclass(frozen=True)
class InstructionVerdict:
    """The reference's verdicts on one instruction.

    Attributes:
        strict: The answer as given follows the instruction.
        loose: One of IFEval's loose variants of the answer follows it.
        detail: What went wrong when the instruction could not be checked, else a summary.
    """

    strict: bool
    loose: bool
    detail: str


@functools.cache
def _registry() -> dict[str, Any]:
    """The reference's IFEval registry, with the bundled NLTK data and a seeded langdetect."""
    import nltk
    from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT
    from langdetect import DetectorFactory

    if str(NLTK_DATA_DIR) not in nltk.data.path:
        nltk.data.path.insert(0, str(NLTK_DATA_DIR))
    DetectorFactory.seed = 0
    return INSTRUCTION_DICT


def instruction_ids() -> list[str]:
    """The instruction ids of the reference's IFEval registry.

    Returns:
        The ids, in the registry's order.
    """
    return list(_registry())


def _missing_arguments(instruction_id: str, arguments: dict[str, Any]) -> list[str]:
    checker = _registry()[instruction_id]
    parameters = list(inspect.signature(checker.build_description).parameters)[1:]
    return [name for name in parameters if arguments.get(name) is None]


def ifeval_verdict(instruction_id: str, arguments: Any, answer: str, prompt: str = "") -> InstructionVerdict:
    """Checks one IFEval instruction on an answer with the reference implementation.

    Args:
        instruction_id: An IFEval instruction id such as ``keywords:forbidden_words``.
        arguments: The instruction's keyword arguments (None for instructions without any).
        answer: The generated answer.
        prompt: The prompt (passed to the reference for instructions that read it).

    Returns:
        Strict and loose verdicts.
    """
    from if_verifiable.common import evaluate_instructions

    registry = _registry()
    arguments = dict(arguments or {})
    missing = _missing_arguments(instruction_id, arguments)
    if missing:
        return InstructionVerdict(False, False, f"missing arguments {missing}")
    results, _scores = evaluate_instructions(answer, [instruction_id], [arguments], prompt, registry)
    if not results:
        return InstructionVerdict(False, False, "empty answer")
    result = results[0]
    detail = f"strict {'pass' if result.strict_pass else 'fail'}, loose {'pass' if result.loose_pass else 'fail'}"
    return InstructionVerdict(bool(result.strict_pass), bool(result.loose_pass), detail)
