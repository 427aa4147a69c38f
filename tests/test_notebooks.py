"""The tutorial notebooks execute top to bottom with the embedded model and leave their results.

Each notebook runs in a fresh kernel (nbclient, the test interpreter's Python) with
``FINETUNE_NOTEBOOK_WORK_DIR`` pointing at a temporary directory, so runs and prepared data never
land in the repository; the test then checks the files each notebook must have produced and that
its plots were rendered.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = REPO_ROOT / "examples" / "notebooks"
PLOTLY_MIME = "application/vnd.plotly.v1+json"
CELL_TIMEOUT_S = 600

EXPECTED_RUNS = {
    "01_data_exploration": [],
    "02_full_finetuning": ["notebook-full"],
    "03_lora_qlora_comparison": ["notebook-lora", "notebook-qlora"],
    "04_inference_demo": ["notebook-inference"],
}


def test_every_tutorial_notebook_is_covered_and_stored_without_outputs():
    names = sorted(path.stem for path in NOTEBOOKS_DIR.glob("*.ipynb"))
    assert names == sorted(EXPECTED_RUNS)
    for name in names:
        notebook = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
        nbformat.validate(notebook)
        code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert code_cells, name
        assert all(not cell.outputs and cell.execution_count is None for cell in code_cells), f"{name}: strip outputs"
        source = "\n".join(cell.source for cell in code_cells)
        assert "print(" not in source, f"{name}: display values instead of printing"
        assert "FINETUNE_NOTEBOOK_WORK_DIR" in source, f"{name}: must write into the scratch directory"


def _execute(name: str) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",  # jupyter_client runs the "python" of the spec as the test's interpreter
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, on the first error
    return notebook


def _outputs(notebook: nbformat.NotebookNode) -> list[dict]:
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED_RUNS))
def test_notebook_executes_and_produces_its_results(name, tmp_path, monkeypatch):
    monkeypatch.setenv("FINETUNE_NOTEBOOK_WORK_DIR", str(tmp_path))
    notebook = _execute(name)

    outputs = _outputs(notebook)
    assert not [output for output in outputs if output.output_type == "error"]
    plots = [output for output in outputs if PLOTLY_MIME in output.get("data", {})]
    assert plots, f"{name}: no plot was rendered"
    for plot in plots:
        assert plot["data"][PLOTLY_MIME]["data"], f"{name}: an empty plot"

    assert list((tmp_path / "data" / "prepared").glob("*/prepared.json")), "prepared data missing"
    for run_name in EXPECTED_RUNS[name]:
        run_dir = tmp_path / "runs" / run_name
        manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
        assert manifest["status"] == "completed", manifest.get("error")
        assert (run_dir / "final").is_dir() and any((run_dir / "final").iterdir())
        assert manifest["metrics"]["final_eval_loss"] > 0
    if name == "02_full_finetuning":
        evaluation = json.loads((tmp_path / "runs" / "notebook-full" / "evaluation.json").read_text(encoding="utf-8"))
        assert 0 < len(evaluation["samples"]) <= 4  # evaluation.max_samples=4 in the notebook
    assert not list(NOTEBOOKS_DIR.glob("runs")) and not list(NOTEBOOKS_DIR.glob("data"))
