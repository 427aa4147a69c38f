"""Nothing of the user's is deleted: merge, Space assembly and a retrained run replace only their own outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import MODEL_CACHE
from inference_run_factory import make_run
from test_training_support import isolated_overrides, make_prepared, train_in_subprocess

from core.domain.manifest import RunManifest


def _paths(root: Path) -> list[str]:
    return [
        f"paths.runs_dir={root / 'runs'}",
        f"paths.model_cache={MODEL_CACHE}",
        f"paths.registry_dir={root / 'registry'}",
        f"paths.data_dir={root / 'data'}",
    ]


def _cli(arguments: list[str]) -> int:
    from core.cli import main

    return main(arguments)


def test_merge_refuses_a_directory_holding_user_files_and_replaces_its_own(tiny_model_dirs, tmp_path, capfd):
    base = tiny_model_dirs["llama"]
    make_run(tmp_path / "runs", "run", base, "lora", seed=3)
    output = tmp_path / "exported"
    output.mkdir()
    (output / "my_notes.txt").write_text("mine", encoding="utf-8")
    common = ["merge", "--run", "run", "--output", str(output), f"model.name={base}", *_paths(tmp_path)]

    assert _cli(common) == 2
    error = capfd.readouterr().err
    assert str(output) in error and "--overwrite" in error and "my_notes.txt" in error
    assert (output / "my_notes.txt").read_text(encoding="utf-8") == "mine"
    assert not (output / "model.safetensors").exists()

    # Into a new directory, then again into that same (own, marked) directory without a flag.
    own = tmp_path / "merged-here"
    assert _cli([*common[:4], str(own), *common[5:]]) == 0
    first = (own / "lineage.json").read_text(encoding="utf-8")
    assert _cli([*common[:4], str(own), *common[5:]]) == 0
    assert json.loads((own / "lineage.json").read_text(encoding="utf-8"))["merged_at"] != json.loads(first)["merged_at"]

    # A file the user adds to the merge output makes it theirs again.
    (own / "my_eval.txt").write_text("mine too", encoding="utf-8")
    assert _cli([*common[:4], str(own), *common[5:]]) == 2
    assert (own / "my_eval.txt").exists()

    assert _cli([*common, "--overwrite"]) == 0
    assert (output / "model.safetensors").is_file() and not (output / "my_notes.txt").exists()


def test_space_assembly_refuses_a_folder_holding_user_files(tmp_path, capfd):
    from studio.space import main

    space = tmp_path / "space"
    space.mkdir()
    (space / "my_notes.txt").write_text("mine", encoding="utf-8")
    assert main(["--output", str(space)]) == 2
    error = capfd.readouterr().err
    assert str(space) in error and "--overwrite" in error
    assert (space / "my_notes.txt").read_text(encoding="utf-8") == "mine" and not (space / "app.py").exists()

    own = tmp_path / "own-space"
    assert main(["--output", str(own)]) == 0
    (own / "app.py").write_text("# stale", encoding="utf-8")
    assert main(["--output", str(own)]) == 0  # its own folder: re-assembled without a flag
    assert "launch_studio" in (own / "app.py").read_text(encoding="utf-8")

    assert main(["--output", str(space), "--overwrite"]) == 0
    assert (space / "app.py").is_file() and not (space / "my_notes.txt").exists()


def test_a_file_as_output_is_never_replaced(tmp_path):
    from core.domain.errors import OutputExistsError
    from core.domain.output_dirs import check_replaceable

    target = tmp_path / "notes.txt"
    target.write_text("mine", encoding="utf-8")
    with pytest.raises(OutputExistsError, match="is a file"):
        check_replaceable(target, "merge", overwrite=True)


TRAINING = {
    "technique": "lora",
    "training.precision": "fp32",
    "training.max_steps": 2,
    "training.save_steps": 1,
    "training.eval_steps": 2,
    "training.per_device_batch_size": 4,
}


@pytest.fixture(scope="module")
def completed_run(tmp_path_factory, tiny_model_dirs, embedded_model_dir) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("completed")
    prepared = make_prepared(root / "prepared", embedded_model_dir, n_train=8, n_validation=4)
    values = {"model.name": str(tiny_model_dirs["llama"]), "data.dataset": str(prepared), **TRAINING}
    result = train_in_subprocess(isolated_overrides(root, run_name="done", **values))
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "runs" / "done", [f"{key}={value}" for key, value in values.items()]


@pytest.mark.parametrize("how", ["resume-never", "damaged-checkpoints"])
def test_training_a_completed_run_again_refuses_then_force_moves_it_aside(how, completed_run, tmp_path, capfd):
    import shutil

    original, training = completed_run
    run_dir = tmp_path / "runs" / "done"
    shutil.copytree(original, run_dir)
    (run_dir / "my_notes.txt").write_text("mine", encoding="utf-8")
    manifest_before = (run_dir / "manifest.json").read_text(encoding="utf-8")
    final_files = sorted(path.name for path in (run_dir / "final").iterdir())
    arguments = ["train", "--run-name", "done", *_paths(tmp_path), *training, "monitoring.tensorboard=false"]
    if how == "resume-never":
        arguments += ["--resume", "never"]
    else:
        for manifest in (run_dir / "checkpoints").glob("checkpoint-*/checkpoint_manifest.json"):
            manifest.write_text("{damaged", encoding="utf-8")

    assert _cli(arguments) == 2
    error = capfd.readouterr().err
    assert str(run_dir) in error and "--force" in error and "already completed" in error
    assert sorted(path.name for path in (run_dir / "final").iterdir()) == final_files
    assert (run_dir / "manifest.json").read_text(encoding="utf-8") == manifest_before
    assert (run_dir / "metrics.jsonl").is_file() and (run_dir / "my_notes.txt").is_file()

    assert _cli([*arguments, "--force"]) == 0
    previous = sorted(run_dir.glob("previous-*"))
    assert len(previous) == 1
    assert sorted(path.name for path in (previous[0] / "final").iterdir()) == final_files
    assert (previous[0] / "manifest.json").read_text(encoding="utf-8") == manifest_before
    assert (previous[0] / "my_notes.txt").read_text(encoding="utf-8") == "mine"
    assert RunManifest.load(run_dir).status == "completed" and (run_dir / "final").is_dir()
