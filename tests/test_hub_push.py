"""Hub push: ``registry push`` and ``export --push-to``; ``--dry-run`` lists exactly what would be uploaded.

No network: a dry run needs neither token nor Hub; a real push offline (``HF_HUB_OFFLINE=1``) or
without a token stops with a one-line message and exit code 2, before exporting anything.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MODEL_CACHE, REPO_ROOT
from inference_run_factory import make_run

LISTING_LINE = re.compile(r"^\s+([\d,]+)\s+(\S+)$")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dirs: dict[str, Path]) -> Path:
    return make_run(tmp_path_factory.mktemp("push-runs") / "runs", "tiny-lora", tiny_model_dirs["llama"], "lora")


def _cli(arguments: list[str], home: Path, **environment: str) -> subprocess.CompletedProcess:
    """The CLI in a child process with its own HF_HOME (no stored token) and no HF_TOKEN."""
    variables = {key: value for key, value in os.environ.items() if key not in {"HF_TOKEN", "HF_HUB_OFFLINE"}}
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
