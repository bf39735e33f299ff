"""The training tools in a base install: one line naming the extra to install, exit status 2.

A made-up distribution (a ``.dist-info`` folder on ``sys.path``) stands in for plantml
installed without its train extra; the subprocess check on a real base install is the
slow test tests/integration/test_edge_install.py.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from plantml.cli import extras

METADATA = """Metadata-Version: 2.1
Name: fakeplant
Version: 1.0
Requires-Dist: numpy==2.4.6
Provides-Extra: train
Requires-Dist: numpy==2.4.6; extra == "train"
Requires-Dist: surely-not-installed-pkg==1.0; extra == "train"
Provides-Extra: parquet
Requires-Dist: pyarrow==26.0.1; extra == "parquet"
Provides-Extra: dev
Requires-Dist: fakeplant[parquet,train]; extra == "dev"
Requires-Dist: pytest==9.2.0; extra == "dev"
"""


@pytest.fixture
def fakeplant(tmp_path, monkeypatch):
    info = tmp_path / "fakeplant-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(METADATA)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "fakeplant"


def answer():
    return 42


def test_requirements_of_an_extra_follow_self_references(fakeplant):
    assert extras.requirements("train", fakeplant) == ["numpy", "surely-not-installed-pkg"]
    assert extras.requirements("dev", fakeplant) == [
        "pytest",
        "numpy",
        "surely-not-installed-pkg",
        "pyarrow",
    ]
    assert extras.requirements("nothing", fakeplant) == []
    assert extras.missing("dev", fakeplant) == ["surely-not-installed-pkg"]


def test_missing_extra_is_one_line_and_exit_2(fakeplant, monkeypatch, capsys):
    monkeypatch.setattr(extras, "DIST", fakeplant)
    with pytest.raises(SystemExit) as exit_info:
        extras.train()
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "error: plantml-train needs the train extra: pip install 'plantml[train]' "
        "(not installed: surely-not-installed-pkg)\n"
    )


def test_installed_extra_runs_the_tool(monkeypatch, capsys):
    assert extras.missing("train") == []  # this environment is the dev install
    assert extras.launch("plantml-train", "train", f"{__name__}:answer") == 42
    # a third-party module missing at import is the same one line, not a traceback
    with pytest.raises(SystemExit) as exit_info:
        extras.launch("plantml-train", "train", "surely_not_installed_module:main")
    assert exit_info.value.code == 2
    assert "(not installed: surely_not_installed_module)" in capsys.readouterr().err
    # a missing plantml module is a bug, and stays a traceback
    with pytest.raises(ModuleNotFoundError, match=r"plantml\.no_such_module"):
        extras.launch("plantml-train", "train", "plantml.no_such_module:main")


def test_tools_point_at_their_hydra_apps(monkeypatch):
    launched = []
    monkeypatch.setattr(extras, "launch", lambda *args: launched.append(args))
    for tool in (extras.train, extras.evaluate, extras.tune, extras.export):
        tool()
    assert launched == [
        ("plantml-train", "train", "plantml.cli.train:main"),
        ("plantml-eval", "train", "plantml.cli.evaluate:main"),
        ("plantml-tune", "train", "plantml.cli.tune:main"),
        ("plantml-export", "train", "plantml.cli.export:main"),
    ]


def test_the_launcher_imports_nothing_heavy():
    """Every console script imports plantml.cli.extras first: it must load on a base install."""
    code = (
        "import sys, plantml.cli.extras, plantml.threads\n"
        "print(sorted(m for m in ('torch', 'pandas', 'hydra', 'omegaconf', 'lightning', "
        "'scipy', 'numpy', 'onnxruntime') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr
