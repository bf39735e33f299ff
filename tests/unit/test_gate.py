"""The validation gate on metrics.json: pass, fail, not assessable, worst condition, configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from plantml.errors import ConfigError
from plantml.evaluation.gate import GateResult, Rule, check_gate, load_gate

GATE_DIR = Path(__file__).resolve().parents[2] / "configs" / "gate"


def rul_metrics(**conds: dict) -> dict:
    return {
        "val/rmse": 14.2,
        "val/mae": 10.1,
        "val/bias": -1.0,
        "val/score": 300.0,
        "val/n": 3686,
        "by_condition": {"val": conds},
    }


def failure_metrics(**conds: dict) -> dict:
    return {
        "val/recall": 0.85,
        "val/precision": 0.7,
        "val/false_alarms_per_1000": 12.0,
        "val/n": 8702,
        "by_condition": {"val": conds},
    }


def statuses(result: GateResult) -> list[tuple]:
    return [(c["condition"], c["status"]) for c in result.checks]


def test_pass():
    m = rul_metrics(
        c1={"rmse": 12.0, "n": 900, "assets": 5}, c2={"rmse": 18.0, "n": 400, "assets": 3}
    )
    rules = [Rule("rmse", max=15), {"metric": "rmse", "max": 20, "scope": "every_condition"}]
    result = check_gate(m, "val", rules)
    assert result.passed
    assert statuses(result) == [(None, "pass"), ("c1", "pass"), ("c2", "pass")]
    assert result.summary_lines()[0].startswith("Gate PASSED")
    assert result.to_dict()["passed"] is True


def test_fail_names_the_condition():
    m = failure_metrics(
        low={"recall": 0.9, "n": 500, "assets": 4}, high={"recall": 0.62, "n": 412, "assets": 3}
    )
    result = check_gate(m, "val", [Rule("recall", min=0.8, scope="every_condition")])
    assert not result.passed
    lines = result.summary_lines()
    assert lines[0].startswith("Gate FAILED")
    assert "FAIL recall >= 0.8 in condition 'high': 0.62 (412 windows, 3 assets)" in lines


def test_too_few_samples_is_not_assessable_and_not_a_pass():
    m = failure_metrics(
        big={"recall": 0.9, "n": 500, "assets": 4}, tiny={"recall": 1.0, "n": 12, "assets": 2}
    )
    result = check_gate(m, "val", [Rule("recall", min=0.8, scope="every_condition")])
    assert statuses(result) == [("big", "pass"), ("tiny", "not_assessable")]
    assert result.passed  # nothing failed and one check was assessable
    tiny = next(line for line in result.summary_lines() if "'tiny'" in line)
    assert tiny.startswith("NOT ASSESSABLE") and "(12 windows, 2 assets)" in tiny
    assert "need at least 30" in tiny


def test_single_asset_condition_with_min_assets_2():
    m = rul_metrics(
        c1={"rmse": 12.0, "n": 900, "assets": 5}, c2={"rmse": 30.0, "n": 400, "assets": 1}
    )
    rule = Rule("rmse", max=20, scope="every_condition")
    assert not check_gate(m, "val", [rule]).passed  # with min_assets=1, c2 is judged and fails
    result = check_gate(m, "val", [rule], min_assets=2)
    assert statuses(result) == [("c1", "pass"), ("c2", "not_assessable")]
    assert "only 1 asset, need at least 2" in result.checks[1]["reason"]
    assert "NOT ASSESSABLE" in result.summary_lines()[2]


def test_null_value_is_not_assessable():
    m = failure_metrics(c1={"recall": None, "n": 500, "assets": 4})
    result = check_gate(m, "val", [Rule("recall", min=0.8, scope="every_condition")])
    assert statuses(result) == [("c1", "not_assessable")]
    assert "null" in result.checks[0]["reason"]


def test_worst_condition_picks_max_rmse_and_min_recall():
    rul = rul_metrics(
        a={"rmse": 12.0, "n": 900, "assets": 5},
        b={"rmse": 19.0, "n": 400, "assets": 3},
        tiny={"rmse": 99.0, "n": 5, "assets": 1},  # not assessable: left out of the pick
    )
    result = check_gate(rul, "val", [Rule("rmse", max=20, scope="worst_condition")])
    assert result.passed and statuses(result) == [("b", "pass")]
    assert "'tiny'" in result.summary_lines()[1]  # skipped conditions are named
    fail = failure_metrics(
        a={"recall": 0.9, "n": 900, "assets": 5}, b={"recall": 0.7, "n": 400, "assets": 3}
    )
    result = check_gate(fail, "val", [Rule("recall", min=0.8, scope="worst_condition")])
    assert not result.passed and statuses(result) == [("b", "fail")]
    bias = rul_metrics(a={"bias": 3.0, "n": 90}, b={"bias": -6.0, "n": 90})
    result = check_gate(bias, "val", [Rule("bias", min=-5, max=5, scope="worst_condition")])
    assert statuses(result) == [("b", "fail")]


def test_all_not_assessable_fails():
    m = rul_metrics(c1={"rmse": 12.0, "n": 10, "assets": 1}, c2={"rmse": 9.0, "n": 3})
    rules = [
        Rule("rmse", max=20, scope="every_condition"),
        Rule("rmse", max=20, scope="worst_condition"),
    ]
    result = check_gate(m, "val", rules)
    assert not result.passed
    assert {c["status"] for c in result.checks} == {"not_assessable"}
    assert "nothing could be assessed" in result.summary_lines()[0]


def test_no_rules_is_no_gate():
    assert check_gate(rul_metrics(), "val", []).passed


def test_missing_metric_lists_available():
    with pytest.raises(ConfigError, match="recall") as err:
        check_gate(rul_metrics(), "val", [Rule("recall", min=0.8)])
    assert "rmse" in str(err.value) and "mae" in str(err.value)
    with pytest.raises(ConfigError, match="split 'test'"):
        check_gate(rul_metrics(), "test", [Rule("rmse", max=15)])


@pytest.mark.parametrize(
    "raw, match",
    [
        ({"metric": "rmse", "scope": "overall"}, "min, max"),
        ({"metric": "rmse", "max": 15, "scope": "everywhere"}, "overall, every_condition"),
        ({"metric": "rmsee", "max": 15}, "did you mean 'rmse'"),
        ({"metric": "rmse", "max": "fifteen"}, "number"),
        ({"metric": "rmse", "maximum": 15}, "unknown: maximum"),
        ({"metric": "bias", "min": 5, "max": -5}, "min 5 > max -5"),
    ],
)
def test_bad_rule(raw, match):
    with pytest.raises(ConfigError, match=match):
        Rule.from_mapping(raw)


def test_load_gate_rejects_unknown_keys():
    with pytest.raises(ConfigError, match="min_sample"):
        load_gate({"rules": [], "min_sample": 30})


@pytest.mark.parametrize("name", ["none", "rul_default", "failure_default"])
def test_yaml_configs_load(name):
    rules, min_samples, min_assets = load_gate(
        yaml.safe_load((GATE_DIR / f"{name}.yaml").read_text())
    )
    assert (min_samples, min_assets) == (30, 1)
    expected = {
        "none": [],
        "rul_default": [Rule("rmse", max=15), Rule("rmse", max=20, scope="worst_condition")],
        "failure_default": [
            Rule("recall", min=0.8, scope="every_condition"),
            Rule("false_alarms_per_1000", max=20),
        ],
    }[name]
    assert rules == expected
