"""Validation errors as one ``field: problem`` line per problem, naming fields as the YAML writes them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from core.domain.techniques import technique_specs


def format_validation_error(error: ValidationError) -> str:
    """Formats a pydantic error as one line per problem: ``field: problem``.

    Args:
        error: The validation error.

    Returns:
        Lines such as ``training.learning_rate: Input should be greater than 0 (got -1)``.
    """
    lines = []
    for problem in error.errors():
        parts = [str(part) for part in problem["loc"] if not str(part).startswith("function-")]
        if parts[:1] == ["technique"] and len(parts) > 2 and parts[1] in TECHNIQUE_VARIANTS:
            parts = ["technique", *parts[2:]]  # technique.rank, not technique.lora.rank
        location = _dotted(parts, problem["loc"])
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "union_tag_invalid":
            location = location or "technique.name"
            got = problem.get("input", {}).get("name") if isinstance(problem.get("input"), dict) else None
            allowed = problem.get("ctx", {}).get("expected_tags", "")
            message = f"unknown technique {got!r}; allowed values: {allowed}"
        elif problem["type"] == "extra_forbidden" and len(problem["loc"]) == 3 and problem["loc"][0] == "technique":
            location, message = _foreign_technique_field(str(problem["loc"][1]), str(problem["loc"][2]))
        elif "input" in problem and not isinstance(problem["input"], dict | list):
            message = f"{message} (got {problem['input']!r})"
        if location and message.startswith(f"{location}."):
            location = ""  # the message names the field itself (a model validator's rule)
        lines.append(f"{location}: {message}" if location else message)
    return "\n".join(lines)


def _dotted(parts: list[str], location: tuple[Any, ...]) -> str:
    """Joins a problem's location as written in YAML paths: ``data.datasets[1].weight``."""
    indexes = {str(part) for part in location if isinstance(part, int)}
    text = ""
    for part in parts:
        text += f"[{part}]" if part in indexes and part.isdigit() else f".{part}" if text else part
    return text


TECHNIQUE_VARIANTS: dict[str, type[BaseModel]] = {spec.name: spec.settings for spec in technique_specs()}


def _foreign_technique_field(technique: str, key: str) -> tuple[str, str]:
    owners = [name for name, variant in TECHNIQUE_VARIANTS.items() if key in variant.model_fields]
    if not owners:
        return f"technique.{key}", f"not a setting of any technique (technique is {technique!r})"
    return (
        f"technique.{key}",
        f"does not apply to technique {technique!r}; it is a setting of {', '.join(owners)} "
        f"(choose e.g. technique={owners[0]} or drop {key})",
    )
