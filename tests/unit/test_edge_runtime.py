"""The torch-free edge runtime: bundles, preprocessing, windows, streaming, CLI.

Bundles are built here with a hand-made ONNX graph (a MatMul with known
weights over the flattened window), so every expected prediction is a numpy
one-liner.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from plantml.edge import (
    BundleError,
    EdgeModel,
    InputError,
    RowError,
    StreamingPredictor,
    load_bundle,
)
from plantml.edge.bundle import write_manifest
from plantml.edge.io import iter_rows, read_csv, read_table, write_csv
from tests.bundles import columns, fleet_rows, make_bundle, reference

EDGE = Path(sys.executable).parent / "plantml-edge"


@pytest.fixture
def bundle_dir(tmp_path) -> Path:
    return make_bundle(tmp_path / "bundle")


# --- bundle checks -------------------------------------------------------------------------------


def test_bundle_loads_and_hashes_are_verified(bundle_dir):
    bundle = load_bundle(bundle_dir)
    assert bundle.required_columns == ["unit", "t", "a", "b"]
    assert set(bundle.manifest["files"]) == {"model.onnx", "weights.npy"}
    assert load_bundle(bundle_dir / "manifest.json").name == "test-bundle"


def test_tampered_model_is_rejected(bundle_dir):
    recorded = json.loads((bundle_dir / "manifest.json").read_text())["files"]["model.onnx"]
    with open(bundle_dir / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="modified or corrupted") as err:
        load_bundle(bundle_dir)
    assert "model.onnx" in str(err.value) and recorded in str(err.value)
    assert "re-export" in str(err.value)


def test_tampered_listed_file_and_missing_file_are_rejected(bundle_dir):
    (bundle_dir / "weights.npy").write_bytes(b"changed")
    with pytest.raises(BundleError, match=r"weights\.npy has SHA-256"):
        load_bundle(bundle_dir)
    (bundle_dir / "weights.npy").unlink()
    with pytest.raises(BundleError, match=r"weights\.npy is listed .* missing"):
        load_bundle(bundle_dir)
    with pytest.raises(BundleError, match="not found"):
        load_bundle(bundle_dir / "nowhere")


def test_edited_manifest_is_rejected(bundle_dir):
    path = bundle_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["normalization"]["scale"][-1][0] *= 2  # a plausible, silent change
    path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="edited after export"):
        load_bundle(bundle_dir)


def test_inconsistent_manifest_is_rejected(bundle_dir):
    path = bundle_dir / "manifest.json"
    good = json.loads(path.read_text())
    bad = json.loads(path.read_text())
    bad["normalization"]["offset"] = [[0.0], [0.0]]
    path.write_text(json.dumps(bad))
    with pytest.raises(BundleError, match=r"normalization.offset has shape \(2, 1\), expected"):
        load_bundle(bundle_dir)
    bad = {**good, "format_version": 2}
    path.write_text(json.dumps(bad))
    with pytest.raises(BundleError, match="upgrade plantml"):
        load_bundle(bundle_dir)
    bad = {**good, "files": {"weights.npy": good["files"]["weights.npy"]}}
    path.write_text(json.dumps(bad))
    with pytest.raises(BundleError, match=r"does not list 'model\.onnx'"):
        load_bundle(bundle_dir)
    bad = {**good, "files": {**good["files"], "../secret": "0"}}
    path.write_text(json.dumps(bad))
    with pytest.raises(BundleError, match="outside the bundle"):
        load_bundle(bundle_dir)


# --- windows, conditions, normalization ----------------------------------------------------------


def test_single_condition_windows_and_predictions_match_numpy(bundle_dir):
    rows = fleet_rows()
    model = EdgeModel(bundle_dir)
    expected = reference(bundle_dir, rows)
    win = model.windows_for_rows(columns(rows))
    assert len(win) == len(expected) == 3 * 10 and not win.errors
    for w, a, t in zip(win.windows(), win.asset, win.time, strict=True):
        np.testing.assert_array_equal(w, expected[(a, t)][0])
    out, errors = model.predict_rows(columns(rows), batch_size=7)
    assert not errors and "alarm" not in out
    assert list(out) == ["asset", "time", "condition", "score"]
    # by asset in order of first appearance, then time
    assert out["asset"] == [f"u{a}" for a in range(3) for _ in range(10)]
    assert out["time"][:10] == [str(t) for t in range(3, 13)]
    got = {(a, t): v for a, t, v in zip(out["asset"], out["time"], out["score"], strict=True)}
    for key, (_, value) in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-5)


def test_column_conditions_per_condition_scaling_and_unseen(tmp_path):
    conditions = {"mode": "column", "column": "load", "names": ["1", "2"], "categories": ["1", "2"]}
    d = make_bundle(tmp_path / "b", conditions=conditions, per_condition=True)
    rows = fleet_rows(n_assets=2, n=8)
    loads = ["1.0", "2", "3", "1", 2, "2.0", "x"]  # numbers match by value; 3 and x are unseen
    for i, r in enumerate(rows):
        r["load"] = loads[i % len(loads)]
    codes = [{"1.0": 0, "1": 0, "2": 1, 2: 1, "2.0": 1}.get(r["load"], -1) for r in rows]
    expected = reference(d, rows, codes)
    model = EdgeModel(d)
    win = model.windows_for_rows(columns(rows))
    assert len(win) == len(expected) == 12
    for w, a, t in zip(win.windows(), win.asset, win.time, strict=True):
        np.testing.assert_array_equal(w, expected[(a, t)][0])
    out, _ = model.predict_rows(columns(rows))
    by_key = dict(zip(zip(out["asset"], out["time"], strict=True), out["condition"], strict=True))
    names = {0: "1", 1: "2", -1: "unseen"}
    for r, c in zip(rows, codes, strict=True):
        if (r["unit"], r["t"]) in by_key:
            assert by_key[(r["unit"], r["t"])] == names[c]


def test_cluster_conditions_match_nearest_centroid(tmp_path):
    center, cscale = np.array([10.0, 0.5]), np.array([5.0, 0.25])
    centroids = np.array([[-1.0, -1.0], [0.0, 0.0], [1.0, 1.0]])
    conditions = {
        "mode": "cluster",
        "settings": ["op1", "op2"],
        "names": ["low", "mid", "high"],
        "center": center.tolist(),
        "scale": cscale.tolist(),
        "centroids": centroids.tolist(),
    }
    d = make_bundle(tmp_path / "b", conditions=conditions, per_condition=True)
    rows = fleet_rows(n_assets=2, n=10)
    rng = np.random.default_rng(3)
    for r in rows:
        r["op1"], r["op2"] = repr(float(rng.uniform(0, 20))), repr(float(rng.uniform(0, 1)))
    pts = np.array([[float(r["op1"]), float(r["op2"])] for r in rows])
    z = np.nan_to_num((pts - center) / cscale)
    codes = np.argmin(((z[:, None] - centroids[None]) ** 2).sum(-1), axis=1).tolist()
    assert len(set(codes)) == 3
    expected = reference(d, rows, codes)
    model = EdgeModel(d)
    assert model.bundle.required_columns == ["unit", "t", "a", "b", "op1", "op2"]
    win = model.windows_for_rows(columns(rows))
    assert len(win) == len(expected)
    for w, a, t in zip(win.windows(), win.asset, win.time, strict=True):
        np.testing.assert_array_equal(w, expected[(a, t)][0])
    names = ["low", "mid", "high"]
    last = {(r["unit"], r["t"]): names[c] for r, c in zip(rows, codes, strict=True)}
    out, _ = model.predict_rows(columns(rows))
    assert out["condition"] == [last[k] for k in zip(out["asset"], out["time"], strict=True)]


def test_stride_and_gap_restart(tmp_path):
    d = make_bundle(tmp_path / "b", length=3, stride=2, max_gap=1.5)
    times = [1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13]  # a gap of 2 between 7 and 9
    rows = [{"unit": "A", "t": str(t), "a": str(t), "b": "0"} for t in times]
    out, errors = EdgeModel(d).predict_rows(columns(rows))
    # windows end at 3..7 (every 2nd: 3, 5, 7); restart at 9: full at 11, then 13
    assert out["time"] == ["3", "5", "7", "11", "13"] and not errors
    expected = reference(d, rows)
    assert sorted(expected) == sorted(("A", t) for t in out["time"])


def test_bad_rows_are_reported_and_skipped_alone(bundle_dir):
    rows = fleet_rows(n_assets=2, n=12)  # rows alternate u0, u1; row number = index + 1
    rows[2]["a"] = ""  # u0 t=2: missing
    rows[4]["b"] = "nan"  # u0 t=3
    rows[6]["a"] = "abc"  # u0 t=4
    rows[8]["t"] = "0"  # u0 t=5 -> 0: before the accepted t=1
    rows[10]["t"] = "1"  # u0 t=6 -> 1: duplicate
    rows[12]["a"] = "inf"  # u0 t=7
    rows[14]["unit"] = ""  # t=8: no asset
    out, errors = EdgeModel(bundle_dir).predict_rows(columns(rows))
    by_row = {e.row_number: e for e in errors}
    assert sorted(by_row) == [3, 5, 7, 9, 11, 13, 15]
    assert by_row[3].column == "a" and "missing value" in by_row[3].message
    assert by_row[5].column == "b" and "NaN" in by_row[5].message
    assert by_row[7].column == "a" and "not a number: 'abc'" in by_row[7].message
    assert by_row[9].column == "t" and "time goes backwards" in by_row[9].message
    assert by_row[11].column == "t" and "duplicate time" in by_row[11].message
    assert "infinite" in by_row[13].message
    assert by_row[15].column == "unit" and "missing asset" in by_row[15].message
    assert all(e.asset == "u0" for e in errors if e.row_number != 15)
    assert "row 7 (asset 'u0'), column 'a': not a number" in str(by_row[7])
    # u1 is untouched: its 12 rows give 10 windows
    assert out["asset"].count("u1") == 10
    # u0 keeps t=1, 9, 10, 11, 12 (no max_gap in this bundle): windows end at 10, 11, 12
    u0 = [t for a, t in zip(out["asset"], out["time"], strict=True) if a == "u0"]
    assert u0 == ["10", "11", "12"]


def test_time_going_backwards_is_rejected(bundle_dir):
    rows = [{"unit": "A", "t": str(t), "a": "1", "b": "2"} for t in (1, 2, 3, 5, 4, 6)]
    out, errors = EdgeModel(bundle_dir).predict_rows(columns(rows))
    assert [e.row_number for e in errors] == [5]
    assert "time goes backwards: 4 is before the asset's previous row at 5" in errors[0].message
    assert out["time"] == ["3", "5", "6"]


def test_missing_column_is_a_whole_input_error(bundle_dir):
    rows = columns(fleet_rows())
    del rows["b"]
    with pytest.raises(InputError, match=r"lacks the column\(s\) \['b'\].*present: unit, t, a"):
        EdgeModel(bundle_dir).predict_rows(rows)


def test_datetime_time_and_gap_in_seconds(tmp_path):
    d = make_bundle(tmp_path / "b", time_kind="datetime", max_gap=5400.0, length=2)
    stamps = [
        "2024-01-01T00:00:00",
        "2024-01-01 01:00:00",
        "2024-01-01T02:00:00+00:00",
        "2024-01-01T04:00:00Z",  # 2 h gap: restart
        "2024-01-01T06:00:00+01:00",  # = 05:00 UTC
    ]
    rows = [{"unit": "A", "t": s, "a": str(i), "b": "0"} for i, s in enumerate(stamps)]
    rows.append({"unit": "A", "t": "yesterday", "a": "1", "b": "1"})
    out, errors = EdgeModel(d).predict_rows(columns(rows))
    assert out["time"] == [stamps[1], stamps[2], stamps[4]]
    assert len(errors) == 1 and "ISO-8601" in errors[0].message


def test_alarm_above_and_below(tmp_path):
    rows = fleet_rows(n_assets=1, n=20)
    plain, _ = EdgeModel(make_bundle(tmp_path / "plain")).predict_rows(columns(rows))
    thr = float(np.median(plain["score"]))  # same seed: same weights, so half the rows alarm
    above = EdgeModel(make_bundle(tmp_path / "up", threshold=thr))
    below = EdgeModel(make_bundle(tmp_path / "down", threshold=thr, alarm_when="below"))
    out, _ = above.predict_rows(columns(rows))
    np.testing.assert_array_equal(out["alarm"], (out["score"] >= thr).astype(np.int8))
    assert 0 < out["alarm"].sum() < len(out["alarm"])
    out, _ = below.predict_rows(columns(rows))
    np.testing.assert_array_equal(out["alarm"], (out["score"] <= thr).astype(np.int8))
    assert 0 < out["alarm"].sum() < len(out["alarm"])


def test_fixed_batch_model_and_batching(tmp_path):
    d = make_bundle(tmp_path / "b", batch=1)
    rows = fleet_rows()
    dynamic = EdgeModel(make_bundle(tmp_path / "dyn"))
    out_fixed, _ = EdgeModel(d).predict_rows(columns(rows), batch_size=4)
    out_dyn, _ = dynamic.predict_rows(columns(rows), batch_size=4)
    np.testing.assert_allclose(out_fixed["score"], out_dyn["score"], rtol=1e-6)


# --- streaming -----------------------------------------------------------------------------------


def test_streaming_equals_batch(tmp_path):
    d = make_bundle(tmp_path / "b", length=4, stride=2, max_gap=1.5, threshold=0.0)
    rows = fleet_rows(n_assets=3, n=30, seed=5)
    rows = [r for i, r in enumerate(rows) if i not in (40, 41)]  # a gap for two assets
    rows[10]["a"], rows[20]["t"], rows[33]["b"] = "", "1", "x"
    model = EdgeModel(d)
    out, errors = model.predict_rows(columns(rows))
    preds, stream_errors = StreamingPredictor(model).feed_many(rows)
    assert [str(e) for e in stream_errors] == [str(e) for e in errors]
    assert len(preds) == len(out["score"]) > 20
    batch = {(a, t): (c, v, al) for a, t, c, v, al in zip(*(out[k] for k in out), strict=True)}
    for p in preds:
        c, v, al = batch[(p.asset, p.time)]
        assert (p.condition, bool(al)) == (c, p.alarm)
        assert p.value == pytest.approx(float(v), rel=1e-6, abs=1e-6)


def test_streaming_bad_row_raises_and_changes_nothing(bundle_dir):
    rows = fleet_rows(n_assets=2, n=6)
    clean_preds, _ = StreamingPredictor(bundle_dir).feed_many(rows)
    stream = StreamingPredictor(bundle_dir)
    got = []
    for i, row in enumerate(rows):
        if i == 5:
            with pytest.raises(RowError, match=r"column 'a': not a number: 'oops'"):
                stream.feed({**row, "a": "oops"})
            with pytest.raises(RowError, match=r"lacks the column\(s\) \['b'\]"):
                stream.feed({k: v for k, v in row.items() if k != "b"})
            with pytest.raises(RowError, match="time goes backwards"):
                stream.feed({**row, "t": "0"})
        p = stream.feed(row)
        if p is not None:
            got.append(p)
    assert got == clean_preds
    stream.reset("u0")
    assert stream.feed({"unit": "u0", "t": "100", "a": "1", "b": "1"}) is None


# --- CLI -----------------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(EDGE), *args], capture_output=True, text=True, timeout=60)


def write_rows(path: Path, rows: list[dict]) -> Path:
    write_csv(path, columns(rows))
    return path


def test_cli_predict_verify_info_stream(tmp_path):
    d = make_bundle(tmp_path / "b", threshold=0.0)
    rows = fleet_rows(n_assets=2, n=6)
    rows[3]["a"] = "abc"
    src = write_rows(tmp_path / "in.csv", rows)
    out_csv, err_csv = tmp_path / "out.csv", tmp_path / "errors.csv"
    predict = ["predict", "--bundle", str(d), "--input", str(src), "--output", str(out_csv)]
    r = run_cli(*predict, "--errors", str(err_csv))
    assert r.returncode == 0, r.stderr
    assert "12 rows read, 1 rejected, 7 predictions written" in r.stdout
    assert "rejected row 4 (asset 'u1'), column 'a': not a number" in r.stderr
    written = read_csv(out_csv)
    assert list(written) == ["asset", "time", "condition", "score", "alarm"]
    expected, _ = EdgeModel(d).predict_rows(columns(rows))
    assert written["score"] == expected["score"].astype(str).tolist()
    assert read_csv(err_csv)["row"] == ["4"]
    r = run_cli(*predict, "--strict")
    assert r.returncode == 1
    r = run_cli("stream", "--bundle", str(d), "--input", str(src))
    assert r.returncode == 0, r.stderr
    lines = list(csv.reader(r.stdout.splitlines()))
    assert lines[0] == ["asset", "time", "condition", "score", "alarm"]
    streamed = sorted(lines[1:])
    assert streamed == sorted(map(list, zip(*(written[k] for k in written), strict=True)))
    r = run_cli("verify", "--bundle", str(d))
    assert r.returncode == 0 and "ok: bundle test-bundle version 1" in r.stdout
    assert "inputs: unit, t, a, b" in r.stdout
    r = run_cli("info", "--bundle", str(d))
    assert r.returncode == 0, r.stderr
    assert "window:      3 rows, stride 1" in r.stdout and "test/auroc=0.91" in r.stdout
    assert "alarm:       score >= 0" in r.stdout


def test_cli_errors_are_one_line_and_exit_2(tmp_path):
    d = make_bundle(tmp_path / "b")
    rows = fleet_rows()
    for r in rows:
        del r["b"]
    src = write_rows(tmp_path / "in.csv", rows)
    r = run_cli("predict", "--bundle", str(d), "--input", str(src), "--output", "o.csv")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: input lacks the column(s) ['b']")
    with open(d / "model.onnx", "ab") as f:
        f.write(b"x")
    r = run_cli("verify", "--bundle", str(d))
    assert r.returncode == 2 and "modified or corrupted" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def write_parquet(path: Path, rows: list[dict], datetime_time: bool = False) -> Path:
    """Typed Parquet columns (timestamps in UTC when ``datetime_time``); '' becomes null."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def num(v):
        return None if v == "" else float(v)

    t = [r["t"] if datetime_time else int(r["t"]) for r in rows]
    if datetime_time:
        t = pa.array(np.array(t, dtype="datetime64[us]")).cast(pa.timestamp("us", tz="UTC"))
    table = pa.table(
        {
            "unit": [r["unit"] for r in rows],
            "t": t,
            "a": [num(r["a"]) for r in rows],
            "b": [num(r["b"]) for r in rows],
        }
    )
    pq.write_table(table, path)
    return path


