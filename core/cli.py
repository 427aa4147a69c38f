"""Command line interface ``finetune-studio``: one subcommand per use case.

``--help`` imports no torch: each subcommand imports its use case only when it runs.
Every subcommand takes ``--config FILE`` and ``key=value`` overrides
(``finetune-studio train --config examples/configs/smollm2-lora.yaml learning_rate=2e-4``).
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Sequence

from loguru import logger

from core.domain.errors import FinetuneStudioError
from core.logging_setup import configure_logging

COMMANDS: dict[str, tuple[str, str]] = {
    "prepare-data": (
        "core.application.prepare_data",
        "Validate and tokenize a dataset into train/validation/test.",
    ),
    "train": ("core.application.train", "Train a model (prepares the data first when needed)."),
    "evaluate": ("core.application.evaluate", "Evaluate a run or a base model on the test split."),
    "compare": ("core.application.compare", "Compare runs (or train all four techniques) in one report."),
    "generate": ("core.application.generate", "Generate answers for prompts or a JSONL file."),
    "chat": ("core.application.chat", "Interactive chat with a run or model in the terminal."),
    "merge": ("core.application.merge", "Merge an adapter into its base model and verify the result."),
    "export": (
        "core.application.export",
        "Export a run as a verified GGUF file (llama.cpp) or a GGUF plus an Ollama Modelfile.",
    ),
    "serve": ("core.application.serve", "Serve runs and registered models through an OpenAI-compatible API."),
    "studio": ("core.application.studio", "Open the Gradio studio."),
    "registry": ("core.application.registry", "List, register, promote, show and delete registered models."),
    "import-config": (
        "core.application.import_config",
        "Turn a LLaMA-Factory or axolotl SFT YAML into a preset, listing the keys it could not map.",
    ),
    "validate-config": (
        "core.application.validate_config",
        "Validate a configuration without loading models.",
    ),
}
"""Subcommand name -> (module with ``add_arguments`` and ``run``, help text)."""


def build_parser() -> argparse.ArgumentParser:
    """Builds the argument parser; subcommand modules contribute their own options.

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(
        prog="finetune-studio",
        description="Instruction-tune causal LMs with Full, LoRA, QLoRA or Prefix Tuning.",
        epilog="Overrides: key=value (e.g. learning_rate=2e-4 technique=qlora training.num_epochs=2).",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--config", help="YAML preset (e.g. examples/configs/smollm2-lora.yaml).")
        sub.add_argument("overrides", nargs="*", default=[], help="key=value settings overrides.")
        _module_arguments(module_name, sub)
    return parser


def _module_arguments(module_name: str, sub: argparse.ArgumentParser) -> None:
    """Adds a subcommand's own options; options are declared in a torch-free ``cli_options`` module."""
    options_module = module_name.rsplit(".", 1)[0] + ".cli_options"
    options = importlib.import_module(options_module)
    adder = getattr(options, module_name.rsplit(".", 1)[1], None)
    if adder is not None:
        adder(sub)


OVERRIDE_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*=")


def split_overrides(parser: argparse.ArgumentParser, argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separates ``key=value`` overrides from the other arguments, wherever they appear.

    argparse alone cannot take positional overrides both before and after options
    (``train lr=1 --run-name x technique=qlora``); option values such as ``--prompt "a=b"`` are
    left alone.

    Args:
        parser: The full parser (its subcommand parsers say which options take a value).
        argv: Raw arguments.

    Returns:
        ``(other_arguments, overrides)``.
    """
    arguments, overrides = list(argv), []
    if not arguments or arguments[0] not in COMMANDS:
        return arguments, overrides
    subparsers = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    command_parser = subparsers.choices[arguments[0]]
    kept, expects_value = [arguments[0]], False
    for token in arguments[1:]:
        if expects_value:
            kept.append(token)
            expects_value = False
        elif token.startswith("-"):
            kept.append(token)
            option = command_parser._option_string_actions.get(token.split("=", 1)[0])
            expects_value = option is not None and "=" not in token and option.nargs != 0
        elif OVERRIDE_PATTERN.match(token):
            overrides.append(token)
        else:
            kept.append(token)
    return kept, overrides


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        Process exit code: 0 on success, 2 for invalid input or configuration, 1 otherwise.
    """
    configure_logging()
    parser = build_parser()
    remaining, overrides = split_overrides(parser, sys.argv[1:] if argv is None else argv)
    arguments = parser.parse_args(remaining)
    arguments.overrides = [*arguments.overrides, *overrides]
    module = importlib.import_module(COMMANDS[arguments.command][0])
    try:
        result = module.run(arguments)
    except FinetuneStudioError as error:
        logger.error("{}", error)
        return 2
    except KeyboardInterrupt:
        logger.warning("Interrupted")
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
