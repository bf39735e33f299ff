"""Conformal RUL intervals (split and Mondrian), probability calibration, the ONNX fold-in."""

from __future__ import annotations

import numpy as np
import pytest

from plantml.core.intervals import interval_bounds
from plantml.errors import ConfigError, DataError
from plantml.evaluation.calibration import (
    apply_scaling,
    expected_calibration_error,
    fit_scaling,
    logit,
)
from plantml.evaluation.conformal import (
    conformal_quantile,
    coverage_table,
    crossfit_coverage,
    fit_half_widths,
)


def test_conformal_quantile_is_the_finite_sample_rank():
    r = np.arange(1, 20, dtype=float)  # n = 19
    assert conformal_quantile(r, 0.9) == 18.0  # ceil(20 * 0.9) = 18th smallest
    assert conformal_quantile(-r, 0.5) == 10.0  # absolute residuals
    assert conformal_quantile(r[:5], 0.9) == np.inf  # too few for 90 %


def _noisy(n, rng, noise_by_condition=(2.0, 10.0)):
    codes = rng.integers(0, len(noise_by_condition), n)
    target = rng.uniform(0, 125, n)
    pred = target + rng.normal(0, np.take(noise_by_condition, codes))
    return pred, target, codes


def test_mondrian_covers_every_condition_where_one_width_does_not():
    rng = np.random.default_rng(0)
    cal = _noisy(4000, rng)
    new = _noisy(20000, rng)
    names = ["quiet", "noisy"]
    for by in ("none", "condition"):
        q, notes = fit_half_widths(*cal, 2, 0.9, by)
        table = coverage_table(*new, q, by, names)
        assert abs(table["coverage"] - 0.9) < 0.02 and not notes
        per = {c: table["by_condition"][c]["coverage"] for c in names}
        if by == "condition":
            assert all(abs(v - 0.9) < 0.02 for v in per.values())
            assert table["by_condition"]["quiet"]["width"] < table["by_condition"]["noisy"]["width"]
        else:  # one width: over-covers the quiet condition, under-covers the noisy one
            assert per["quiet"] > 0.97 and per["noisy"] < 0.85


def test_crossfit_coverage_on_units_and_small_conditions_fall_back():
    rng = np.random.default_rng(1)
    pred, target, codes = _noisy(3000, rng)
    assets = rng.integers(0, 12, 3000)
    cov = crossfit_coverage(pred, target, codes, assets, 2, 0.8, "condition", ["a", "b"], 5)
    assert abs(cov["coverage"] - 0.8) < 0.03 and cov["coverage_std"] >= 0
    q, notes = fit_half_widths(
        pred[:40], target[:40], np.r_[np.zeros(38), [1, 1]], 2, 0.9, "condition"
    )
    assert q[1] == q[-1] and "too few" in notes[0]  # 2 windows of condition 1: global width
    with pytest.raises(ConfigError, match="too few to measure"):
        crossfit_coverage(pred, target, codes, assets % 3, 2, 0.8, "none", ["a", "b"])


def test_interval_bounds_per_condition_unseen_and_floor():
    low, high = interval_bounds(
        np.array([5.0, 50, 50]),
        np.array([0, 1, -1]),
        np.array([10.0, 2.0, 7.0]),
        per_condition=True,
    )
    np.testing.assert_allclose(low, [0.0, 48, 43])  # clipped at 0; unseen: the global width
    np.testing.assert_allclose(high, [15.0, 52, 57])
    low, _ = interval_bounds(np.array([5.0]), np.array([0]), np.array([10.0, 2.0, 7.0]), False)
    assert low[0] == 0.0


@pytest.mark.parametrize(
    ("level", "by"), [(1.0, "none"), (0, "none"), ("x", "none"), (0.9, "asset")]
)
def test_bad_conformal_options(level, by):
    with pytest.raises(ConfigError, match="conformal"):
        fit_half_widths(np.ones(10), np.ones(10), np.zeros(10), 1, level, by)


def _overconfident(n, rng):
    z = rng.normal(0, 2, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(float)
    return 1 / (1 + np.exp(-3 * z)), y  # logits three times too large


@pytest.mark.parametrize("method", ["temperature", "platt"])
def test_scaling_recovers_the_temperature_and_lowers_ece(method):
    rng = np.random.default_rng(0)
    p, y = _overconfident(20000, rng)
    fit = fit_scaling(p, y, method)
    assert fit["a"] == pytest.approx(1 / 3, rel=0.08)
    if method == "platt":
        assert abs(fit["b"]) < 0.1
    p2, y2 = _overconfident(20000, rng)
    before = expected_calibration_error(p2, y2)
    after = expected_calibration_error(apply_scaling(p2, fit["a"], fit["b"]), y2)
    assert before > 0.05 and after < 0.02
    order = np.argsort(p2)  # monotone: the ranking (and so AUROC) is unchanged
    assert np.all(np.diff(apply_scaling(p2[order], fit["a"], fit["b"])) >= 0)


def test_calibration_needs_both_classes_and_a_known_method():
    with pytest.raises(DataError, match="both classes"):
        fit_scaling(np.full(10, 0.2), np.zeros(10))
    with pytest.raises(ConfigError, match=r"calibration\.method"):
        fit_scaling(np.full(10, 0.2), np.r_[np.zeros(5), np.ones(5)], "isotonic")


def test_scaling_folded_into_an_onnx_graph(tmp_path):
    import onnxruntime as ort

    from plantml.export.uncertainty import append_scaling
    from tests.bundles import onnx_model

    rng = np.random.default_rng(0)
    weights = rng.normal(0, 1, 6)
    src = tmp_path / "raw.onnx"
    onnx_model(src, 3, 2, weights)
    # a probability output: sigmoid over the MatMul graph of the test bundle
    import onnx
    from onnx import helper

    m = onnx.load(str(src))
    m.graph.node[-1].output[0] = "logit"
    m.graph.node.append(helper.make_node("Sigmoid", ["logit"], ["prediction"]))
    onnx.save(m, str(src))
    dst = append_scaling(src, tmp_path / "cal.onnx", 0.4, -0.3)
    x = rng.normal(0, 2, (64, 3, 2)).astype(np.float32)
    raw = ort.InferenceSession(str(src)).run(None, {"window": x})[0].reshape(-1)
    got = ort.InferenceSession(str(dst)).run(None, {"window": x})[0].reshape(-1)
    np.testing.assert_allclose(got, apply_scaling(raw, 0.4, -0.3), rtol=1e-5, atol=1e-6)
    assert np.allclose(logit(np.array([0.5])), 0.0)
