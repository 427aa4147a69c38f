"""``python -m examples.notebooks.strip_outputs [FILES]``: remove outputs from notebooks before committing."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat


def strip_notebook(path: Path) -> bool:
    """Removes outputs and execution counts from a notebook in place.

    Args:
        path: The ``.ipynb`` file.

    Returns:
        True when the file changed.
    """
    notebook = nbformat.read(path, as_version=4)
    changed = False
    for cell in notebook.cells:
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None):
            cell.outputs, cell.execution_count = [], None
            changed = True
        if cell.metadata.pop("execution", None) is not None:
            changed = True
    if changed:
        nbformat.write(notebook, path)
    return changed


def main() -> int:
    """Strips every notebook given on the command line (default: all tutorial notebooks).

    Returns:
        1 when a file was changed (so pre-commit shows the change), else 0.
    """
    paths = [Path(argument) for argument in sys.argv[1:]] or sorted(Path(__file__).parent.glob("*.ipynb"))
    return int(any([strip_notebook(path) for path in paths]))


if __name__ == "__main__":
    sys.exit(main())
