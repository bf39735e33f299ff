"""W&B offline without an API key, DDP on two CPU processes, Hydra multirun."""

from __future__ import annotations

import pytest

from plantml import api
from tests.integration.helpers import TINY, metrics, run_cli, run_dirs

pytestmark = pytest.mark.slow


def test_wandb_runs_offline_without_api_key(tmp_path):
    tiny = [a for a in TINY if not a.startswith("logger=")] + ["trainer.max_epochs=1"]
    env = {
        "WANDB_MODE": None,
        "WANDB_API_KEY": None,
        "HOME": str(tmp_path),
        "NETRC": str(tmp_path / "none"),
    }
    proc = run_cli("plantml-train", *tiny, cwd=tmp_path, env=env)
    log = proc.stdout + proc.stderr
    assert log.count("no API key found") == 1
    assert "wandb sync" in log
    (run,) = run_dirs(tmp_path, "synthetic_failure")
    (offline,) = (run / "wandb").glob("offline-run-*")
    (records,) = offline.glob("*.wandb")
    blob = records.read_bytes()
    # the summary (final metrics) and the best checkpoint artifact are in the offline run
    assert b"val/auprc" in blob and b"best.ckpt" in blob and b"model-" in blob
    assert b"val/by_condition" in blob and b"plots/by_condition" in blob  # tables and images
    assert (run / "metrics.json").is_file()


@pytest.mark.ddp
def test_ddp_two_cpu_processes(tmp_path):
    run_cli(
        "plantml-train",
        *TINY,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        cwd=tmp_path,
    )
    (run,) = run_dirs(tmp_path, "synthetic_failure")
    assert (run / "train_ddp_process_1.log").is_file()  # a second rank ran
    m = metrics(run)
    dm = api.datamodule(api.compose(TINY, output_dir=tmp_path / "dm"))
    # predictions are gathered from both ranks: every window scored exactly once
    assert m["val/n"] == len(dm.data.windows["val"])
    assert m["test/n"] == len(dm.data.windows["test"])
    assert m["val/positives"] == int((dm.data.windows["val"].targets > 0.5).sum())


def test_multirun_sweeps_a_parameter(tmp_path):
    run_cli(
        "plantml-train", "-m", *TINY, "trainer.max_epochs=1", "model.hidden_size=8,16", cwd=tmp_path
    )
    sweeps = sorted((tmp_path / "outputs" / "synthetic_failure" / "multiruns").glob("*/*"))
    runs = [p for p in sweeps if p.is_dir() and (p / "metrics.json").is_file()]
    assert len(runs) == 2
    sizes = sorted(
        int((r / "config.yaml").read_text().split("hidden_size: ")[1].split()[0]) for r in runs
    )
    assert sizes == [8, 16]
