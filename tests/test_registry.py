"""Model registry: versions with lineage and checksums, stages, concurrent writers, Hub upload folder."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import MODEL_CACHE, REPO_ROOT
from inference_run_factory import make_run

from core.domain.config import settings_from_dict
from core.infrastructure.checksums import sha256_file


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dirs: dict[str, Path]) -> Path:
    return make_run(tmp_path_factory.mktemp("registry-runs") / "runs", "tiny-lora", tiny_model_dirs["llama"], "lora")


def test_register_versions_lineage_checksums_stages_and_delete(run_dir, tmp_path, tiny_model_dirs):
    from core.infrastructure.registry.store import ModelRegistry, RegistryError

    registry = ModelRegistry(tmp_path / "registry")
    first = registry.register("support-bot", run_dir)
    second = registry.register("support-bot", run_dir)
    assert (first.version, second.version, first.kind, first.stage) == (1, 2, "adapter", "none")
    lineage = first.lineage
    assert lineage["base_model_path"] == str(tiny_model_dirs["llama"]) == lineage["base_model"]
    assert lineage["data_fingerprint"] == "fingerprint-test-0001"
    assert lineage["technique"] == "lora" and lineage["metrics"]["final_eval_loss"] == 1.25
    assert lineage["config"]["technique"]["rank"] == 4 and lineage["run_name"] == "tiny-lora"
    assert first.created_at < second.created_at
    assert set(first.checksums) == {path.name for path in (run_dir / "final").iterdir()}
    for relative, digest in first.checksums.items():
        assert sha256_file(first.artifact_dir / relative) == digest
    assert json.loads((first.path / "version.json").read_text())["checksums"] == first.checksums

    assert [version.reference for version in registry.list()] == ["support-bot:1", "support-bot:2"]
    assert registry.resolve("support-bot").version == 2  # newest when nothing is in production
    registry.promote("support-bot", 1, "production")
    assert registry.resolve("support-bot").version == 1  # production wins
    assert registry.resolve("support-bot@production").version == 1
    registry.promote("support-bot", 2, "production")
    assert registry.show("support-bot", 1).stage == "archived"
    assert json.loads((second.path / "version.json").read_text())["stage"] == "production"

    assert registry.verify("support-bot", 1) == []
    with (first.artifact_dir / "adapter_config.json").open("a") as handle:
        handle.write(" ")
    assert registry.verify("support-bot", 1) == ["adapter_config.json: checksum mismatch"]

    registry.delete("support-bot", 2)
    assert not second.path.exists()
    assert [version.version for version in registry.list("support-bot")] == [1]
    with pytest.raises(RegistryError, match="no such registered model version"):
        registry.resolve("support-bot:2")
    registry.delete("support-bot")
    assert registry.list() == [] and not (tmp_path / "registry" / "support-bot").exists()

    for bad in ("../escape", "/abs", "a/b", ""):
        with pytest.raises(RegistryError, match="invalid model name"):
            registry.register(bad, run_dir)
    with pytest.raises(RegistryError, match="not a run, model or adapter"):
        registry.register("empty", tmp_path)


WRITER = """
import sys
from core.infrastructure.registry.store import ModelRegistry
registry = ModelRegistry(sys.argv[1])
for _ in range(int(sys.argv[3])):
    print(registry.register("shared", sys.argv[2]).version, flush=True)
