"""Reference profiles and sketches: format, merging, statistics against raw rows, device imports."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from plantml.monitoring.drift import chunk_drift
from plantml.monitoring.errors import ProfileError, SketchError
from plantml.monitoring.multivariate import fit_pca, reconstruction_error
from plantml.monitoring.profile import ReferenceProfile, load_profile, read_profile
from plantml.monitoring.sketch import ProfileSketch
from plantml.monitoring.stats import ks, psi, shares
from tests.bundles import make_bundle
from tests.monitoring_data import CONDITIONS, FEATURES, fleet


def test_profile_round_trips_and_is_small(monitoring_profile, tmp_path):
    p = monitoring_profile
    assert p.edges.shape == (4, 4, 9) and p.counts.shape == (4, 4, 10)
    assert p.signals == [*FEATURES, "multivariate"]
    # training counts add up per block, and the pooled block holds every row
    assert (p.counts.sum(-1) == p.stats["n"]).all()
    assert p.stats["n"][-1, 0] == p.stats["n"][:-1, 0].sum() == 60 * 200
    np.testing.assert_allclose(p.mix / p.mix.sum(), [0.3, 0.5, 0.2], atol=0.02)
    # quantile bins: each bin holds about a tenth of the rows of its condition
    np.testing.assert_allclose(shares(p.counts[:, :3]), 0.1, atol=0.01)
    path = p.save(tmp_path / "reference_profile.json")
    again = read_profile(path)
    assert again.sha256 == p.sha256
    assert json.dumps(again.to_dict(), sort_keys=True) == json.dumps(p.to_dict(), sort_keys=True)
    assert path.stat().st_size < 20_000
    assert p.null["mu"].shape == (4, 4, 3) and np.isfinite(p.null["mu"]).all()


def test_profile_errors_name_the_fix(monitoring_profile, tmp_path):
    d = monitoring_profile.to_dict()
    with pytest.raises(ProfileError, match="not a reference profile"):
        ReferenceProfile.from_dict({"format": "other"})
    with pytest.raises(ProfileError, match="format_version 9 is not supported"):
        ReferenceProfile.from_dict({**d, "format_version": 9})
    bad = json.loads(json.dumps(d))
    bad["input"]["counts"] = bad["input"]["counts"][:2]
    with pytest.raises(ProfileError, match=r"input.counts has shape .*re-export"):
        ReferenceProfile.from_dict(bad)
    (tmp_path / "p.json").write_text("{nope")
    with pytest.raises(ProfileError, match="not valid JSON"):
        read_profile(tmp_path / "p.json")
    # a bundle without a profile still loads; monitoring says how to get one
    plain = make_bundle(tmp_path / "plain")
    assert load_profile(plain, required=False) is None
    with pytest.raises(ProfileError, match=r"no reference profile .* re-export"):
        load_profile(plain)
    wrong = make_bundle(tmp_path / "wrong", features=("x", "y", "z"), profile=monitoring_profile)
    with pytest.raises(ProfileError, match="describes features"):
        load_profile(wrong)


def _bundle_with_profile(tmp_path, profile):
    conditions = {
        "mode": "column",
        "column": "regime",
        "names": CONDITIONS,
        "categories": CONDITIONS,
    }
    return make_bundle(tmp_path / "b", features=FEATURES, conditions=conditions, profile=profile)


def test_bundle_lists_and_hashes_the_profile(monitoring_profile, tmp_path):
    from plantml.edge import BundleError, load_bundle

    folder = _bundle_with_profile(tmp_path, monitoring_profile)
    bundle = load_bundle(folder)
    assert "reference_profile.json" in bundle.manifest["files"]
    assert load_profile(bundle).sha256 == monitoring_profile.sha256
    profile_file = folder / "reference_profile.json"
    profile_file.write_text(profile_file.read_text().replace('"bins":10', '"bins":10 '))
    with pytest.raises(BundleError, match=r"reference_profile\.json has SHA-256"):
        load_bundle(folder)


def test_merged_sketches_equal_one_sketch_of_all_rows(monitoring_profile):
    p = monitoring_profile
    x, codes, _ = fleet(12, 150, seed=7)
    x[::97, 1] = np.nan  # missing values are counted, not binned
    codes[::131] = -1  # rows in an unseen condition
    whole = ProfileSketch(p).update(x, codes)
    devices = [ProfileSketch(p).update(x[i::3], codes[i::3]) for i in range(3)]
    # each device sends its sketch as JSON; the cloud rebuilds and merges them
    rebuilt = [ProfileSketch.from_dict(json.loads(json.dumps(s.to_dict())), p) for s in devices]
    merged = ProfileSketch.merged(p, rebuilt)
    assert (merged.counts == whole.counts).all() and (merged.rows == whole.rows).all()
    assert (merged.missing == whole.missing).all()
    np.testing.assert_allclose(merged.moments.mean, whole.moments.mean, rtol=1e-12)
    np.testing.assert_allclose(merged.moments.m2, whole.moments.m2, rtol=1e-10)
    a, b = chunk_drift(p, merged), chunk_drift(p, whole)
    for metric in a.input:
        np.testing.assert_allclose(a.input[metric], b.input[metric], rtol=1e-9, equal_nan=True)
    assert a.mix["chi2"] == pytest.approx(b.mix["chi2"])
    assert merged.rows[3] == (codes == -1).sum()  # the unseen block
    assert merged.rows[-1] == len(x)


def test_statistics_match_raw_rows(monitoring_profile):
    """PSI and KS from the sketch are those of the raw rows binned at the reference edges;
    the binned Wasserstein distance is close to the exact one."""
    p = monitoring_profile
    x, codes, _ = fleet(20, 150, seed=3)
    x[:, 0] += 0.7  # a shift, so that the distances are not all near zero
    drift = chunk_drift(p, ProfileSketch(p).update(x, codes))
    ref_rows, ref_codes, _ = fleet(60, 200, seed=0)
    for k in range(3):
        for j in range(3):
            rows = x[codes == k, j]
            edges = np.r_[-np.inf, p.edges[k, j], np.inf]
            counts, _ = np.histogram(rows, edges)
            # np.histogram bins are [a, b), the sketch's too (searchsorted right)
            assert drift.input["psi"][k, j] == pytest.approx(float(psi(p.counts[k, j], counts)))
            ecdf = np.searchsorted(np.sort(rows), p.edges[k, j], side="left") / len(rows)
            ref_cdf = np.cumsum(p.counts[k, j])[:-1] / p.counts[k, j].sum()
            assert drift.input["ks"][k, j] == pytest.approx(np.abs(ecdf - ref_cdf).max())
            exact = wasserstein_distance(ref_rows[ref_codes == k, j], rows)
            binned = drift.input["wasserstein"][k, j] * p.std_floor[k, j]
            assert binned == pytest.approx(exact, rel=0.1, abs=0.02)
            mean_shift = (rows.mean() - p.stats["mean"][k, j]) / p.std_floor[k, j]
            assert drift.input["mean_shift"][k, j] == pytest.approx(mean_shift, rel=1e-6)
    assert drift.input["mean_shift"][:3, 0] == pytest.approx([0.7, 0.7, 0.7], abs=0.15)
    assert np.abs(drift.input["mean_shift"][:3, 2]).max() < 0.15


def test_sketch_memory_does_not_grow_with_rows(monitoring_profile):
    p = monitoring_profile
    small, _, _ = fleet(1, 50, seed=1)
    big, big_codes, _ = fleet(40, 500, seed=2)
    s1 = ProfileSketch(p).update(small, np.zeros(50, int))
    s2 = ProfileSketch(p).update(big, big_codes)
    assert len(json.dumps(s1.to_dict())) == pytest.approx(len(json.dumps(s2.to_dict())), rel=0.35)
    assert s2.n_rows == 20_000 and len(json.dumps(s2.to_dict())) < 8_000


def test_multivariate_signal_sees_a_broken_correlation():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, 2000)
    x = np.column_stack([a, 2 * a + rng.normal(0, 0.1, 2000), rng.normal(0, 1, 2000)])
    pca = fit_pca(x, 0.9)
    assert pca["components"].shape == (2, 3)
    broken = x.copy()
    broken[:, 1] = rng.permutation(broken[:, 1])  # same marginal, correlation gone
    assert np.median(reconstruction_error(broken, pca)) > 20 * np.median(
        reconstruction_error(x, pca)
    )


def test_cluster_distance_beyond_training_is_unseen(monitoring_profile):
    p = ReferenceProfile.from_dict(monitoring_profile.to_dict())
    p.distance_limit = np.array([1.0, 1.0, 1.0])
    x, codes, _ = fleet(2, 100, seed=5)
    distance = np.where(np.arange(200) < 50, 3.0, 0.2)
    s = ProfileSketch(p).update(x, codes, distance=distance)
    assert s.rows[3] == 50 and s.rows[:3].sum() == 150


def test_outputs_and_alarm_rate(monitoring_profile):
    p = monitoring_profile
    preds = np.r_[np.full(80, 0.1), np.full(20, 0.9)]
    codes = np.r_[np.zeros(50, int), np.ones(50, int)]
    s = ProfileSketch(p).update_outputs(preds, codes, (preds >= 0.5).astype(int))
    d = chunk_drift(p, s)
    assert d.output["alarm_rate"][0] == 0.0 and d.output["alarm_rate"][1] == pytest.approx(0.4)
    assert d.output["alarm_rate"][-1] == pytest.approx(0.2)
    assert d.output["n"][-1] == 100


def test_bad_sketch_inputs_are_named(monitoring_profile, tmp_path):
    p = monitoring_profile
    s = ProfileSketch(p)
    with pytest.raises(SketchError, match=r"shape \(n, 3\)"):
        s.update(np.zeros((4, 2)), np.zeros(4, int))
    with pytest.raises(SketchError, match="one code per row"):
        s.update(np.zeros((4, 3)), np.zeros(3, int))
    with pytest.raises(SketchError, match="must be integers"):
        s.update(np.zeros((4, 3)), np.zeros(4))
    with pytest.raises(SketchError, match="one per prediction"):
        s.update_outputs(np.zeros(4), np.zeros(3, int))
    other = ReferenceProfile.from_dict({**p.to_dict(), "source": {"other": True}})
    with pytest.raises(SketchError, match="different reference profiles"):
        s.merge(ProfileSketch(other))
    with pytest.raises(SketchError, match="made by another bundle"):
        ProfileSketch.from_dict(ProfileSketch(other).to_dict(), p)
    d = s.to_dict()
    d["input"]["counts"][0][0][0] = -1
    with pytest.raises(SketchError, match="negative counts"):
        ProfileSketch.from_dict(d, p)
    d = s.to_dict()
    d["input"]["counts"] = d["input"]["counts"][:2]
    with pytest.raises(SketchError, match="has shape"):
        ProfileSketch.from_dict(d, p)


def test_agent_provider_batches_rows_and_snapshots(monitoring_profile, tmp_path):
    from plantml.edge import load_bundle
    from plantml.edge.streaming import Prediction
    from plantml.monitoring.agent_sketch import DriftSketch

    bundle = load_bundle(_bundle_with_profile(tmp_path, monitoring_profile))
    provider = DriftSketch(bundle, batch=64)
    x, codes, _ = fleet(1, 300, seed=9)
    for i, row in enumerate(x):
        pred = None
        if i % 3 == 0:
            pred = Prediction(
                "u1", i, CONDITIONS[codes[i]], 0.9 if i % 30 == 0 else 0.1, i % 30 == 0
            )
        provider.update(
            {"a": row[0], "b": row[1], "c": row[2], "regime": CONDITIONS[codes[i]]}, pred
        )
    snap = json.loads(json.dumps(provider.snapshot()))
    assert snap["kind"] == "plantml-drift" and snap["rows"] == 300 and snap["predictions"] == 100
    sketch = ProfileSketch.from_dict(snap["sketch"], monitoring_profile)
    direct = ProfileSketch(monitoring_profile).update(x, codes)
    assert (sketch.counts == direct.counts).all()
    assert sketch.alarms[-1] == 10 and sketch.alarm_n[-1] == 100
    assert provider.snapshot()["rows"] == 0  # the next interval starts empty
    plain = DriftSketch(load_bundle(make_bundle(tmp_path / "plain")))
    plain.update({"a": 1.0, "b": 2.0}, None)
    assert plain.snapshot()["sketch"] is None


def test_device_side_imports_stay_light(monitoring_profile, tmp_path):
    folder = _bundle_with_profile(tmp_path, monitoring_profile)
    code = f"""
