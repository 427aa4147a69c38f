"""Renaming and deleting runs: only runs, only to free valid names, the manifest follows."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.application.run_history import delete_run, rename_run
from core.domain.errors import ConfigError
from core.domain.manifest import RunManifest


def _run(runs_dir: Path, name: str) -> Path:
    manifest = RunManifest(run_name=name, status="completed", config={"run_name": name})
    (runs_dir / name / "final").mkdir(parents=True)
    (runs_dir / name / "final" / "adapter_model.safetensors").write_bytes(b"weights")
    manifest.save(runs_dir / name)
    return runs_dir / name


def test_rename_moves_the_run_and_its_manifest_follows(tmp_path: Path) -> None:
    _run(tmp_path, "first")
    moved = rename_run(tmp_path, "first", " second ")
    assert moved == tmp_path / "second" and not (tmp_path / "first").exists()
    manifest = RunManifest.load(moved)
    assert manifest.run_name == "second" and manifest.config["run_name"] == "second"
    assert (moved / "final" / "adapter_model.safetensors").read_bytes() == b"weights"


@pytest.mark.parametrize(
    ("name", "new_name", "message"),
    [
        ("first", "taken", "is taken"),
        ("first", "../escape", "use letters, digits"),
        ("first", "", "use letters, digits"),
        ("missing", "other", "no such run"),
        ("../first", "other", "not a run name"),
    ],
)
def test_rename_refuses_with_a_reason(tmp_path: Path, name: str, new_name: str, message: str) -> None:
    _run(tmp_path, "first")
    _run(tmp_path, "taken")
    with pytest.raises(ConfigError, match=message):
        rename_run(tmp_path, name, new_name)
    assert (tmp_path / "first").is_dir() and (tmp_path / "taken").is_dir()


def test_delete_removes_only_runs(tmp_path: Path) -> None:
    _run(tmp_path, "old")
    (tmp_path / "notes").mkdir()
    delete_run(tmp_path, "old")
    assert not (tmp_path / "old").exists()
    with pytest.raises(ConfigError, match="no such run"):
        delete_run(tmp_path, "notes")
    assert (tmp_path / "notes").is_dir()
