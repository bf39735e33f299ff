"""Simulated drift on real fleet data: the synthetic pump fleet and C-MAPSS FD002 (six conditions).

The reference profile is built as the export builds it (training split, null from
the validation split); production is replayed from held-out assets.
"""

from __future__ import annotations

import numpy as np
import pytest

from plantml.monitoring.rules import load_rules
from plantml.monitoring.scenarios import Drift, Pool

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]

RULES = [
    {"name": "drift", "metric": "input_drift", "alpha": 0.05},
    {"name": "pooled", "metric": "input_drift", "view": "pooled", "alpha": 0.05},
    {"name": "mix", "metric": "mix_psi", "above": 0.1, "severity": "info"},
    {"name": "unseen", "metric": "unseen_fraction", "above": 0.02},
]


def _setup(overrides: list[str]):
    from plantml import api
    from plantml.export.profile import monitoring_arrays
    from plantml.monitoring.reference import HeldOut, build_profile

    data = api.datamodule(api.compose(overrides, output_dir="/tmp/plantml-scenarios")).data
    a = monitoring_arrays(data)
    d = a["distance"]
    pick = lambda m: (a["x"][m], a["codes"][m], None if d is None else d[m])  # noqa: E731
    tx, tc, td = pick(a["train"])
    vx, vc, vd = pick(a["val"])
    profile = build_profile(
        list(data.feature_names),
        list(data.condition_names),
        tx,
        tc,
        distance=td,
        held_out=HeldOut(vx, vc, a["runs"][a["val"]], vd),
        null_options={"chunks": 100},
    )
    hx, hc, hd = pick(a["test"])
    return profile, Pool(hx, hc, a["runs"][a["test"]], hd)


def _varying(profile) -> list[int]:
    std = profile.stats["std"][:-1]
    return [
        j
        for j in range(len(profile.features))
        if np.nanmin(std[:, j]) > 1e-6 * abs(profile.stats["mean"][-1, j])
    ]


def _scenarios(profile, pool, mix_keep: dict[int, float], replays: int = 8):
    from plantml.monitoring.replay import replay

    rules = load_rules(RULES)
    run = lambda seed, **kw: replay(profile, rules, pool, seed, chunks=30, start=8, **kw)  # noqa: E731
    # no drift: input-drift alerts stay rare
    clean = [run(s) for s in range(replays)]
    assert sum(r.alerted("drift") for r in clean) <= 1
    assert not any(v["unseen"] for r in clean for v in r.verdicts)
    # the condition mix changes, nothing else: a note, no input-drift alert; the pooled test is fooled
    mixed = [run(100 + s, thin=mix_keep) for s in range(replays)]
    assert sum(r.alerted("drift") for r in mixed) <= 1
    after = np.mean([v["mix_shift"] for r in mixed for v in r.verdicts[8:]])
    before = np.mean([v["mix_shift"] for r in clean for v in r.verdicts])
    assert after >= 0.8 and before <= 0.5 * after
    assert sum(r.alerted("pooled") for r in mixed) >= replays // 2
    # a 1-std sensor offset inside the most common condition: found there within a few chunks
    varying = _varying(profile)
    target = int(np.argmax(profile.mix))
    found = []
    for s in range(replays):
        feature = varying[s % len(varying)]
        r = run(200 + s, drift=Drift("bias", feature, 1.0, start=8, condition=target))
        if np.isfinite(r.delay("drift", 8)):
            found.append((r.delay("drift", 8), r.where["drift"][0]))
    assert len(found) >= replays - 2
    assert all(where == profile.conditions[target] for _, where in found)
    assert np.median([d for d, _ in found]) <= 8
    # rows in an unseen condition: flagged as unseen, not as drift of a known condition
    r = run(300, drift=Drift("unseen", 0, 0.2, start=8))
    assert r.alerted("unseen", after=8) and not r.alerted("drift")


def test_synthetic_fleet_scenarios():
    # 150 pumps (30 held out), no simulated sensor faults: with the default 24 pumps a held-out
    # fleet of 5 differs from the training fleet by itself (pumps differ a lot from each other)
    profile, pool = _setup(
        ["experiment=synthetic_failure", "data.n_assets=150", "+data.source.faults=false"]
    )
    assert profile.conditions == ["high", "low", "nominal"]
    _scenarios(profile, pool, mix_keep={2: 0.2})  # far less nominal operation


@pytest.mark.real_data
def test_cmapss_fd002_scenarios(shared_data):
    profile, pool = _setup(
        [
            "experiment=cmapss_rul",
            "data.subset=FD002",
            "data.split_by.test_fraction=0.2",
            f"data.root={shared_data / 'cmapss'}",
        ]
    )
    assert profile.n_conditions == 6 and profile.distance_limit is not None
    _scenarios(profile, pool, mix_keep={1: 0.15, 2: 0.15, 3: 0.15, 4: 0.15})
