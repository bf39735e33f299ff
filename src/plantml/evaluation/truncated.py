"""The official C-MAPSS test protocol, applied to held-out units: cut, score the last window.

The official test set cuts each unit at a random point before failure and scores only
the last window of what is left (true RUL capped). A validation score over *all* windows
of the held-out units weighs early life (RUL at the cap, easy) as much as late life, so
it is not comparable. :func:`truncation_draws` cuts each held-out unit at ``cuts``
seeded random points; a cut at a scored window end keeps the history up to it, whose
last window is that window (the windows are already scored once, so no inference is
repeated). :func:`truncated_result` scores them like the official test: one window per
unit and draw, RUL capped as in training, with the spread over draws and 95 % intervals
from resampling units.

Cuts are uniform over the unit's complete windows (with ``eval_stride`` 1: every cycle
from ``window_length`` to failure). The official files cut earlier on average (their true
RULs are 7 to 145 on FD001, few near failure), so expect differences of a point or two.
"""

from __future__ import annotations

import numpy as np
import torch

from plantml.errors import ConfigError
from plantml.evaluation.metrics import evaluate


def truncation_draws(assets: np.ndarray, cuts: int, seed: int = 0) -> np.ndarray:
    """Indices of the windows scored, ``(cuts, units)``: draw ``r`` cuts every unit once.

    ``assets`` is the asset code per scored window ``(windows,)``; unit ``u`` (in sorted
    code order) is cut in draw ``r`` at the window ``out[r, u]``, chosen uniformly among
    that unit's windows by a generator seeded with ``seed`` (the same draws every run).
    """
    if isinstance(cuts, bool) or int(cuts) != cuts or cuts < 1:
        raise ConfigError(f"truncated.cuts must be a whole number >= 1, got {cuts!r}")
    assets = np.asarray(assets)
    units, inverse, counts = np.unique(assets, return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")  # window indices grouped by unit
    first = np.r_[0, np.cumsum(counts)[:-1]]
    rng = np.random.default_rng(seed)
    picks = (rng.random((int(cuts), len(units))) * counts).astype(np.int64)
    return order[first + picks]


def truncated_result(
    out: dict[str, torch.Tensor],
    condition_names: list[str],
    cuts: int,
    seed: int = 0,
    n_boot: int = 0,
) -> dict:
    """RUL metrics of the truncated protocol on one split's scored windows.

    ``out`` holds ``pred``, ``y`` (capped true RUL), ``condition`` and ``asset`` per
    window (a task's ``predictions[split]``). Returns :func:`evaluate`'s layout over the
    ``cuts x units`` scored windows (intervals resample units, so a unit's cuts stay
    together), with extra overall keys: ``cuts``, ``rmse_draw_mean`` / ``rmse_draw_std``
    (RMSE of one cut per unit, over the draws), ``score_per_draw`` (the PHM08 sum of one
    cut per unit, as the official test reports it, averaged over draws).
    """
    assets = out["asset"].numpy()
    draws = truncation_draws(assets, cuts, seed)
    flat = torch.from_numpy(draws.reshape(-1))
    pred, y = out["pred"][flat], out["y"][flat]
    result = evaluate(
        "rul",
        pred,
        y,
        out["condition"][flat],
        condition_names,
        assets=out["asset"][flat],
        n_boot=n_boot,
        seed=seed,
        boot_method="asset",
    )
    err = (pred - y).double().numpy().reshape(draws.shape)
    per_draw = np.sqrt((err**2).mean(axis=1))
    phm = np.where(err < 0, np.exp(-err / 13) - 1, np.exp(err / 10) - 1).sum(axis=1)
    result["overall"].update(
        {
            "cuts": int(cuts),
            "rmse_draw_mean": float(per_draw.mean()),
            "rmse_draw_std": float(per_draw.std(ddof=1)) if len(per_draw) > 1 else 0.0,
            "score_per_draw": float(phm.mean()),
        }
    )
    return result


def truncated_results(task, datamodule, cuts: int, seed: int = 0, n_boot: int = 0) -> dict:
    """``{"<split>_truncated": result}`` for each RUL split the task scored last.

    An official test set is left out: it is already one truncated window per unit.
    """
    if task.kind != "rul" or not cuts:
        return {}
    results = {}
    for split, out in task.predictions.items():
        data = datamodule.prepared(split)
        if data is getattr(datamodule, "official_test", None) or not len(out.get("y", [])):
            continue
        results[f"{split}_truncated"] = truncated_result(
            out, data.condition_names, cuts, seed, n_boot
        )
    return results
