"""The edge runtime says what it did to odd rows, and a window's prediction is its own.

- valid range (training's sanity bounds): a value outside rejects the row (nan) or
  is clamped (clip); bundles without the block accept any finite value;
- operating-condition values not seen in training, window restarts and the rows they
  cost are counted (batch result, streaming report per asset, CLI summary);
- ``stream`` skips a malformed line and goes on, and refuses an input without a
  required column (exit 2); ``verify`` names files the manifest does not list;
- INT8 (dynamic) and float LSTM bundles: batch = stream = batch size 1, exactly.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from plantml.edge import BundleError, EdgeModel, RowError, StreamingPredictor, load_bundle
from plantml.edge.bundle import content_sha256, write_manifest
from plantml.edge.io import write_csv
from tests.conftest import REPO
from tests.unit.test_edge_runtime import EDGE, columns, fleet_rows, make_bundle


def reseal(folder: Path, **input_changes) -> Path:
    """Change ``input`` keys of a bundle's manifest (None removes one) and seal it again."""
    manifest = json.loads((folder / "manifest.json").read_text())
    for key, value in input_changes.items():
        if value is None:
            manifest["input"].pop(key, None)
        else:
            manifest["input"][key] = value
    manifest.pop("files", None)
    manifest.pop("manifest_sha256", None)
    write_manifest(folder, manifest)
    return folder


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(EDGE), *args], capture_output=True, text=True, timeout=120)


# -- valid range ---------------------------------------------------------------------------------


def test_value_outside_the_training_range_rejects_the_row(tmp_path):
    bundle = reseal(
        make_bundle(tmp_path / "b"),
        valid_range={"bounds": {"a": [0.0, 10.0], "b": [None, 100.0]}, "action": "nan"},
    )
    rows = fleet_rows(n_assets=2, n=6)
    rows[4]["a"] = "1e30"  # asset u0, data row 5
    model = EdgeModel(bundle)
    result = model.predict_table(columns(rows))
    (err,) = result.errors
    assert (err.row_number, err.asset, err.column) == (5, "u0", "a")
    assert "value 1e+30 is outside the range training accepted for 'a' [0, 10]" in err.message
    stream = StreamingPredictor(model)
    with pytest.raises(RowError, match=r"outside the range training accepted for 'a' \[0, 10\]"):
        for i, row in enumerate(rows):
            stream.feed(row, row_number=i + 1)
    assert stream.report["u0"].rejected == 1
    info = cli("info", "--bundle", str(bundle)).stdout
    assert "valid range: values outside are rejected: a [0, 10], b [-inf, 100]" in info


def test_clip_action_clamps_and_counts(tmp_path):
    bundle = reseal(
        make_bundle(tmp_path / "b"), valid_range={"bounds": {"a": [-50.0, 50.0]}, "action": "clip"}
    )
    rows = fleet_rows(n_assets=1, n=6)  # values about 5 +- 2
    clamped = [dict(r) for r in rows]
    rows[4]["a"], clamped[4]["a"] = "1e30", "50.0"
    model = EdgeModel(bundle)
    got, want = model.predict_table(columns(rows)), model.predict_table(columns(clamped))
    assert got.errors == [] and got.clipped == {"a": 1} and want.clipped == {}
    np.testing.assert_array_equal(got.columns["score"], want.columns["score"])
    stream = StreamingPredictor(model)
    stream.feed_many(rows)
    assert stream.report["u0"].clipped == {"a": 1}


