"""The base install is the edge runtime: plantml's wheel in a fresh venv, no torch, same predictions.

Builds the wheel, installs it with its base dependencies only into a new virtual
environment (pip fetches the build backend, numpy and onnxruntime from the package
index) and runs ``plantml-edge predict`` there on the fp32 bundle of the shared tiny
run (tests/integration/conftest.py). About a minute with a warm pip cache.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from plantml import api
from plantml.cli.extras import requirements
from plantml.edge import load_bundle
from tests.integration.helpers import TINY_RUN

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# what a device must not carry: the train extra (from plantml's metadata) and Hydra's omegaconf
HEAVY = {re.sub(r"[-_.]+", "-", name).lower() for name in requirements("train")} | {"omegaconf"}
# run inside the edge venv: every installed distribution, and what plantml's base needs
INVENTORY = """
import json, re
from importlib import metadata

def key(name):
    return re.sub(r"[-_.]+", "-", name).lower()

def needs(name, seen):
    for line in metadata.requires(name) or []:
        requirement, _, marker = line.partition(";")
        if "extra" in marker:
            continue
        dep = re.match(r"[A-Za-z0-9._-]+", requirement.strip()).group(0)
        if key(dep) not in seen:
            seen.add(key(dep))
            needs(dep, seen)
    return seen

installed = sorted({key(d.metadata["Name"]) for d in metadata.distributions()})
print(json.dumps({"installed": installed, "needed": sorted(needs("plantml", {"plantml"}))}))
"""


def _env() -> dict[str, str]:
    """This environment without anything that would let the venv see the dev install."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1"}


def _run(*command, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, env=_env(), timeout=timeout
    )


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, (
        f"{proc.args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


def _size_mb(folder: Path) -> float:
    return sum(p.lstat().st_size for p in folder.rglob("*")) / 2**20


@pytest.fixture(scope="module")
def edge_venv(tmp_path_factory) -> Path:
    """A fresh venv holding ``pip install plantml-<version>.whl`` and nothing else."""
    root = tmp_path_factory.mktemp("edge_install")
    source = root / "source"  # build from a copy: the build writes build/ and *.egg-info
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("src", "configs"):
        shutil.copytree(REPO / name, source / name, ignore=skip)
    _ok(_run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", root / "wheels", source))
    (wheel,) = (root / "wheels").glob("plantml-*.whl")
    venv = root / "venv"
    _ok(_run(sys.executable, "-m", "venv", venv))
    _ok(_run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", wheel))
    return venv


@pytest.fixture(scope="module")
def rows(fp32_export, tmp_path_factory) -> tuple[Path, Path]:
    """Raw rows of two pumps of the tiny run's fleet, as CSV and as Parquet."""
    folder = tmp_path_factory.mktemp("edge_rows")
    bundle = load_bundle(fp32_export / "bundle")
    frame = api.datamodule(api.compose(TINY_RUN, output_dir=folder / "dm")).data.frame
    two = frame[bundle.asset_column].drop_duplicates().iloc[:2]
    table = frame[frame[bundle.asset_column].isin(two)][bundle.required_columns].copy()
    table[bundle.time_column] = table[bundle.time_column].dt.strftime("%Y-%m-%dT%H:%M:%S")
    table.to_csv(folder / "rows.csv", index=False)
    table.to_parquet(folder / "rows.parquet", index=False)
    return folder / "rows.csv", folder / "rows.parquet"


def _predict(bin_dir: Path, bundle: Path, source: Path, output: Path):
    return _run(
        bin_dir / "plantml-edge",
        "predict",
        "--bundle",
        bundle,
        "--input",
        source,
        "--output",
        output,
        "--threads",
        "1",
    )


def test_edge_venv_predicts_like_the_full_install(edge_venv, fp32_export, rows, tmp_path):
    bundle = fp32_export / "bundle"
    csv_rows, _ = rows
    _ok(_predict(BIN, bundle, csv_rows, tmp_path / "full.csv"))
    edge = _ok(_predict(edge_venv / "bin", bundle, csv_rows, tmp_path / "edge.csv"))
    assert "predictions written" in edge.stdout
    full_text = (tmp_path / "full.csv").read_text()
    assert full_text.count("\n") > 100  # a header and predictions for two pumps
    assert (tmp_path / "edge.csv").read_text() == full_text


def test_edge_venv_holds_numpy_and_onnxruntime_only(edge_venv):
    python = edge_venv / "bin" / "python"
    no_torch = _run(python, "-c", "import torch")
    assert no_torch.returncode == 1 and "No module named 'torch'" in no_torch.stderr
    inventory = json.loads(_ok(_run(python, "-c", INVENTORY)).stdout)
    installed, needed = set(inventory["installed"]), set(inventory["needed"])
    assert {"plantml", "numpy", "onnxruntime"} <= installed
    assert {"torch", "pandas", "hydra-core"} <= HEAVY and not installed & HEAVY
    assert installed - needed <= {"pip", "setuptools"}  # what venv itself puts in
    assert _size_mb(edge_venv) < 400  # about 150 MB; the full install is about 5.6 GB


@pytest.mark.parametrize(
    "tool", ["plantml-train", "plantml-eval", "plantml-tune", "plantml-export"]
)
def test_training_tools_name_the_extra(edge_venv, tool):
    proc = _run(edge_venv / "bin" / tool, "--help")
    assert proc.returncode == 2
    assert proc.stderr.startswith(
        f"error: {tool} needs the train extra: pip install 'plantml[train]' (not installed: torch,"
    )
    assert proc.stderr.count("\n") == 1 and proc.stdout == ""


def test_parquet_input_names_its_extra(edge_venv, fp32_export, rows, tmp_path):
    _, parquet_rows = rows
    proc = _predict(edge_venv / "bin", fp32_export / "bundle", parquet_rows, tmp_path / "p.csv")
    assert proc.returncode == 2
    assert "needs pyarrow" in proc.stderr and "pip install 'plantml[parquet]'" in proc.stderr
    assert "Traceback" not in proc.stderr
