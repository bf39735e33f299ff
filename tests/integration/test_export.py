"""plantml-export end to end: a trained run → recipes → bundles the edge runtime runs."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pandas as pd
import pytest

from tests.integration.helpers import QUICK, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]


@pytest.fixture(scope="module")
def run(tiny_run, tmp_path_factory):
    """A folder of this module's own and the shared tiny run's checkpoint (LSTM 32 x 2)."""
    return tmp_path_factory.mktemp("export"), tiny_run.ckpt


def _export(cwd, ckpt, recipe, *extra):
    run_cli(
        "plantml-export",
        f"ckpt_path={ckpt}",
        f"export={recipe}",
        f"export_dir={cwd / 'export'}",
        *QUICK,
        *extra,
        cwd=cwd,
    )
    out = cwd / "export" / f"synthetic_failure-{recipe}"
    return out, json.loads((out / "export_report.json").read_text())


def test_int8_recipe_writes_a_verified_bundle_and_report(run):
    cwd, ckpt = run
    out, report = _export(cwd, ckpt, "int8")
    names = [v["name"] for v in report["variants"]]
    assert names == ["torch_fp32", "onnx_fp32", "onnx_int8"]
    fp32, int8 = report["variants"][1], report["variants"][2]
    assert fp32["parity"]["passed"] and fp32["parity"]["max_abs"] < 1e-4
    assert int8["quantization"]["quantized_ops"].get("DynamicQuantizeLSTM") == 2
    assert int8["bytes"] < 0.4 * fp32["bytes"]
    for v in report["variants"]:
        assert {"p50_ms", "p99_ms"} <= set(v["latency"]) and v["throughput"] > 0
        assert v["metrics"]["by_condition"], "accuracy per operating condition"
    bundle = out / "bundle"
    assert sorted(p.name for p in bundle.iterdir()) == ["manifest.json", "model.onnx"]
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["task"]["kind"] == "failure"
    assert manifest["task"]["threshold"] == pytest.approx(int8["threshold"])
    assert manifest["input"]["feature_columns"] and manifest["input"]["window_length"] == 48
    assert manifest["conditions"]["mode"] == "column"
    assert manifest["model"]["exporter"] == "torchscript"
    assert manifest["model"]["per_window"] is True  # dynamic INT8: one window per ONNX call
    accepted = manifest["input"]["valid_range"]  # training's sanity bounds (and clip bounds)
    assert accepted["action"] == "nan"
    assert set(accepted["bounds"]) == set(manifest["input"]["feature_columns"])
    low, high = accepted["bounds"]["vibration_rms"]
    assert 0 <= low < high <= 100  # narrowed by the physical clip bounds [0, 100]
    assert manifest["lineage"]["checkpoint_sha256"]
    assert set(manifest["metrics"]["by_condition"]) == set(fp32["metrics"]["by_condition"])
    assert (out / "export_report.md").read_text().count("| onnx_int8 |") == 2
    assert (out / "tradeoff.png").stat().st_size > 10_000
    proc = run_cli("plantml-edge", "verify", "--bundle", str(bundle), cwd=cwd)
    assert proc.returncode == 0


def test_bundle_predicts_on_raw_rows_like_torch(run, fp32_export):
    """The edge runtime on the cleaned rows of one asset gives the checkpoint's predictions."""
    from plantml.evaluation.checkpoint import load_run
    from plantml.export.onnx import predictor, run_torch

    cwd, ckpt = run
    out = fp32_export
    _, _, datamodule, task, _ = load_run(ckpt, [])
    data = datamodule.data
    index = data.windows["val"]
    asset = np.bincount(index.assets).argmax()
    mine = np.flatnonzero(index.assets == asset)
    expected = run_torch(predictor(task), datamodule.dataset("val").gather(mine))
    table = data.table
    frame = data.frame
    rows = frame[frame[table.asset_column].astype(str) == data.asset_names[asset]]
    columns = [table.asset_column, table.time_column, *data.feature_names, table.condition_column]
    rows = rows[list(dict.fromkeys(columns))].copy()
    rows[table.time_column] = rows[table.time_column].dt.strftime("%Y-%m-%dT%H:%M:%S")
    rows.to_csv(cwd / "rows.csv", index=False)
    run_cli(
        "plantml-edge",
        "predict",
        "--bundle",
        str(out / "bundle"),
        "--input",
        str(cwd / "rows.csv"),
        "--output",
        str(cwd / "pred.csv"),
        cwd=cwd,
    )
    got = pd.read_csv(cwd / "pred.csv")
    end_times = frame[table.time_column].iloc[index.ends[mine]].dt.strftime("%Y-%m-%dT%H:%M:%S")
    got = got.set_index("time").loc[end_times.to_numpy()]
    np.testing.assert_allclose(got["failure_probability"].to_numpy(), expected, atol=1e-5)


