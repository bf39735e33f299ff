"""The hand-written package list in pyproject.toml covers every package, configs included."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_package_is_listed():
    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(REPO / "src").parts)
        for p in (REPO / "src").rglob("__init__.py")
    }
    groups = {
        f"plantml.configs.{p.name}"
        for p in (REPO / "configs").iterdir()
        if p.is_dir() and p.name != "__pycache__"
    }
    assert found | {"plantml.configs"} | groups == listed


def test_configs_install_as_a_package():
    root = resources.files("plantml.configs")
    for group in (
        "data",
        "model",
        "task",
        "trainer",
        "logger",
        "callbacks",
        "experiment",
        "paths",
        "hydra",
    ):
        assert root.joinpath(group).is_dir(), group
    assert root.joinpath("train.yaml").is_file() and root.joinpath("eval.yaml").is_file()


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    return requirement.split("[")[0].split("==")[0].strip()


def test_base_install_is_the_edge_runtime():
    project = _project()
    extras = project["optional-dependencies"]
    assert [_name(r) for r in project["dependencies"]] == ["numpy", "onnxruntime"]
    assert extras["edge"] == project["dependencies"]  # plantml[edge] is the base install
    assert [_name(r) for r in extras["parquet"]] == ["pyarrow"]
    train = {_name(r) for r in extras["train"]}
    assert {"torch", "lightning", "hydra-core", "optuna", "onnx", "pandas", "wandb"} <= train
    # dev is every other extra (through plantml[...]) plus the test and lint tools
    (self_reference,) = [r for r in extras["dev"] if _name(r) == "plantml"]
    others = set(extras) - {"dev", "edge"}
    assert set(self_reference.split("[")[1].rstrip("]").split(",")) == others


def test_every_pin_is_exact():
    project = _project()
    requirements = project["dependencies"] + [
        r for group in project["optional-dependencies"].values() for r in group
    ]
    loose = [r for r in requirements if _name(r) != "plantml" and "==" not in r]
    assert not loose


def test_training_tools_start_through_the_extras_check():
    scripts = _project()["scripts"]
    assert scripts["plantml-edge"] == "plantml.cli.edge:main"  # runs on the base install
    for tool, function in [
        ("plantml-train", "train"),
        ("plantml-eval", "evaluate"),
        ("plantml-tune", "tune"),
        ("plantml-export", "export"),
    ]:
        assert scripts[tool] == f"plantml.cli.extras:{function}"
