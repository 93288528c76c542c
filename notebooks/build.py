"""Build the walkthrough notebook from its reviewed source, and execute it.

resnet_from_scratch.py (jupytext's percent format) is the source; resnet_from_scratch.ipynb is
that source executed, outputs included, so that it reads with its results on a code host.

    python notebooks/build.py      # (make notebook-outputs) regenerate the .ipynb

tests/test_notebook.py executes the source afresh and fails when the committed .ipynb is stale:
other cells, or other `check:` lines than a fresh run prints.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "resnet_from_scratch.py"
NOTEBOOK = SOURCE.with_suffix(".ipynb")


def read_source(text: str | None = None) -> nbformat.NotebookNode:
    """The walkthrough as a notebook, from SOURCE (or from `text` in the same format)."""
    if text is None:
        return jupytext.read(SOURCE)
    return jupytext.reads(text, fmt="py:percent")


def execute(notebook: nbformat.NotebookNode, timeout: int = 600) -> nbformat.NotebookNode:
    """Run every cell in a fresh Python kernel, in this folder; raises CellExecutionError on the
    first cell that fails."""
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(HERE)}}).execute()
    return notebook


def cells(notebook: nbformat.NotebookNode) -> list[tuple[str, str]]:
    """(type, source) of every cell: what a reader sees as the notebook's text and code."""
    return [(cell.cell_type, cell.source) for cell in notebook.cells]


def check_lines(notebook: nbformat.NotebookNode) -> list[list[str]]:
    """The `check:` lines each code cell printed: the results that must not go stale."""
    found = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        text = "".join(output.get("text", "") for output in cell.get("outputs", []) if output.output_type == "stream")
        found.append([line for line in text.splitlines() if line.startswith("check:")])
    return found


def main() -> int:
    notebook = execute(read_source())
    jupytext.write(notebook, NOTEBOOK)
    print(f"wrote {NOTEBOOK} ({sum(map(len, check_lines(notebook)))} checks passed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