def test_parquet_input(tmp_path, bundle_dir):
    pytest.importorskip("pyarrow")
    rows = fleet_rows(n_assets=2, n=5)
    rows[3]["b"] = ""
    src = write_parquet(tmp_path / "in.parquet", rows)
    out, errors = EdgeModel(bundle_dir).predict_rows(read_table(src))
    from_csv, csv_errors = EdgeModel(bundle_dir).predict_rows(columns(rows))
    assert [e.row_number for e in errors] == [4] and "missing value" in errors[0].message
    assert [str(e) for e in errors] == [str(e) for e in csv_errors]
    np.testing.assert_allclose(out["score"], from_csv["score"], rtol=1e-6)
    assert out["time"] == [3, 4, 5, 4, 5]  # as given: integers stay integers
    # timestamps: Parquet datetime column vs the same instants as ISO strings in a CSV
    d = make_bundle(tmp_path / "dt", time_kind="datetime", max_gap=5400.0)
    for r in rows:
        r["t"] = f"2024-01-01T{int(r['t']):02d}:00:00"
    out, _ = EdgeModel(d).predict_rows(
        read_table(write_parquet(tmp_path / "dt.parquet", rows, True))
    )
    from_csv, _ = EdgeModel(d).predict_rows(columns(rows))
    np.testing.assert_allclose(out["score"], from_csv["score"], rtol=1e-6)
    # u1 lost its 02:00 row: the 2 h step restarts its window, full again at 05:00
    assert out["asset"] == from_csv["asset"] == ["u0", "u0", "u0", "u1"]
    assert out["time"][-1] == "2024-01-01T05:00:00.000000Z"  # Parquet timestamps: ISO, UTC
    preds, _ = StreamingPredictor(d).feed_many(iter_rows(tmp_path / "dt.parquet"))
    assert [(p.asset, p.time) for p in preds] == list(zip(out["asset"], out["time"], strict=True))


