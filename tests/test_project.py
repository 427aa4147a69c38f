"""Project hygiene: Docker, compose, CI workflows, documentation files, settings documentation."""

import subprocess
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def test_dockerfile_passes_hadolint():
    result = subprocess.run([str(VENV_BIN / "hadolint"), "Dockerfile"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_has_cuda_training_and_slim_inference_targets():
    text = (REPO_ROOT / "Dockerfile").read_text()
    assert " AS train\n" in text and " AS inference\n" in text
    assert "download.pytorch.org/whl/cpu" in text  # slim CPU torch for inference


def test_compose_file_parses_with_services_volumes_and_gpu_reservation():
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yaml").read_text())
    assert {"studio", "api"} <= set(compose["services"])
    studio = compose["services"]["studio"]
    devices = studio["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    mounts = " ".join(studio["volumes"])
    assert "/app/runs" in mounts and "/app/.cache/models" in mounts
    assert {"runs", "model-cache"} <= set(compose["volumes"])
    assert compose["services"]["api"]["build"]["target"] == "inference"


def test_github_workflow_has_lint_tests_and_notebooks_jobs():
    workflow = yaml.safe_load((REPO_ROOT / ".github" / "workflows" / "ci.yml").read_text())
    assert {"lint", "tests", "notebooks"} <= set(workflow["jobs"])
    for job in workflow["jobs"].values():
        assert any("make" in step.get("run", "") for step in job["steps"])


def test_only_readme_and_quickstart_are_markdown():
    tracked = subprocess.run(["git", "ls-files", "*.md"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.split()
    untracked = subprocess.run(
        ["git", "ls-files", "--others", "--exclude-standard", "*.md"], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout.split()
    assert set(tracked + untracked) <= {"README.md", "Quickstart.md"}


def test_env_example_is_generated_from_the_settings():
    from core.env_example import render_env_example

    assert (REPO_ROOT / ".env.example").read_text() == render_env_example(), "run: python -m core.env_example"


def test_makefile_has_the_documented_targets():
    makefile = (REPO_ROOT / "Makefile").read_text()
    for target in (
        "setup", "lint", "test", "prepare-data", "train-full", "train-lora", "train-qlora", "train-prefix",
        "evaluate", "compare", "inference", "serve", "studio", "benchmark", "clean", "space",
    ):  # fmt: skip
        assert f"\n{target}:" in makefile, target


def test_ci_script_runs_the_readme_test_command():
    assert "make test" in (REPO_ROOT / ".ci" / "run").read_text()
    assert "make test" in (REPO_ROOT / "README.md").read_text()[:4000]
    assert "make studio" in (REPO_ROOT / "README.md").read_text()[:4000]
