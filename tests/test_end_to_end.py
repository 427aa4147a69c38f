"""End-to-end: the walking skeleton through the real CLI on the embedded SmolLM2-135M-Instruct.

One module-scoped run goes prepare-data -> train (LoRA) -> evaluate -> generate -> merge ->
registry, each step a separate ``finetune-studio`` process, exactly as a user's script would run
them. Budgets are small (a few optimizer steps) so the suite stays within minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PRESET = REPO_ROOT / "examples" / "configs" / "smollm2-lora.yaml"
pytestmark = pytest.mark.slow


STDERR_SEEN: dict[str, str] = {}
"""Each command's stderr, for the check that no library noise reaches the user."""


def _environment(workdir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "FINETUNE_PATHS__RUNS_DIR": str(workdir / "runs"),
        "FINETUNE_PATHS__DATA_DIR": str(workdir / "data"),
        "FINETUNE_PATHS__REGISTRY_DIR": str(workdir / "registry"),
        "FINETUNE_PATHS__MODEL_CACHE": str(REPO_ROOT / ".cache" / "models"),
        "FINETUNE_MONITORING__TENSORBOARD": "true",
        "HF_HUB_OFFLINE": "1",
    }


def cli(workdir: Path, *arguments: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Runs ``finetune-studio`` in a fresh process with paths inside ``workdir``."""
    result = subprocess.run(
        [sys.executable, "-m", "core.cli", *arguments],
        cwd=workdir,
        env=_environment(workdir),
        capture_output=True,
        text=True,
        timeout=900,
        input=stdin,
    )
    STDERR_SEEN[arguments[0]] = result.stderr
    if check:
        assert result.returncode == 0, f"{arguments} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result


SHORT_RUN = [
    "training.max_steps=8",
    "training.per_device_batch_size=4",
    "training.eval_steps=4",
    "training.save_steps=4",
    "training.learning_rate=2e-3",
    "training.eval_max_samples=16",
    "data.max_seq_length=128",
    "evaluation.max_samples=8",
    "evaluation.max_new_tokens=32",
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def trained_run(workdir: Path) -> Path:
    """A short LoRA run of the preset (the walking skeleton), trained once for the module."""
    cli(workdir, "train", "--config", str(PRESET), "run_name=e2e-lora", *SHORT_RUN)
    return workdir / "runs" / "e2e-lora"


def test_validate_config_rejects_bad_fields_with_one_line(workdir: Path):
    bad_rate = cli(workdir, "validate-config", "learning_rate=-1", check=False)
    assert bad_rate.returncode != 0
    assert "training.learning_rate: Input should be greater than 0 (got -1)" in bad_rate.stderr
    bad_technique = cli(workdir, "validate-config", "technique=dora2", check=False)
    assert bad_technique.returncode != 0
    assert "technique: unknown technique 'dora2'" in bad_technique.stderr
    good = cli(workdir, "validate-config", "--config", str(PRESET))
    assert "Configuration is valid" in good.stderr


def test_prepare_data_reports_counts_for_the_demo(workdir: Path):
    result = cli(workdir, "prepare-data", "--config", str(PRESET), "data.max_seq_length=128")
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert report["read"] == report["kept"] + sum(report["skipped"].values()) == 3000


def test_training_writes_the_run_directory_and_lowers_held_out_loss(trained_run: Path):
    manifest = json.loads((trained_run / "manifest.json").read_text())
    assert manifest["status"] == "completed"
    assert manifest["config"]["technique"]["name"] == "lora"
    assert manifest["data_fingerprint"] and manifest["chat_template"]
    assert {"torch", "transformers", "peft"} <= set(manifest["versions"])
    rows = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    evals = [row for row in rows if "eval_loss" in row]
    assert evals[0]["step"] == 0, "an evaluation must be logged before the first update"
    assert evals[-1]["step"] == 8
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"], evals
    assert any("loss" in row and row.get("step", 0) > 0 for row in rows)
    assert (trained_run / "final" / "adapter_model.safetensors").is_file()
    assert (trained_run / "final" / "tokenizer.json").is_file()
    assert any((trained_run / "checkpoints").iterdir())
    assert list((trained_run / "tensorboard").rglob("events.out.tfevents.*"))


def test_evaluate_writes_metrics_and_reports(workdir: Path, trained_run: Path):
    cli(workdir, "evaluate", "--config", str(PRESET), "--run", "e2e-lora", *SHORT_RUN)
    evaluation = json.loads((trained_run / "evaluation.json").read_text())
    text = json.dumps(evaluation)
    for key in ("perplexity", "rouge", "bleu", "exact_match"):
        assert key in text, key
    assert (trained_run / "report.md").is_file() and (trained_run / "report.html").is_file()


def test_generate_and_merge_and_register(workdir: Path, trained_run: Path):
    generated = cli(
        workdir, "generate", "--run", "e2e-lora", "--prompt", "Convert 3 km to m.", "--max-new-tokens", "16"
    )
    assert generated.stdout.strip(), generated.stderr[-2000:]
    cli(workdir, "merge", "--run", "e2e-lora")
    merged = trained_run / "merged"
    assert (merged / "model.safetensors").is_file() or list(merged.glob("model*.safetensors"))
    assert (merged / "README.md").is_file()
    cli(workdir, "registry", "register", "--name", "demo-extractor", "--run", "e2e-lora")
    listed = cli(workdir, "registry", "list")
    assert "demo-extractor" in listed.stdout


def _serve_briefly(workdir: Path) -> str:
    """Starts ``serve``, waits until it answers ``/v1/models``, stops it, and returns its stderr."""
    import socket
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "serve", "--port", str(port), "--api-key", "k"],
        cwd=workdir,
        env=_environment(workdir),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": "Bearer k"}
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    assert "e2e-lora" in response.read().decode()
                    break
            except OSError:
                assert server.poll() is None, "serve exited early"
                time.sleep(1)
        else:
            raise AssertionError("serve did not answer within 300 s")
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=60)
    return stderr


def test_commands_print_no_library_warnings_or_progress_bars(workdir: Path, trained_run: Path):
    """A LoRA train, chat, serve, generate and merge print no bitsandbytes or deprecation warnings,
    and neither their stderr (not a terminal here) nor the run's log file holds progress-bar redraws."""
    chat = cli(workdir, "chat", "--run", "e2e-lora", "--max-new-tokens", "8", stdin="Convert 3 km to m.\n/exit\n")
    assert chat.stdout.strip()
    STDERR_SEEN["serve"] = _serve_briefly(workdir)
    assert {"train", "chat", "serve", "generate", "merge"} <= set(STDERR_SEEN)
    for command, stderr in STDERR_SEEN.items():
        for noise in ("Warning", "warnings.warn", "kernels-community", "bitsandbytes", "\r"):
            assert noise not in stderr, f"{command!r} printed {noise!r}:\n{stderr[-3000:]}"
    assert "\r" not in (trained_run / "train.log").read_text(encoding="utf-8")


def test_docs_excerpts_match_what_the_commands_print(workdir: Path, trained_run: Path):
    """Quickstart's prepare-data, train and evaluate excerpts have the shape these commands print."""
    from docs_excerpts import assert_printed, text_block_after

    if "prepare-data" not in STDERR_SEEN or "evaluate" not in STDERR_SEEN:  # this test run alone
        cli(workdir, "prepare-data", "--config", str(PRESET), "data.max_seq_length=128")
        cli(workdir, "evaluate", "--config", str(PRESET), "--run", "e2e-lora", *SHORT_RUN)
    prepared = text_block_after("Quickstart.md", "The report (also `report.json`")
    assert_printed(prepared, STDERR_SEEN["prepare-data"], "Quickstart §1")
    summary = [line for line in text_block_after("Quickstart.md", "ends with the summary") if "SUCCESS" in line]
    assert summary and "train" in STDERR_SEEN
    assert_printed(summary, STDERR_SEEN["train"], "Quickstart §2")
    assert_printed(
        text_block_after("Quickstart.md", "match and the demo's instruction checks"), STDERR_SEEN["evaluate"], "§3"
    )


def _hub_layout_cache(root: Path, repo_id: str, files_from: Path) -> Path:
    """A Hugging Face cache holding ``repo_id`` as the Hub would lay it out (snapshots, refs/main)."""
    commit = "0" * 39 + "1"
    repo = root / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for file in files_from.iterdir():
        if file.is_file():
            (snapshot / file.name).symlink_to(file.resolve())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return root


def test_final_adapter_is_portable_and_loads_with_plain_peft_elsewhere(workdir: Path, trained_run: Path, tmp_path):
    """From another directory, offline, plain peft loads runs/<run>/final against a Hub-layout cache,
    and nothing shipped (final/, merged/) holds a path of this machine."""
    final = trained_run / "final"
    adapter = json.loads((final / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    card = (final / "README.md").read_text()
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card and "More Information Needed" not in card
    hub = _hub_layout_cache(
        tmp_path / "hub", adapter["base_model_name_or_path"], REPO_ROOT / ".cache" / "models" / "smollm2-135m-instruct"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import sys; from peft import AutoPeftModelForCausalLM; "
        "model = AutoPeftModelForCausalLM.from_pretrained(sys.argv[1]); "
        "print(type(model).__name__, model.peft_config['default'].base_model_name_or_path)"
    )
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub), "HF_HOME": str(tmp_path / "hf")}
    loaded = subprocess.run(
        [sys.executable, "-c", code, str(final)],
        cwd=elsewhere,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in loaded.stdout
    machine_paths = (str(workdir), str(REPO_ROOT), ".cache/models", str(Path.home()))
    shipped = [path for folder in (final, trained_run / "merged") for path in folder.rglob("*") if path.is_file()]
    assert any(path.parent.name == "merged" for path in shipped), "merge ran earlier in this module"
    for path in shipped:
        if path.suffix in {".safetensors", ".bin"}:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for machine_path in machine_paths:
            assert machine_path not in text, f"{path} contains {machine_path!r}"