def test_edge_imports_no_torch_pandas_lightning_or_hydra(tmp_path, bundle_dir):
    src = write_rows(tmp_path / "in.csv", fleet_rows())
    parquet = write_parquet(tmp_path / "in.parquet", fleet_rows())
    code = f"""
import sys
import plantml.edge, plantml.cli.edge
from plantml.edge.io import read_table
model = plantml.edge.EdgeModel({str(bundle_dir)!r})
out, errors = model.predict_rows(read_table({str(src)!r}))
assert len(out["score"]) == 30
out, errors = model.predict_rows(read_table({str(parquet)!r}))
assert len(out["score"]) == 30
heavy = [m for m in ("torch", "pandas", "lightning", "hydra", "omegaconf", "scipy")
         if m in sys.modules]
others = [m for m in sys.modules if m.startswith("plantml.")
          and not m.startswith(("plantml.edge", "plantml.cli", "plantml.core", "plantml.errors"))]
others += [m for m in sys.modules if m.startswith("plantml.cli.") and m != "plantml.cli.edge"]
print(heavy, others)
assert not heavy and not others
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_bundle_trained_without_asset_ids_needs_no_asset_column(tmp_path):
    """Assets made up from file names in training: on the device each input is one asset."""
    folder = make_bundle(tmp_path / "b", features=("a", "b"), length=3)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["input"]["asset_column"] = None
    write_manifest(folder, manifest)
    model = EdgeModel(folder)
    assert model.bundle.required_columns[0] == model.bundle.time_column
    rows = {"t": [1, 2, 3, 4], "a": [1.0, 2.0, 3.0, 4.0], "b": [0.0, 1.0, 0.0, 1.0]}
    out, errors = model.predict_rows(rows, asset="pump_7")
    assert not errors and out["asset"] == ["pump_7", "pump_7"] and out["time"] == [3, 4]
    stream = StreamingPredictor(model, asset="pump_7")
    preds, errors = stream.feed_many({k: v[i] for k, v in rows.items()} for i in range(4))
    assert [p.value for p in preds] == pytest.approx(out[model.bundle.output_name].tolist())
    path = tmp_path / "pump_7.csv"
    write_csv(path, rows)
    proc = subprocess.run(
        [str(EDGE), "predict", "--bundle", str(folder), "--input", str(path), "--output", "-"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and proc.stdout.splitlines()[1].startswith("pump_7,3,")
