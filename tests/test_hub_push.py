"""Hub push: ``registry push`` and ``export --push-to``; ``--dry-run`` lists exactly what would be uploaded.

No network: a dry run needs neither token nor Hub; a real push offline (``HF_HUB_OFFLINE=1``) or
without a token stops with a one-line message and exit code 2, before exporting anything. A real
push runs the real ``huggingface_hub`` client (``create_repo`` + ``upload_folder``) against a small
local stand-in for the Hub's HTTP API (``HF_ENDPOINT``): repository creation, pre-upload and commit.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import MODEL_CACHE, REPO_ROOT
from inference_run_factory import make_run

LISTING_LINE = re.compile(r"^\s+([\d,]+)\s+(\S+)$")


class LocalHub:
    """The Hub API calls a push makes (create repo, validate the card, pre-upload, commit), recorded in memory."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.created: list[dict] = []
        self.tokens: set[str] = set()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *arguments: object) -> None:
                pass

            def _reply(self, code: int, payload: dict) -> None:
                body = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._reply(404, {"error": "not part of a push"})

            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hub.tokens.add(self.headers.get("authorization", ""))
                if self.path == "/api/repos/create":
                    request = json.loads(data)
                    hub.created.append(request)
                    self._reply(200, {"url": f"{hub.url}/{request['organization']}/{request['name']}"})
                elif self.path == "/api/validate-yaml":  # the model card's front matter
                    self._reply(200, {"errors": [], "warnings": []})
                elif "/preupload/" in self.path:
                    files = json.loads(data)["files"]
                    self._reply(
                        200,
                        {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]},
                    )
                elif "/commit/" in self.path:
                    for line in data.decode().splitlines():
                        item = json.loads(line)
                        if item["key"] == "file":
                            hub.files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    self._reply(200, {"commitUrl": f"{hub.url}/c/{'a' * 40}", "commitOid": "a" * 40})
                else:
                    self._reply(404, {"error": self.path})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dirs: dict[str, Path]) -> Path:
    return make_run(tmp_path_factory.mktemp("push-runs") / "runs", "tiny-lora", tiny_model_dirs["llama"], "lora")


def _cli(arguments: list[str], home: Path, **environment: str) -> subprocess.CompletedProcess:
    """The CLI in a child process with its own HF_HOME (no stored token) and no HF_TOKEN."""
    dropped = {"HF_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"}
    variables = {key: value for key, value in os.environ.items() if key not in dropped}
    variables.update({"HF_HOME": str(home / "hf-home"), "FINETUNE_PATHS__MODEL_CACHE": str(MODEL_CACHE)})
    variables.update(environment)
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *arguments],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=variables,
    )


def _listing(stdout: str) -> dict[str, int]:
    rows = [LISTING_LINE.match(line) for line in stdout.splitlines()[1:]]
    assert all(rows), stdout
    return {row.group(2): int(row.group(1).replace(",", "")) for row in rows}


def _machine_paths(root: Path) -> list[str]:
    """Absolute paths of this machine that an uploaded file must not contain."""
    return [str(REPO_ROOT), str(Path.home()), str(root), str(MODEL_CACHE)]


def _assert_no_machine_path(folder: Path, files: list[str], root: Path) -> None:
    for name in files:
        content = (folder / name).read_bytes()
        for path in _machine_paths(root):
            assert path.encode() not in content, f"{name} contains {path}"


