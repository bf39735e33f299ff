"""A small fleet with three operating conditions, and reference profiles built from it.

Each condition has its own feature means and a correlated pair of features
(``b`` follows ``a``), each asset a small offset of its own, so that chunks of
in-control data vary the way fleet data does.
"""

from __future__ import annotations

import numpy as np

from plantml.monitoring.reference import HeldOut, Outputs, build_profile

FEATURES = ["a", "b", "c"]
CONDITIONS = ["low", "nominal", "high"]
MEANS = np.array([[10.0, 20.0, 5.0], [30.0, 60.0, 5.0], [50.0, 100.0, 5.0]])
MIX = np.array([0.3, 0.5, 0.2])


def fleet(n_assets: int, rows: int, seed: int, mix=MIX) -> tuple[np.ndarray, ...]:
    """Rows (n, 3), condition codes (n,), run ids (n,): assets in order, conditions switching."""
    rng = np.random.default_rng(seed)
    xs, codes, runs = [], [], []
    for a in range(n_assets):
        code = rng.choice(3, size=rows, p=np.asarray(mix) / np.sum(mix))
        offset = rng.normal(0, 0.2, 3)
        a_val = MEANS[code, 0] + offset[0] + rng.normal(0, 1, rows)
        b_val = 2 * a_val + (MEANS[code, 1] - 2 * MEANS[code, 0]) + rng.normal(0, 0.3, rows)
        c_val = MEANS[code, 2] + offset[2] + rng.normal(0, 1, rows)
        xs.append(np.column_stack([a_val, b_val, c_val]))
        codes.append(code)
        runs.append(np.full(rows, a))
    return np.concatenate(xs), np.concatenate(codes), np.concatenate(runs)


def profile(null: bool = True, outputs: bool = True, seed: int = 0):
    """A reference profile of 60 training assets; the null from 30 more; failure outputs."""
    x, codes, _ = fleet(60, 200, seed)
    held = None
    if null:
        hx, hc, hr = fleet(30, 200, seed + 1)
        held = HeldOut(hx, hc, hr)
    out = None
    if outputs:
        rng = np.random.default_rng(seed + 2)
        n = 3000
        oc = rng.choice(3, n, p=MIX)
        labels = (rng.random(n) < 0.1).astype(float)
        scores = np.clip(0.5 * labels + rng.uniform(0, 0.6, n), 0, 1)
        out = Outputs(
            kind="failure",
            name="failure_probability",
            predictions=scores,
            codes=oc,
            alarms=(scores >= 0.5).astype(int),
            labels=labels,
            threshold=0.5,
            alarm_when="above",
        )
    return build_profile(
        FEATURES,
        CONDITIONS,
        x,
        codes,
        outputs=out,
        held_out=held,
        bins=10,
        null_options={"sizes": (60, 240, 960), "chunks": 40, "block_rows": 20, "sequence": 20},
    )
