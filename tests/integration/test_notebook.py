"""notebooks/quickstart.ipynb runs top to bottom, as a newcomer would run it in Jupyter."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "quickstart.ipynb"
# appended to the in-memory copy only: which Python the kernel runs
PROBE = "import sys\nprint('KERNEL_PREFIX=' + sys.prefix)"


def _text(cell) -> str:
    """Everything a code cell showed: printed text, errors and plain-text results."""
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type in ("execute_result", "display_data"):
            parts.append(out.get("data", {}).get("text/plain", ""))
        elif out.output_type == "error":
            parts.append(f"{out.ename}: {out.evalue}")
    return "\n".join(parts)


@pytest.fixture(scope="module")
def executed(tmp_path_factory, monkeypatch_module):
    # A kernelspec named python3 that runs this interpreter (the project's .venv), found before
    # any user-wide or system one: the kernel imports plantml from the same environment as pytest.
    jupyter = tmp_path_factory.mktemp("jupyter")
    write_kernel_spec(jupyter / "kernels" / "python3")
    monkeypatch_module.setenv("JUPYTER_PATH", str(jupyter))
    monkeypatch_module.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    # idle OpenMP threads sleep instead of spinning: with the default (spinning), torch's LSTM
    # runs ~50x slower whenever another process keeps the cores busy (a parallel test job)
    monkeypatch_module.setenv("OMP_WAIT_POLICY", "PASSIVE")

    workdir = tmp_path_factory.mktemp("quickstart")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    )
    client.execute()  # raises CellExecutionError on the first cell that fails
    return nb, workdir


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_committed_notebook_has_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(executed):
    nb, workdir = executed
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))  # every cell, once
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, [f"{e.ename}: {e.evalue}" for e in errors]
    # the kernel ran the project's environment, not whatever python3 is on PATH
    assert f"KERNEL_PREFIX={sys.prefix}" in _text(code[-1])

    text = "\n".join(_text(c) for c in code)
    assert "val F1 = " in text and "test F1 = " in text
    assert "dedupe" in text and "rows_removed" in text  # the cleaning report
    images = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2  # the sensor plot and the per-condition bar plot

    # every file went under OUT, relative to the notebook's working folder
    out = workdir / "outputs" / "quickstart"
    assert sorted(p.name for p in workdir.iterdir()) == ["outputs"]
    for name in ("metrics.json", "config.yaml", "checkpoints/best.ckpt", "csv/metrics.csv"):
        assert (out / name).is_file(), name
    train = json.loads((out / "metrics.json").read_text())
    evaluation = json.loads((out / "eval" / "metrics.json").read_text())
    assert train["epochs"] == 3
    assert set(evaluation["by_condition"]["test"]) == {"high", "low", "nominal"}
    # the same checkpoint on the same test pumps gives the same numbers as at the end of training
    assert evaluation["test/n"] == train["test/n"]
    assert evaluation["test/auprc"] == pytest.approx(train["test/auprc"], abs=1e-6)
