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
