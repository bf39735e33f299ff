"""Train → evaluate → export → edge on a tiny fleet, in this process: the fast tier's smoke test.

One epoch of two batches, no bootstrap: a few seconds, so ``make test`` catches a break
anywhere on the path from config to edge prediction. The slow tier runs the same path
through the installed entry points and checks the numbers (test_train_eval.py,
test_export.py, test_edge_install.py).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from plantml import api
from plantml.cli.edge import main as edge_main
from plantml.edge import EdgeModel

SMOKE = [
    "logger=csv",
    "data.n_assets=10",
    "data.days=60",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "callbacks.progress_bar.refresh_rate=0",
    "bootstrap=0",
]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke") / "run"
    return out, api.train(api.compose(SMOKE, output_dir=out))


def test_train_writes_the_run_folder(smoke_run):
    out, metrics = smoke_run
    for name in ("config.yaml", "lineage.json", "checkpoints/best.ckpt", "predictions_val.csv"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["by_condition"] == metrics["by_condition"]
    assert saved["val/f1"] == pytest.approx(metrics["val/f1"])
    assert metrics["epochs"] == 1 and metrics["best_checkpoint"].startswith(str(out))
    for split in ("val", "test"):
        assert 0.0 <= metrics[f"{split}/auprc"] <= 1.0
        assert set(metrics["by_condition"][split]) == {"high", "low", "nominal"}
        assert sum(c["n"] for c in metrics["by_condition"][split].values()) == metrics[f"{split}/n"]


def test_evaluate_gives_the_training_numbers(smoke_run, tmp_path):
    _, metrics = smoke_run
    scored = api.evaluate(metrics["best_checkpoint"], ["data.split=test"], tmp_path / "eval")
    assert scored["test/n"] == metrics["test/n"]
    assert scored["test/auprc"] == pytest.approx(metrics["test/auprc"], abs=1e-6)
    assert (tmp_path / "eval" / "metrics.json").is_file()


def test_export_bundle_runs_on_the_edge(smoke_run, tmp_path):
    from plantml.export.recipe import run_export

    _, metrics = smoke_run
    cfg = api.compose(
        [
            f"ckpt_path={metrics['best_checkpoint']}",
            "export=fp32",
            f"export_dir={tmp_path / 'export'}",
            "measure.repeats=5",
            "measure.windows=200",
        ],
        output_dir=tmp_path / "export_run",
        config_name="export",
    )
    report = run_export(cfg)
    assert [v["name"] for v in report["variants"]] == ["torch_fp32", "onnx_fp32"]
    assert report["variants"][1]["parity"]["passed"]
    bundle = tmp_path / "export" / "synthetic_failure-fp32" / "bundle"
    assert edge_main(["verify", "--bundle", str(bundle)]) == 0

    # raw rows of the fleet it trained on, through the edge runtime
    model = EdgeModel(bundle)
    frame = api.datamodule(api.compose(SMOKE, output_dir=tmp_path / "dm")).data.frame
    rows = frame[model.bundle.required_columns].head(200).copy()
    time_column = model.bundle.time_column
    rows[time_column] = rows[time_column].dt.strftime("%Y-%m-%dT%H:%M:%S")
    assert rows[model.bundle.asset_column].nunique() == 1
    out, errors = model.predict_rows({c: rows[c].astype(str).tolist() for c in rows})
    assert not errors
    probabilities = np.asarray(out["failure_probability"])
    assert 0 < len(probabilities) <= len(rows) - model.bundle.window_length + 1
    assert set(out["time"]) <= set(rows[time_column])
    assert np.all((probabilities >= 0) & (probabilities <= 1))
    assert math.isclose(model.bundle.threshold, report["variants"][1]["threshold"], rel_tol=1e-6)
