"""The learner's walkthrough (notebooks/): it runs top to bottom in a real Jupyter kernel, its
committed outputs are those of its current source, and its checks catch the classic mistakes."""

import importlib.util
from pathlib import Path

import nbclient
import pytest

BUILD = Path(__file__).resolve().parents[1] / "notebooks" / "build.py"
spec = importlib.util.spec_from_file_location("notebook_build", BUILD)
build = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build)


@pytest.fixture(scope="module")
def executed():
    """The walkthrough's source, executed afresh (about a minute on 2 cores)."""
    return build.execute(build.read_source())


def test_the_walkthrough_runs_top_to_bottom_and_checks_every_step(executed):
    checks = [line for cell in build.check_lines(executed) for line in cell]
    # steps 1-6 each end with checks: timm's blocks and networks, Table 1, Table 6, resnetlab, training
    for expected in ("BasicBlock(64, 64)", "with a projection", "option A", "resnet34 logits",
                     "resnet152 (v1.5) logits", "3.86 G", "Table 6", "ResNet-50 v1 against resnetlab",
                     "learns Fashion-MNIST"):
        assert any(expected in line for line in checks), f"no check mentions {expected!r}"
    assert len(checks) == 19


def test_the_committed_notebook_is_the_source_executed(executed):
    """Stale outputs fail: the .ipynb must hold the .py's cells and print the `check:` lines a
    fresh run prints (timings and losses may differ from machine to machine, checks may not)."""
    committed = build.jupytext.read(build.NOTEBOOK)
    assert build.cells(committed) == build.cells(executed), \
        "notebooks/resnet_from_scratch.ipynb differs from the .py: run `make notebook-outputs`"
    assert build.check_lines(committed) == build.check_lines(executed), \
        "the committed notebook's checks are stale: run `make notebook-outputs`"
    code = [cell for cell in committed.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code), "every code cell of the committed notebook has run"
    assert not [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for cell in code for o in cell.outputs), "the curve is drawn"


# Each classic mistake, planted in the learner's code, and the check that must stop it.
PLANTED = {
    "relu-before-the-addition": (
        "        out = self.bn2(self.conv2(out))\n        return self.relu(out + shortcut)  # ReLU after the addition",
        "        out = self.relu(self.bn2(self.conv2(out)))\n        return out + shortcut",
        'check_same("BasicBlock(64, 64)"'),
    "projection-without-bn": (
        "    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),\n"
        "                         nn.BatchNorm2d(out_channels))",
        "    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False))",
        "with a projection"),
    "stride-moved-from-the-3x3-to-the-1x1": (
        "stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)",
        "stride_1x1, stride_3x3 = (stride, 1)",
        'check_same(f"{name} (v1.5) logits"'),
}


@pytest.mark.parametrize("bug", list(PLANTED))
def test_a_planted_bug_is_caught_by_its_step(bug):
    right, wrong, failing_cell = PLANTED[bug]
    text = build.SOURCE.read_text()
    assert text.count(right) == 1, f"the walkthrough no longer has the code this test plants {bug} in"
    notebook = build.read_source(text.replace(right, wrong))
    # Only the cells before the training: each bug must be stopped long before it.
    training = next(i for i, cell in enumerate(notebook.cells) if "## 6. Train" in cell.source)
    notebook.cells = notebook.cells[:training]
    with pytest.raises(nbclient.exceptions.CellExecutionError) as caught:
        build.execute(notebook)
    assert caught.value.ename == "AssertionError", f"{bug} raised {caught.value.ename}, not a failed check"
    failed = next(cell for cell in notebook.cells if cell.cell_type == "code"
                  and any(o.output_type == "error" for o in cell.get("outputs", [])))
    assert failing_cell in failed.source, f"{bug} was caught in another cell:\n{failed.source}"
