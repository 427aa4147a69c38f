"""The docs' cheap commands print what README.md and Quickstart.md show (the expensive ones are
checked in test_end_to_end.py, on the run that module trains)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import MODEL_CACHE
from docs_excerpts import assert_printed, text_block_after

REPO_ROOT = Path(__file__).resolve().parents[1]


def _cli(workdir: Path, *arguments: str) -> subprocess.CompletedProcess:
    environment = {
        **os.environ,
        "FINETUNE_PATHS__MODEL_CACHE": str(MODEL_CACHE),
        "FINETUNE_PATHS__DATA_DIR": str(workdir / "data"),
        "HF_HUB_OFFLINE": "1",
    }
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *arguments],
        cwd=workdir,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_quickstart_bad_file_example_prints_what_it_shows(tmp_path):
    records = [
        {"conversations": [{"from": "human", "value": f"Question {n}?"}, {"from": "gpt", "value": f"Answer {n}."}]}
        for n in range(1, 9)
    ]
    records[2]["conversations"][1]["value"] = "   "
    records[6]["conversations"][1]["from"] = "narrator"
    (tmp_path / "my.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    result = _cli(tmp_path, "prepare-data", "--input", "my.jsonl")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert_printed(text_block_after("Quickstart.md", "`--format sharegpt`. A bad"), result.stderr, "Quickstart §1")


def test_readme_validation_error_example_prints_what_it_shows(tmp_path):
    result = _cli(tmp_path, "validate-config", "technique=dora2")
    assert result.returncode == 2
    documented = "technique: unknown technique 'dora2'; allowed values: 'full', 'lora', 'qlora', 'prefix', 'ia3'"
    assert documented in (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert f" ERROR   {documented}" in result.stderr.replace(" __main__ ", " ").replace(" core.cli ", " ")
