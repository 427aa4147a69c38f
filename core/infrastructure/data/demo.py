"""The bundled demo dataset: short instruction tasks whose answers can be checked without a judge.

Five tasks with one fixed answer format each, so exact match is meaningful: JSON extraction
(``{"name": ..., "age": ...}``), unit conversion (``5000 m``), date reformatting
(``05/03/2024``), number sorting (``3, 7, 19, 42``) and word-order reversal
(``rain, cloud, sun``). The embedded SmolLM2-135M-Instruct answers in free prose before training
(exact match near zero) and picks the formats up within a short LoRA run.

Every record carries ``split`` (train/validation/test), ``task`` and ``checks`` (CheckSpec
kinds: ``valid_json``, ``json_keys``, ``regex``, ``exact_match``: this project's own checks, not IFEval's). Regenerate the bundled files
(byte-identical, the generator is seeded) with::

    python -m core.infrastructure.data.demo [--output assets/demo]
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEMO_DIR = Path(__file__).resolve().parents[3] / "assets" / "demo"
"""Where the bundled demo dataset lives."""

DEMO_FILES = {"alpaca": "demo_alpaca.jsonl", "sharegpt": "demo_sharegpt.jsonl"}
"""Demo variants and their file names."""

DEMO_SEED = 20240305
SPLIT_SIZES = {"train": 2600, "validation": 200, "test": 200}

_FIRST = [
    "Maria", "James", "Aisha", "Lukas", "Sofia", "Kenji", "Elena", "Omar", "Chloe", "Mateo",
    "Priya", "Noah", "Ingrid", "Diego", "Hana", "Samuel", "Fatima", "Oliver", "Yuki", "Amara",
    "Leon", "Nadia", "Victor", "Zoe", "Ravi", "Clara", "Tomas", "Mei", "Hugo", "Lena",
]  # fmt: skip
_LAST = [
    "Lopez", "Smith", "Khan", "Weber", "Rossi", "Tanaka", "Petrova", "Haddad", "Martin", "Silva",
    "Patel", "Brown", "Larsen", "Garcia", "Kim", "Okafor", "Nowak", "Dubois", "Sato", "Mensah",
]  # fmt: skip
_JOBS = ["nurse", "teacher", "pilot", "baker", "engineer", "lawyer", "farmer", "chemist", "painter", "librarian"]
_CITIES = ["Lyon", "Oslo", "Lima", "Osaka", "Cairo", "Dublin", "Porto", "Seoul", "Quito", "Accra", "Turin", "Hanoi"]
_WORDS = [
    "apple", "river", "cloud", "stone", "tiger", "lemon", "candle", "forest", "window", "garden",
    "rocket", "pencil", "ocean", "violin", "bridge", "mirror", "desert", "planet", "harbor", "meadow",
]  # fmt: skip
_UNITS = [("km", "m", 1000), ("kg", "g", 1000), ("m", "cm", 100), ("L", "mL", 1000), ("cm", "mm", 10)]


def _json_extract(rng: random.Random) -> tuple[str, str, str, list[dict[str, Any]]]:
    name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
    age = rng.randint(18, 90)
    job, city = rng.choice(_JOBS), rng.choice(_CITIES)
    text = rng.choice(
        [
            f"{name} is {age} years old and works as a {job} in {city}.",
            f"Meet {name}, a {age}-year-old {job} from {city}.",
            f"{name}, aged {age}, lives in {city} and is a {job}.",
            f"Our new {job} in {city} is {name}; they turned {age} this year.",
        ]
    )
    instruction = rng.choice(
        [
            'Extract the name and age from the text as JSON with the keys "name" and "age".',
            'Return a JSON object with the keys "name" and "age" for the person in the text.',
        ]
    )
    output = json.dumps({"name": name, "age": age})
    checks = [{"kind": "valid_json", "value": None}, {"kind": "json_keys", "value": ["name", "age"]}]
    return instruction, text, output, checks


def _unit_conversion(rng: random.Random) -> tuple[str, str, str, list[dict[str, Any]]]:
    source_unit, target_unit, factor = rng.choice(_UNITS)
    value = rng.randint(1, 99)
    instruction = rng.choice(
        [
            f"Convert {value} {source_unit} to {target_unit}. Answer with the number and unit only.",
            f"How many {target_unit} are in {value} {source_unit}? Answer with the number and unit only.",
        ]
    )
    checks = [{"kind": "regex", "value": r"^\d+ \w+$"}]
    return instruction, "", f"{value * factor} {target_unit}", checks


def _date_format(rng: random.Random) -> tuple[str, str, str, list[dict[str, Any]]]:
    year, month, day = rng.randint(1990, 2030), rng.randint(1, 12), rng.randint(1, 28)
    iso = f"{year:04d}-{month:02d}-{day:02d}"
    instruction = rng.choice(
        [
            f"Rewrite the date {iso} in the format DD/MM/YYYY.",
            f"Convert {iso} from YYYY-MM-DD to DD/MM/YYYY.",
        ]
    )
    checks = [{"kind": "regex", "value": r"^\d{2}/\d{2}/\d{4}$"}]
    return instruction, "", f"{day:02d}/{month:02d}/{year:04d}", checks


def _sort_numbers(rng: random.Random) -> tuple[str, str, str, list[dict[str, Any]]]:
    numbers = rng.sample(range(1, 100), rng.randint(3, 5))
    instruction = rng.choice(
        [
            "Sort these numbers from smallest to largest: ",
            "Put these numbers in ascending order: ",
        ]
    ) + ", ".join(str(number) for number in numbers)
    checks = [{"kind": "regex", "value": r"^\d+(, \d+)*$"}]
    return instruction, "", ", ".join(str(number) for number in sorted(numbers)), checks


def _reverse_words(rng: random.Random) -> tuple[str, str, str, list[dict[str, Any]]]:
    words = rng.sample(_WORDS, rng.randint(3, 5))
    instruction = rng.choice(
        [
            "Reverse the order of these words: ",
            "List these words in reverse order: ",
        ]
    ) + ", ".join(words)
    checks = [{"kind": "regex", "value": r"^[^.]*$"}]  # no period anywhere (a project check, not IFEval's)
    return instruction, "", ", ".join(reversed(words)), checks


TASKS: dict[str, Callable[[random.Random], tuple[str, str, str, list[dict[str, Any]]]]] = {
    "json_extract": _json_extract,
    "unit_conversion": _unit_conversion,
    "date_format": _date_format,
    "sort_numbers": _sort_numbers,
    "reverse_words": _reverse_words,
}
"""Task name -> generator of (instruction, input, output, checks)."""


def generate_records(seed: int = DEMO_SEED) -> list[dict[str, Any]]:
    """Generates the demo records (Alpaca shape) with unique prompts, split marking and checks.

    Args:
        seed: Random seed.

    Returns:
        Records with instruction, input, output, split, task and checks.
    """
    rng = random.Random(seed)
    seen: set[tuple[str, str]] = set()
    records: list[dict[str, Any]] = []
    task_names = list(TASKS)
    for split, size in SPLIT_SIZES.items():
        count = 0
        while count < size:
            task = task_names[(len(records)) % len(task_names)]
            instruction, text, output, checks = TASKS[task](rng)
            if (instruction, text) in seen:
                continue
            seen.add((instruction, text))
            records.append(
                {
                    "instruction": instruction,
                    "input": text,
                    "output": output,
                    "split": split,
                    "task": task,
                    "checks": [*checks, {"kind": "exact_match", "value": output}],
                }
            )
            count += 1
    rng.shuffle(records)
    return records


def to_sharegpt(record: dict[str, Any]) -> dict[str, Any]:
    """Converts a demo record to the ShareGPT shape (same conversation after conversion).

    Args:
        record: An Alpaca-shaped demo record.

    Returns:
        ``{"conversations": [...], "split", "task", "checks"}``.
    """
    prompt = record["instruction"] + (f"\n\n{record['input']}" if record["input"] else "")
    return {
        "conversations": [{"from": "human", "value": prompt}, {"from": "gpt", "value": record["output"]}],
        "split": record["split"],
        "task": record["task"],
        "checks": record["checks"],
    }


def write_demo(output: Path = DEMO_DIR, seed: int = DEMO_SEED) -> dict[str, Path]:
    """Writes the Alpaca and ShareGPT variants of the demo dataset.

    Args:
        output: Directory to write into.
        seed: Random seed.

    Returns:
        Variant name -> written file.
    """
    output.mkdir(parents=True, exist_ok=True)
    records = generate_records(seed)
    shapes = {"alpaca": records, "sharegpt": [to_sharegpt(record) for record in records]}
    written = {}
    for variant, rows in shapes.items():
        path = output / DEMO_FILES[variant]
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
        written[variant] = path
    return written


def demo_path(variant: str = "alpaca") -> Path:
    """Returns the bundled demo file of a variant.

    Args:
        variant: ``alpaca`` or ``sharegpt``.

    Returns:
        The file path.
    """
    return DEMO_DIR / DEMO_FILES[variant]


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: regenerate the bundled demo dataset."""
    from loguru import logger

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEMO_DIR)
    parser.add_argument("--seed", type=int, default=DEMO_SEED)
    arguments = parser.parse_args(argv)
    for variant, path in write_demo(arguments.output, arguments.seed).items():
        logger.info("wrote {} ({} bytes): {}", variant, path.stat().st_size, path)


if __name__ == "__main__":
    main()