def test_structured_pruning_recipe_shrinks_the_exported_graph(run):
    cwd, ckpt = run
    _, report = _export(cwd, ckpt, "pruned_int8", "export.prune.finetune_epochs=1")
    names = [v["name"] for v in report["variants"]]
    assert names == ["torch_fp32", "onnx_fp32", "pruned_structured", "pruned_structured_int8"]
    pruned = report["variants"][2]
    assert pruned["parameters"] < 0.4 * report["variants"][1]["parameters"]
    graph = onnx.load(pruned["file"]).graph
    lstm = next(n for n in graph.node if n.op_type == "LSTM")
    assert next(a.i for a in lstm.attribute if a.name == "hidden_size") == 16


def test_distillation_recipe_trains_a_small_student(run):
    cwd, ckpt = run
    _, report = _export(
        cwd,
        ckpt,
        "distilled_int8",
        "export.distill.epochs=1",
        "export.distill.student.hidden_size=8",
    )
    teacher, student = report["variants"][1], report["variants"][2]
    assert student["name"] == "student_fp32"
    assert student["parameters"] < 0.1 * teacher["parameters"]
    assert report["final_variant"] == "student_int8"


def test_export_bad_inputs(run):
    cwd, ckpt = run
    proc = run_cli("plantml-export", "ckpt_path=nowhere.ckpt", cwd=cwd, expect_ok=False)
    assert proc.returncode == 2 and "not found" in proc.stderr
    proc = run_cli(
        "plantml-export",
        f"ckpt_path={ckpt}",
        "export=int8",
        "+export.colour=red",
        cwd=cwd,
        expect_ok=False,
    )
    assert proc.returncode == 2 and "unknown key(s) ['colour']" in proc.stderr
    proc = run_cli(
        "plantml-export",
        f"ckpt_path={ckpt}",
        "export=int8",
        f"export_dir={cwd / 'export'}",
        *QUICK,
        "export.max_metric_change={f1:-1.0}",  # after QUICK, which switches the limit off
        cwd=cwd,
        expect_ok=False,
    )
    assert proc.returncode == 2 and "worse than allowed" in proc.stderr


def test_every_variant_gets_its_own_threshold_from_validation(run):
    """An INT8 model scores differently from its float parent: its alarm threshold is
    calibrated again on the validation windows with its own scores."""
    import torch

    from plantml.evaluation.checkpoint import load_run
    from plantml.evaluation.metrics import best_f1_threshold
    from plantml.export import onnx as ox

    cwd, ckpt = run
    out, report = _export(cwd, ckpt, "int8")
    _, _, datamodule, _, _ = load_run(ckpt, [])
    val = datamodule.dataset("val")
    windows, y = val.gather(np.arange(len(val))), val.index.targets
    for variant in report["variants"][1:]:
        pred = ox.run_onnx(ox.session(variant["file"], 1), windows)
        expected = best_f1_threshold(torch.from_numpy(pred), torch.from_numpy(y))
        assert variant["threshold"] == pytest.approx(expected)
    manifest = json.loads((out / "bundle" / "manifest.json").read_text())
    assert manifest["task"]["threshold"] == pytest.approx(report["variants"][-1]["threshold"])