"""


def test_concurrent_writers_from_processes_and_threads_get_unique_versions(run_dir, tmp_path):
    from core.infrastructure.registry.store import ModelRegistry

    root = tmp_path / "registry"
    ModelRegistry(root)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root), str(run_dir), "3"],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    thread_versions: list[int] = []

    def register_in_thread() -> None:
        thread_versions.append(ModelRegistry(root).register("shared", run_dir).version)

    threads = [threading.Thread(target=register_in_thread) for _ in range(4)]
    for thread in threads:
        thread.start()
    outputs = [process.communicate(timeout=120) for process in processes]
    for thread in threads:
        thread.join()
    assert all(process.returncode == 0 for process in processes), [err for _, err in outputs]
    process_versions = [int(line) for out, _ in outputs for line in out.split()]
    versions = sorted(process_versions + thread_versions)
    assert versions == list(range(1, 17))
    registry = ModelRegistry(root)
    listed = registry.list("shared")
    assert [version.version for version in listed] == versions
    assert all(registry.verify("shared", version.version) == [] for version in listed)
    assert sorted(path.name for path in (root / "shared").iterdir()) == sorted(f"v{n}" for n in versions)


def test_registered_models_load_for_inference_and_register_through_the_cli(run_dir, tmp_path, capsys):
    from core.cli import main
    from core.infrastructure.inference.loading import load_for_inference
    from core.infrastructure.inference.predictor import Predictor

    # the action word and key=value overrides come before the options (argparse positional chunking)
    overrides = [f"paths.registry_dir={tmp_path / 'registry'}", f"paths.runs_dir={run_dir.parent}"]
    overrides.append(f"paths.model_cache={MODEL_CACHE}")
    assert main(["registry", "register", *overrides, "--name", "bot", "--run", "tiny-lora"]) == 0
    assert main(["registry", "register", *overrides, "--name", "bot", "--run", str(run_dir)]) == 0
    capsys.readouterr()
    assert main(["registry", "list", *overrides]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(row["name"], row["version"], row["technique"]) for row in listed] == [
        ("bot", 1, "lora"),
        ("bot", 2, "lora"),
    ]
    assert main(["registry", "promote", *overrides, "--name", "bot", "--version", "1", "--stage", "staging"]) == 0
    assert main(["registry", "show", *overrides, "--name", "bot@staging"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 1
    assert main(["registry", "show", *overrides, "--name", "nope"]) == 2

    settings = settings_from_dict(
        {"paths": {"registry_dir": str(tmp_path / "registry"), "runs_dir": str(tmp_path / "no-runs")}}
    )
    registered = load_for_inference("bot:1", settings)
    from_run = load_for_inference(run_dir, settings)
    prompt = [[{"role": "user", "content": "hi"}]]
    assert registered.technique == "lora" and registered.chat_template == from_run.chat_template
    assert Predictor(registered).generate(prompt, 5) == Predictor(from_run).generate(prompt, 5)
    assert main(["registry", "delete", *overrides, "--name", "bot", "--version", "2"]) == 0


def test_hub_upload_folder_is_exact_and_offline_push_pull_fail_clearly(run_dir, tmp_path, monkeypatch):
    from core.infrastructure.registry.hub import HubUnavailableError, build_upload_folder, pull_from_hub, push_to_hub
    from core.infrastructure.registry.store import ModelRegistry

    registry = ModelRegistry(tmp_path / "registry")
    version = registry.register("bot", run_dir)
    folder = build_upload_folder(version, tmp_path / "upload")
    files = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
    artifact = sorted(path.name for path in (run_dir / "final").iterdir())
    assert files == sorted({*artifact, "README.md", "finetune_studio.json"})  # PEFT's own card is replaced
    assert "adapter_model.safetensors" in files and "tokenizer.json" in files
    for name in set(artifact) - {"README.md", "adapter_config.json"}:
        assert (folder / name).read_bytes() == (run_dir / "final" / name).read_bytes()
    # the adapter names its base portably (this fixture's adapter kept the local path it was saved with)
    uploaded, saved = (json.loads((where / "adapter_config.json").read_text()) for where in (folder, run_dir / "final"))
    assert str(tmp_path.parent) in saved["base_model_name_or_path"]
    assert uploaded == {**saved, "base_model_name_or_path": Path(saved["base_model_name_or_path"]).name}
    shipped_checksums = json.loads((folder / "finetune_studio.json").read_text())["checksums"]
    assert shipped_checksums["adapter_config.json"] == sha256_file(folder / "adapter_config.json")
    card = (folder / "README.md").read_text()
    assert "# bot (version 1)" in card and "fingerprint-test-0001" in card and "library_name: peft" in card
    metadata = json.loads((folder / "finetune_studio.json").read_text())
    assert (
        metadata["checksums"] == {**version.checksums, "adapter_config.json": shipped_checksums["adapter_config.json"]}
        and metadata["lineage"]["technique"] == "lora"
    )

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnavailableError, match="HF_HUB_OFFLINE is set"):
        push_to_hub(registry, "bot:1", "someone/bot", private=True)
    with pytest.raises(HubUnavailableError, match="cannot pull someone/bot"):
        pull_from_hub(registry, "someone/bot", "pulled")
    assert [v.reference for v in registry.list()] == ["bot:1"]


def test_merged_models_register_with_their_lineage(tiny_model_dirs, tmp_path):
    from core.application.merge import merge
    from core.infrastructure.registry.store import ModelRegistry

    make_run(tmp_path / "runs", "m", tiny_model_dirs["gpt2"], "lora", seed=4)
    settings = settings_from_dict({"paths": {"runs_dir": str(tmp_path / "runs"), "model_cache": str(MODEL_CACHE)}})
    merged = merge(settings, "m")
    version = ModelRegistry(tmp_path / "registry").register("merged-bot", merged)
    assert version.kind == "model" and version.lineage["kind"] == "merged"
    assert version.lineage["data_fingerprint"] == "fingerprint-test-0001" and "model.safetensors" in version.checksums
