"""Command-line options of each subcommand, kept free of heavy imports so ``--help`` is fast.

Each function is named after the use-case module and adds that subcommand's options.
"""

import argparse


def prepare_data(parser: argparse.ArgumentParser) -> None:
    """Options of ``prepare-data``."""
    parser.add_argument(
        "--input",
        action="append",
        help="Input file, directory, 'demo' or Hub dataset id (default: data.dataset / data.datasets); "
        "repeat it to mix several inputs (data.mix_strategy, concat by default).",
    )
    parser.add_argument(
        "--format",
        choices=["auto", "alpaca", "dolly", "sharegpt", "openai", "oasst", "custom"],
        help="Input format (default: data.format, auto-detected).",
    )
    parser.add_argument("--output", help="Output directory (default: data/prepared/<fingerprint>).")
    parser.add_argument("--lenient", action="store_true", help="Skip bad records (reported) instead of stopping.")


def train(parser: argparse.ArgumentParser) -> None:
    """Options of ``train``."""
    parser.add_argument("--run-name", help="Run directory name under paths.runs_dir.")
    parser.add_argument("--resume", help="'auto', 'never' or a checkpoint path (default: training.resume).")
    parser.add_argument(
        "--force",
        action="store_true",
        help="Train a completed run again from scratch; its earlier outputs move to <run>/previous-<time>/.",
    )


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
    parser.add_argument("--run", help="Run name, run/merged directory or registered model (default: the base model).")
    parser.add_argument("--prompt", action="append", default=[], help="A prompt (repeatable).")
    parser.add_argument("--input-file", help="JSONL with 'prompt' or 'messages' per line (batch inference).")
    parser.add_argument("--output-file", help="JSONL output for batch inference (resumable).")
    parser.add_argument("--system", help="System prompt added before each --prompt.")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="Longest answer in tokens (default: 256).")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 decodes greedily (default); >0 samples.")
    parser.add_argument("--top-p", type=float, default=1.0, help="Nucleus sampling mass (default: 1.0).")
    parser.add_argument("--seed", type=int, help="Sampling seed.")
    parser.add_argument("--stop", action="append", default=[], help="Stop string (repeatable).")
    parser.add_argument("--batch-size", type=int, help="Prompts per batch (default: evaluation.batch_size).")
    parser.add_argument("--stream", action="store_true", help="Stream a single --prompt's answer to stdout.")


def chat(parser: argparse.ArgumentParser) -> None:
    """Options of ``chat``."""
    parser.add_argument("--run", help="Run name, run/merged directory or registered model (default: the base model).")
    parser.add_argument("--system", help="System prompt for the conversation.")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="Longest answer in tokens (default: 256).")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 decodes greedily (default); >0 samples.")


def merge(parser: argparse.ArgumentParser) -> None:
    """Options of ``merge``."""
    parser.add_argument("--run", required=True, help="Run name or directory holding the adapter.")
    parser.add_argument("--output", help="Output directory (default: <run>/merged).")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace --output even if it holds files the merge did not write (they are deleted).",
    )


def export(parser: argparse.ArgumentParser) -> None:
    """Options of ``export``."""
    parser.add_argument("--run", required=True, help="Run name or directory to export.")
    parser.add_argument(
        "--format",
        choices=["gguf", "ollama"],
        default="gguf",
        help="gguf: one .gguf file (llama.cpp); ollama: the .gguf plus a Modelfile (default: gguf).",
    )
    parser.add_argument(
        "--quantization",
        choices=["f16", "q8_0", "q4_0"],
        default="f16",
        help="Weight precision in the file (default: f16).",
    )
    parser.add_argument("--output", help="Output directory (default: <run>/export/<format>-<quantization>).")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace --output even if it holds files the export did not write (they are deleted).",
    )
    parser.add_argument("--push-to", help="Then upload the export folder to this Hub model repository (user/name).")
    parser.add_argument("--private", action="store_true", help="--push-to: create the repository as private.")
    parser.add_argument(
        "--dry-run", action="store_true", help="--push-to: list the files and sizes that would be uploaded, no network."
    )


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
    """Options of ``registry``.

    The action (list, register, show, promote, delete, push, pull) is the first word after
    ``registry``; it is read from the free positional arguments so that ``key=value`` overrides
    can follow it (a separate positional would swallow them).
    """
    parser.usage = (
        "finetune-studio registry {list,register,show,promote,delete,push,pull} [key=value ...] [--name NAME] "
        "[--version N] [--run RUN] [--stage STAGE] [--repo-id REPO] [--private] [--dry-run]"
    )
    parser.set_defaults(action=None)
    parser.add_argument("--name", help="Registered model name (show/promote/delete/push also take name:VERSION).")
    parser.add_argument("--version", type=int, help="Version number.")
    parser.add_argument("--run", help="Run name, run directory or merged/model directory to register.")
    parser.add_argument("--stage", help="Stage for promote: staging, production, archived or none.")
    parser.add_argument("--repo-id", help="Hub repository for push/pull (user/repo).")
    parser.add_argument("--revision", help="Hub revision to pull (branch, tag or commit).")
    parser.add_argument("--private", action="store_true", help="Create a private Hub repository.")
    parser.add_argument(
        "--dry-run", action="store_true", help="push: list the files and sizes that would be uploaded (no network)."
    )


def import_config(parser: argparse.ArgumentParser) -> None:
    """Options of ``import-config``."""
    parser.add_argument("file", help="LLaMA-Factory or axolotl SFT YAML to convert.")
    parser.add_argument("--output", help="Preset file to write (default: print the preset).")
    parser.add_argument("--overwrite", action="store_true", help="Replace --output when it exists.")