def test_bundle_without_valid_range_accepts_any_finite_value(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    assert load_bundle(bundle).valid_range is None
    rows = fleet_rows(n_assets=1, n=4)
    rows[0]["a"] = "1e30"
    assert EdgeModel(bundle).predict_table(columns(rows)).errors == []


@pytest.mark.parametrize(
    "block",
    [
        {"bounds": {"zzz": [0, 1]}, "action": "nan"},  # not a feature
        {"bounds": {"a": [2, 1]}, "action": "nan"},  # low > high
        {"bounds": {"a": [0, 1]}, "action": "drop"},
        {"bounds": {"a": [0]}, "action": "clip"},
    ],
)
def test_broken_valid_range_is_refused(tmp_path, block):
    bundle = make_bundle(tmp_path / "b")
    with pytest.raises(BundleError, match="valid_range"):  # the exporter's own check
        reseal(bundle, valid_range=block)
    manifest = json.loads((bundle / "manifest.json").read_text())  # a broken exporter
    manifest["input"]["valid_range"] = block
    manifest["manifest_sha256"] = content_sha256(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="valid_range"):
        load_bundle(bundle)


# -- what else happened to the rows -----------------------------------------------------------------


COND = {"mode": "column", "column": "mode", "names": ["idle", "run"], "categories": ["idle", "run"]}


def test_unseen_conditions_are_counted_in_batch_stream_and_cli(tmp_path):
    bundle = make_bundle(tmp_path / "b", conditions=COND, per_condition=True)
    rows = fleet_rows(n_assets=2, n=6)
    for i, row in enumerate(rows):
        row["mode"] = "overload" if (row["unit"] == "u1" and i > 3) else "run"
    result = EdgeModel(bundle).predict_table(columns(rows))
    assert result.unseen == {"overload": 4}
    assert "unseen" in result.columns["condition"]
    stream = StreamingPredictor(bundle)
    stream.feed_many(rows)
    assert stream.report["u1"].unseen == {"overload": 4} and stream.report["u0"].unseen == {}
    path = tmp_path / "rows.csv"
    write_csv(path, columns(rows))
    predict = cli("predict", "--bundle", str(bundle), "--input", str(path), "--output", "-")
    assert predict.returncode == 0
    assert "4 rows with an unseen condition" in predict.stderr
    assert "not seen in training: 'overload': 4 rows" in predict.stderr
    stream_cli = cli("stream", "--bundle", str(bundle), "--input", str(path))
    assert "4 rows with an unseen condition" in stream_cli.stderr


def test_window_restarts_and_the_rows_they_cost(tmp_path):
    bundle = make_bundle(tmp_path / "b", length=3, max_gap=1.5)
    times = [1, 2, 3, 4, 10, 11, 12, 13, 30, 31]  # gaps before 10 and 30: two restarts
    rows = [{"unit": "u0", "t": str(t), "a": "1.0", "b": str(t / 10)} for t in times]
    result = EdgeModel(bundle).predict_table(columns(rows))
    # after each restart the first 2 rows cannot end a window of 3: 2 + 2 rows lost
    assert (result.restarts, result.rows_lost) == (2, 4)
    assert len(result.columns["score"]) == 2 + 2 + 0
    stream = StreamingPredictor(bundle)
    predictions, _ = stream.feed_many(rows)
    report = stream.report["u0"]
    assert (report.restarts, report.rows_lost, report.predictions) == (2, 4, len(predictions))
    path = tmp_path / "rows.csv"
    write_csv(path, columns(rows))
    out = cli("predict", "--bundle", str(bundle), "--input", str(path), "--output", "-")
    assert "2 window restarts (4 rows without a prediction)" in out.stderr


# -- stream and verify -------------------------------------------------------------------------------


def test_stream_skips_a_line_with_extra_fields_and_goes_on(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    rows = fleet_rows(n_assets=2, n=5)
    path = tmp_path / "rows.csv"
    write_csv(path, columns(rows))
    lines = path.read_text().splitlines()
    lines.insert(3, "u0,99,1.0,2.0,surplus")  # becomes data row 3
    path.write_text("\n".join(lines) + "\n")
    out = cli("stream", "--bundle", str(bundle), "--input", str(path))
    assert out.returncode == 0, out.stderr
    assert "rejected row 3: line 4 has 5 fields but the header has 4" in out.stderr
    assert "11 rows streamed, 1 rejected, 6 predictions" in out.stderr  # 3 per asset from row 3
    strict = cli("stream", "--bundle", str(bundle), "--input", str(path), "--strict")
    assert strict.returncode == 1


def test_stream_without_a_required_column_is_a_whole_input_error(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    rows = [{k: v for k, v in r.items() if k != "b"} for r in fleet_rows(n_assets=1, n=4)]
    path = tmp_path / "rows.csv"
    write_csv(path, columns(rows))
    out = cli("stream", "--bundle", str(bundle), "--input", str(path))
    assert out.returncode == 2
    assert out.stderr.startswith("error: input lacks the column(s) ['b']")
    assert out.stdout == ""


def test_verify_names_files_the_manifest_does_not_list(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    assert "not listed" not in cli("verify", "--bundle", str(bundle)).stderr
    (bundle / "notes.txt").write_text("added after export")
    (bundle / "extra").mkdir()
    (bundle / "extra" / "model_v2.onnx").write_bytes(b"\x00")
    out = cli("verify", "--bundle", str(bundle))
    assert out.returncode == 0 and out.stdout.startswith("ok: bundle")
    assert "2 file(s) in the bundle folder are not listed in manifest.json" in out.stderr
    assert "extra/model_v2.onnx, notes.txt" in out.stderr
    assert cli("verify", "--bundle", str(bundle), "--strict").returncode == 1


# -- a window's prediction is its own --------------------------------------------------------------


def _bench_edge():
    spec = importlib.util.spec_from_file_location("bench_edge", REPO / "scripts" / "bench_edge.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def lstm_bundles(tmp_path_factory):
    """A float LSTM bundle, its INT8 export and an INT8 one as exports before per_window were."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from plantml.export.quantize import quantize

    root = tmp_path_factory.mktemp("lstm")
    bench = _bench_edge()
    fp32 = bench.synthetic_bundle(root / "fp32")
    out = {"fp32": fp32}
    for name in ("int8", "int8_old"):
        folder = root / name
        shutil.copytree(fp32, folder)
        if name == "int8":
            info = quantize(fp32 / "model.onnx", folder / "model.onnx", "dynamic")
            assert info["per_window"] is True
        else:
            quantize_dynamic(
                str(fp32 / "model.onnx"),
                str(folder / "model.onnx"),
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["LSTM", "MatMul"],
            )
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["model"]["per_window"] = True if name == "int8" else None
        for key in ("files", "manifest_sha256"):
            manifest.pop(key)
        write_manifest(folder, manifest)
        out[name] = folder
    return out, bench


def test_dynamic_int8_depends_on_the_batch_without_per_window_scoring(lstm_bundles):
    """The problem: one ONNX call over several windows shares the activation scales."""
    import onnxruntime as ort

    bundles, _ = lstm_bundles
    session = ort.InferenceSession(str(bundles["int8_old"] / "model.onnx"))
    x = np.random.default_rng(0).normal(size=(64, 30, 14)).astype(np.float32)
    x[7] *= 20  # one wild (but finite) window
    together = session.run(None, {"window": x})[0].ravel()
    alone = np.array([session.run(None, {"window": x[i : i + 1]})[0].ravel()[0] for i in range(64)])
    assert np.abs(together - alone).max() > 1e-4


@pytest.mark.parametrize("kind", ["fp32", "int8", "int8_old"])
def test_batch_equals_stream_equals_batch_size_one(lstm_bundles, kind):
    bundles, bench = lstm_bundles
    folder = bundles[kind]
    cols = bench.synthetic_rows(folder, n_rows=480, n_assets=4)
    # one asset's rows 10x larger: with shared scales its neighbours' predictions would move
    cols["sensor_0"] = [
        str(float(v) * (10 if cols["unit"][i] == "a3" else 1))
        for i, v in enumerate(cols["sensor_0"])
    ]
    model = EdgeModel(folder)
    assert model.window_calls is (kind != "fp32")  # older INT8 bundles too (found in the graph)

    def predict(rows: dict, batch_size: int = 1024) -> np.ndarray:
        return model.predict_rows(rows, batch_size=batch_size)[0]["failure_probability"]

    def only(asset: str) -> dict:
        keep = [u == asset for u in cols["unit"]]
        return {k: [v for v, k_ in zip(vals, keep, strict=True) if k_] for k, vals in cols.items()}

    batched, single = predict(cols), predict(cols, batch_size=1)
    alone = {a: predict(only(a)) for a in ("a0", "a1", "a2", "a3")}  # without its neighbours
    names = list(cols)
    stream = StreamingPredictor(model)
    streamed, errors = stream.feed_many(
        {c: cols[c][i] for c in names} for i in range(len(cols["unit"]))
    )
    assert errors == [] and len(streamed) == len(batched) == 4 * (120 - 29)
    np.testing.assert_array_equal(batched, single)
    by_asset = np.concatenate([alone[a] for a in ("a0", "a1", "a2", "a3")])
    np.testing.assert_array_equal(batched, by_asset)  # batch output is grouped by asset
    order = {"a0": 0, "a1": 1, "a2": 2, "a3": 3}
    streamed = sorted(streamed, key=lambda p: (order[p.asset], float(p.time)))
    np.testing.assert_array_equal(batched, np.array([p.value for p in streamed], np.float32))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (10**400, "infinite or too large"),  # JSON allows integers of any size
        ([1.0, 2.0], r"not a number: \[1.0, 2.0\]"),  # a list where a reading belongs
        (True, "not a number: True"),  # JSON true is not a reading
        ({"v": 1}, "not a number"),
    ],
)
def test_odd_json_values_are_row_errors_not_crashes(tmp_path, value, message):
    stream = StreamingPredictor(make_bundle(tmp_path / "b", features=("a", "b"), length=2))
    good = {"unit": "p1", "t": 1, "a": 1.0, "b": 2.0}
    assert stream.feed(good) is None
    with pytest.raises(RowError, match=message):
        stream.feed({**good, "t": 2, "a": value})
    assert stream.feed({**good, "t": 3}) is not None  # the asset goes on