def test_registry_push_dry_run_lists_the_exact_upload_without_network_or_token(run_dir, tmp_path):
    from core.infrastructure.registry.hub import build_upload_folder
    from core.infrastructure.registry.store import ModelRegistry

    registry_dir = tmp_path / "registry"
    overrides = [f"paths.registry_dir={registry_dir}", f"paths.runs_dir={run_dir.parent}"]
    assert _cli(["registry", "register", *overrides, "--name", "bot", "--run", "tiny-lora"], tmp_path).returncode == 0

    push = ["registry", "push", *overrides, "--name", "bot:1", "--repo-id", "someone/tiny-bot", "--private"]
    result = _cli([*push, "--dry-run"], tmp_path, HF_HUB_OFFLINE="1")
    assert result.returncode == 0, result.stderr[-2000:]
    header = result.stdout.splitlines()[0]
    assert "someone/tiny-bot (private)" in header
    listed = _listing(result.stdout)

    folder = build_upload_folder(ModelRegistry(registry_dir).resolve("bot:1"), tmp_path / "upload")
    expected = {
        path.relative_to(folder).as_posix(): path.stat().st_size for path in folder.rglob("*") if path.is_file()
    }
    assert listed == expected
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md", "finetune_studio.json"} <= set(listed)
    assert f"{len(listed)} files ({sum(listed.values()):,} bytes)" in header
    _assert_no_machine_path(folder, list(listed), tmp_path)

    offline = _cli(push, tmp_path, HF_HUB_OFFLINE="1")
    assert offline.returncode == 2 and "HF_HUB_OFFLINE is set" in offline.stderr
    no_token = _cli(push, tmp_path)
    assert (
        no_token.returncode == 2 and "no Hugging Face token" in no_token.stderr and "hf auth login" in no_token.stderr
    )
    bad_id = _cli([*push[:-3], "--repo-id", "not a repo", "--dry-run"], tmp_path)
    assert bad_id.returncode == 2 and "expected user/name" in bad_id.stderr
    for result in (offline, no_token, bad_id):
        assert "Traceback" not in result.stderr


def test_export_push_to_refuses_before_exporting_and_dry_run_lists_the_export(tiny_model_dirs, tmp_path):
    runs = tmp_path / "runs"
    make_run(runs, "tiny-lora", tiny_model_dirs["llama"], "lora", seed=3)
    export = ["export", "--run", "tiny-lora", f"paths.runs_dir={runs}", "--push-to", "someone/tiny-gguf"]
    output = runs / "tiny-lora" / "export" / "gguf-f16"

    offline = _cli(export, tmp_path, HF_HUB_OFFLINE="1")
    assert offline.returncode == 2 and "HF_HUB_OFFLINE is set" in offline.stderr
    no_token = _cli(export, tmp_path)
    assert no_token.returncode == 2 and "no Hugging Face token" in no_token.stderr
    assert not output.exists()  # refused before the export ran

    result = _cli([*export, "--dry-run"], tmp_path, HF_HUB_OFFLINE="1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "someone/tiny-gguf (public)" in result.stdout.splitlines()[0]
    listed = _listing(result.stdout)
    on_disk = {path.name: path.stat().st_size for path in output.iterdir() if not path.name.startswith(".")}
    assert listed == on_disk and set(listed) == {"tiny-lora-f16.gguf", "verification.json"}
    assert any(path.name.startswith(".finetune-studio") for path in output.iterdir())  # the marker stays home
    _assert_no_machine_path(output, list(listed), tmp_path)


def test_registry_push_uploads_exactly_the_dry_run_files_through_huggingface_hub(run_dir, tmp_path):
    registry_dir = tmp_path / "registry"
    overrides = [f"paths.registry_dir={registry_dir}", f"paths.runs_dir={run_dir.parent}"]
    assert _cli(["registry", "register", *overrides, "--name", "bot", "--run", "tiny-lora"], tmp_path).returncode == 0
    push = ["registry", "push", *overrides, "--name", "bot:1", "--repo-id", "someone/tiny-bot", "--private"]
    listed = _listing(_cli([*push, "--dry-run"], tmp_path).stdout)

    hub = LocalHub()
    try:
        result = _cli([*push, "hub.token=hf_local_test_token"], tmp_path, HF_ENDPOINT=hub.url)
    finally:
        hub.server.shutdown()
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == f"{hub.url}/someone/tiny-bot"
    [created] = hub.created
    assert (created["organization"], created["name"]) == ("someone", "tiny-bot")
    assert created.get("private") is True or created.get("visibility") == "private", created  # --private
    assert hub.tokens == {"Bearer hf_local_test_token"}  # hub.token from the settings
    assert {name: len(content) for name, content in hub.files.items()} == listed  # exactly the dry run's files
    (tmp_path / "received").mkdir()
    for name, content in hub.files.items():
        (tmp_path / "received" / name).write_bytes(content)
    _assert_no_machine_path(tmp_path / "received", list(hub.files), tmp_path)
