"""Unknown config groups and bad overrides fail fast with readable messages."""

from __future__ import annotations

import pytest

from tests.integration.helpers import run_cli


def test_unknown_config_group_option(tmp_path):
    proc = run_cli("plantml-train", "data=nope", cwd=tmp_path, expect_ok=False)
    assert proc.returncode != 0
    assert "Could not find 'data/nope'" in proc.stderr and "synthetic" in proc.stderr


def test_unknown_key_override(tmp_path):
    proc = run_cli("plantml-train", "data.windw.length=3", cwd=tmp_path, expect_ok=False)
    assert proc.returncode != 0
    assert "Could not override 'data.windw.length'" in proc.stderr


@pytest.mark.slow
def test_bad_value_is_a_plantml_error(tmp_path):
    proc = run_cli(
        "plantml-train", "logger=csv", "data.split_by.method=random", cwd=tmp_path, expect_ok=False
    )
    assert proc.returncode == 2
    assert "unknown data.split_by.method 'random'; use one of asset, temporal" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_table_source_from_config_alone(tmp_path):
    from tests.conftest import make_fleet

    make_fleet(n_assets=10, rows=(80, 120)).frame.to_csv(tmp_path / "plant.csv", index=False)
    run_cli(
        "plantml-train",
        "data=table",
        f"data.path={tmp_path / 'plant.csv'}",
        "data.asset_column=unit",
        "data.time_column=cycle",
        "task=rul",
        "logger=csv",
        "trainer.max_epochs=1",
        "data.window.length=20",
        "callbacks.progress_bar.refresh_rate=0",
        cwd=tmp_path,
    )
    proc = run_cli(
        "plantml-train",
        "data=table",
        f"data.path={tmp_path / 'plant.csv'}",
        "data.asset_column=pump",
        "logger=csv",
        cwd=tmp_path,
        expect_ok=False,
    )
    assert proc.returncode == 2 and "column 'pump' (data.asset_column) not found" in proc.stderr


@pytest.mark.slow
def test_gpu_trainer_without_a_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    proc = run_cli("plantml-train", "trainer=gpu", "logger=csv", cwd=tmp_path, expect_ok=False)
    assert proc.returncode == 2
    assert (
        "trainer.accelerator=gpu needs a CUDA GPU" in proc.stderr and "trainer=cpu" in proc.stderr
    )
