"""Command-line options of each subcommand, kept free of heavy imports so ``--help`` is fast.

Each function is named after the use-case module and adds that subcommand's options.
"""

import argparse


def prepare_data(parser: argparse.ArgumentParser) -> None:
    """Options of ``prepare-data``."""
    parser.add_argument("--input", help="Input file, directory, 'demo' or Hub dataset id (default: data.dataset).")
    parser.add_argument("--format", help="alpaca, dolly, sharegpt, openai, oasst or custom (default: auto-detect).")
    parser.add_argument("--output", help="Output directory (default: data/prepared/<fingerprint>).")
    parser.add_argument("--lenient", action="store_true", help="Skip bad records (reported) instead of stopping.")


def train(parser: argparse.ArgumentParser) -> None:
    """Options of ``train``."""
    parser.add_argument("--run-name", help="Run directory name under paths.runs_dir.")
    parser.add_argument("--resume", help="'auto', 'never' or a checkpoint path (default: training.resume).")


def evaluate(parser: argparse.ArgumentParser) -> None:
    """Options of ``evaluate``."""
    parser.add_argument("--run", help="Run directory or run name (default: evaluate the base model).")
    parser.add_argument("--base", action="store_true", help="Evaluate the base model named by model.name.")


def compare(parser: argparse.ArgumentParser) -> None:
    """Options of ``compare``."""
    parser.add_argument("--runs", nargs="*", default=[], help="Run names or directories to compare.")
    parser.add_argument("--train-all", action="store_true", help="Train all four techniques first.")
    parser.add_argument("--output", help="Report directory (default: runs/comparisons/<timestamp>).")


def generate(parser: argparse.ArgumentParser) -> None:
    """Options of ``generate``."""
    parser.add_argument("--run", help="Run name or directory (default: the base model).")
    parser.add_argument("--prompt", action="append", default=[], help="A prompt (repeatable).")
    parser.add_argument("--input-file", help="JSONL with 'prompt' or 'messages' per line (batch inference).")
    parser.add_argument("--output-file", help="JSONL output for batch inference (resumable).")


def chat(parser: argparse.ArgumentParser) -> None:
    """Options of ``chat``."""
    parser.add_argument("--run", help="Run name or directory (default: the base model).")


def merge(parser: argparse.ArgumentParser) -> None:
    """Options of ``merge``."""
    parser.add_argument("--run", required=True, help="Run name or directory holding the adapter.")
    parser.add_argument("--output", help="Output directory (default: <run>/merged).")


def serve(parser: argparse.ArgumentParser) -> None:
    """Options of ``serve``."""
    parser.add_argument("--host", help="Bind address (default: serve.host).")
    parser.add_argument("--port", type=int, help="Port (default: serve.port).")
    parser.add_argument("--api-key", help="API key clients must send (default: serve.api_key).")


def studio(parser: argparse.ArgumentParser) -> None:
    """Options of ``studio``."""
    parser.add_argument("--port", type=int, help="Port (default: studio.port).")
    parser.add_argument("--host", help="Bind address (default: studio.host).")


def registry(parser: argparse.ArgumentParser) -> None:
    """Options of ``registry``."""
    parser.add_argument("action", choices=["list", "register", "show", "promote", "delete", "push", "pull"])
    parser.add_argument("--name", help="Registered model name.")
    parser.add_argument("--version", type=int, help="Version number.")
    parser.add_argument("--run", help="Run name or directory to register.")
    parser.add_argument("--stage", help="Stage for promote (e.g. staging, production).")
    parser.add_argument("--repo-id", help="Hub repository for push/pull.")
    parser.add_argument("--private", action="store_true", help="Create a private Hub repository.")