import sys, numpy as np
from plantml.monitoring.profile import load_profile
from plantml.monitoring.sketch import ProfileSketch
from plantml.monitoring.drift import chunk_drift
from plantml.monitoring.null import null_scores
from plantml.monitoring.agent_sketch import DriftSketch
from plantml.monitoring.scenarios import fleet_chunks
p = load_profile({str(folder)!r})
s = ProfileSketch(p).update(np.ones((5, 3)), np.zeros(5, dtype=int))
d = chunk_drift(p, s)
null_scores(p, d.input["wasserstein"], d.n)
heavy = [m for m in ("torch", "pandas", "lightning", "hydra", "omegaconf", "scipy", "sqlalchemy",
                     "matplotlib", "paho") if m in sys.modules]
print(heavy)
assert not heavy
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_ks_and_psi_values():
    ref = np.array([25, 25, 25, 25])
    assert psi(ref, ref) == 0.0 and ks(ref, ref) == 0.0
    cur = np.array([50, 50, 0, 0])
    assert ks(ref, cur) == pytest.approx(0.5)
    expected = 2 * (0.5 - 0.25) * np.log(0.5 / 0.25) + 2 * (1e-4 - 0.25) * np.log(1e-4 / 0.25)
    assert psi(ref, cur) == pytest.approx(expected)
