"""Search spaces in Hydra's sweep grammar → Optuna distributions, conditions, readable errors."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from plantml.errors import ConfigError
from plantml.tuning.space import (
    override_value,
    parse_distribution,
    parse_space,
    sample,
    to_overrides,
)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("interval(0.0, 0.5)", FloatDistribution(0.0, 0.5)),
        ("tag(log, interval(1e-4, 1e-2))", FloatDistribution(1e-4, 1e-2, log=True)),
        ("range(1, 4)", IntDistribution(1, 3)),  # Hydra's range leaves out the end
        ("range(16, 129, 16)", IntDistribution(16, 128, step=16)),
        ("range(0.1, 0.5, 0.1)", FloatDistribution(0.1, 0.4, step=0.1)),
        ("int(interval(8, 256))", IntDistribution(8, 256)),
        ("tag(int, interval(8, 256))", IntDistribution(8, 256)),
        ("tag(log, int(interval(8, 256)))", IntDistribution(8, 256, log=True)),
        ("choice(lstm, gru)", CategoricalDistribution(["lstm", "gru"])),
        ("choice(32, 64, 128)", CategoricalDistribution([32, 64, 128])),
        ("choice(true, false)", CategoricalDistribution([True, False])),
        ([16, 32], CategoricalDistribution([16, 32])),  # a YAML list reads as a choice
    ],
)
def test_grammar_to_distribution(expression, expected):
    assert parse_distribution("k", expression) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("interval(1e-4,", "tune.params.task.optimizer.lr: cannot read"),
        ("0.001", "is a single value, not a search range"),
        (0.001, "put 'task.optimizer.lr=0.001' into tune.fixed"),
        ("tag(log, interval(0, 1))", "must start above 0"),
        ("interval(1.0, 0.1)", "needs the start below the end"),
        ("range(5, 5)", "is empty"),
        ("choice([1, 2], [3])", "choice values must be numbers, strings or booleans"),
    ],
)
def test_bad_grammar_names_the_key_and_the_fix(expression, message):
    with pytest.raises(ConfigError) as info:
        parse_distribution("task.optimizer.lr", expression)
    assert str(info.value).startswith("tune.params.task.optimizer.lr") and message in str(
        info.value
    )


def test_conditional_parameter_is_sampled_only_when_its_condition_holds():
    space = parse_space(
        {
            "task.loss": "choice(bce, focal)",
            "task.focal_gamma": {"values": "interval(0.5, 4.0)", "when": {"task.loss": ["focal"]}},
            "model": "choice(lstm, gru)",
            "model.bidirectional": {"values": "choice(true, false)", "when": {"model": "lstm"}},
        }
    )
    assert [p.name for p in space] == [
        "task.loss",
        "task.focal_gamma",
        "model",
        "model.bidirectional",
    ]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        values = sample(trial, space)
        assert ("task.focal_gamma" in values) == (values["task.loss"] == "focal")
        assert ("model.bidirectional" in values) == (values["model"] == "lstm")
        assert trial.params == values  # define-by-run: only what was sampled is recorded
        seen.add((values["task.loss"], values["model"]))
        study.tell(trial, 0.0)
    assert len(seen) == 4


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"model.dropout": {"values": "interval(0, 0.5)", "when": {"model": ["gru"]}}},
            "refers to 'model', which is not searched before it",
        ),
        (
            {
                "model": "choice(lstm, gru)",
                "x": {"values": "interval(0, 1)", "when": {"model": ["rnn"]}},
            },
            "model never takes ['rnn']",
        ),
        (
            {"x": {"value": "interval(0, 1)"}},
            "a conditional parameter has the keys 'values' and 'when'",
        ),
        ({"x": {"values": "interval(0, 1)", "when": []}}, "when must map a searched parameter"),
    ],
)
def test_bad_conditions(params, message):
    with pytest.raises(ConfigError) as info:
        parse_space(params)
    assert message in str(info.value)


def test_sampled_values_become_hydra_overrides():
    values = {"task.optimizer.lr": 0.00123, "model": "gru", "model.bidirectional": True, "x": None}
    assert to_overrides(values) == [
        "task.optimizer.lr=0.00123",
        "model=gru",
        "model.bidirectional=true",
        "x=null",
    ]
    assert override_value("a b") == "'a b'"
    assert override_value("true") == "'true'"  # the string, not the boolean


def test_shipped_search_spaces_parse():
    from importlib import resources

    import yaml

    folder = resources.files("plantml.configs") / "hparams_search"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".yaml"))
    assert {"synthetic_failure.yaml", "cmapss_rul.yaml", "cmapss_rul_pareto.yaml"} <= set(names)
    for name in names:
        tune = yaml.safe_load((folder / name).read_text())["tune"]
        assert parse_space(tune["params"]), name
