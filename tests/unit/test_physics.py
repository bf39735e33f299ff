"""Physics-informed training: RUL consistency pairs and penalty, the thermal model, both tasks."""

from __future__ import annotations

import functools
import math

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch

from plantml.data.datamodule import SensorDataModule
from plantml.data.sources.base import Source
from plantml.data.table import SensorTable
from plantml.data.windows import WindowIndex
from plantml.errors import ConfigError
from plantml.export import onnx as ox
from plantml.models import LSTMModel, ThermalModel
from plantml.tasks import PhysicsRULTask, ThermalFailureTask
from plantml.tasks.physics import consistency_pairs, consistency_penalty
from tests.conftest import make_fleet


class Fixed(Source):
    def __init__(self, table: SensorTable):
        self.table = table

    def load(self, split: str = "train") -> SensorTable:
        return self.table


def _trainer() -> L.Trainer:
    return L.Trainer(
        max_steps=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )


# -- RUL consistency -------------------------------------------------------------------
def test_penalty_zero_on_linear_and_capped_rul_positive_when_rising():
    cap, scale = 125.0, 125.0
    rul = torch.minimum(torch.arange(200.0, 0.0, -1.0), torch.tensor(cap)) / scale
    now, before = rul[1:], rul[:-1]  # one cycle apart: flat at the cap, then -1 per cycle
    assert consistency_penalty(now, before, 1.0 / scale).max() < 1e-12  # float rounding only
    rising = consistency_penalty(before, now, 1.0 / scale)  # time reversed: RUL rises
    assert (rising[-50:] > 0).all()
    too_fast = consistency_penalty(torch.tensor([0.5]), torch.tensor([0.6]), 0.01)
    assert torch.isclose(too_fast, torch.tensor([0.09**2])).all()


def test_pairs_stay_inside_one_asset_run_and_life():
    # two assets; asset 0 has two runs (segments) -> ends gap >= window length
    length, lag = 5, 2
    ends = np.r_[np.arange(4, 20), np.arange(24, 30), np.arange(34, 50)]
    assets = np.r_[np.zeros(16 + 6, dtype=np.int64), np.ones(16, dtype=np.int64)]
    index = WindowIndex(ends, np.zeros(len(ends), np.float32), np.zeros_like(assets), assets)
    life = np.zeros(50, dtype=np.int64)
    life[12:] = 1  # a maintenance at row 12 starts a new life inside the first run
    life[30:] = 2
    valid, fall = consistency_pairs(index, length, lag, life=life, n_rows=50)
    paired = np.flatnonzero(valid)
    assert set(paired) <= set(ends)
    for e in paired:
        b = e - lag
        assert b in set(ends)
        assert assets[ends == e] == assets[ends == b]
        assert life[e] == life[b]
        assert not (b < 24 <= e) and not (b < 34 <= e)  # never across runs
    assert not valid[[4, 5, 12, 13, 24, 25, 34, 35]].any()
    assert valid[[6, 14, 26, 36]].all() and (fall[paired] == lag).all()


def test_pairs_use_elapsed_time_and_stride():
    ends = np.arange(10, 40, 3)  # stride 3, window 8: one run
    index = WindowIndex(ends, np.zeros(len(ends), np.float32), np.zeros(len(ends)), np.zeros(10))
    time = np.arange(40) * 0.5
    valid, fall = consistency_pairs(index, 8, 1, time=time)
    assert not valid[ends[0]]  # row 9 may precede the run's start: the first end has no partner
    assert valid[ends[1:]].all()  # e - 1 lies inside the run although it is no window end
    assert np.allclose(fall[ends[1:]], 0.5)


def _rul_datamodule(**kw) -> SensorDataModule:
    return SensorDataModule(
        Fixed(make_fleet(n_assets=8, rows=(40, 60))),
        batch_size=64,
        split_by={"val_fraction": 0.25, "test_fraction": 0.0},
        window={"length": 10},
        target={"kind": "rul", "rul_cap": 30},
        **kw,
    )


def _rul_task(weight: float = 1.0) -> PhysicsRULTask:
    torch.manual_seed(0)
    return PhysicsRULTask(
        LSTMModel(3, hidden_size=8, num_layers=1),
        functools.partial(torch.optim.AdamW, lr=1e-3),
        target_scale=30.0,
        consistency_weight=weight,
    )


def test_physics_rul_task_trains_one_step_and_exports(tmp_path):
    dm = _rul_datamodule()
    task = _rul_task()
    trainer = _trainer()
    trainer.fit(task, datamodule=dm)
    logged = trainer.callback_metrics
    assert {"train/data_loss", "train/physics_loss", "train/loss"} <= set(logged)
    assert torch.isfinite(logged["train/physics_loss"])
    # the physics term sees real pairs: a batch of the training windows has partners
    batch = dm.dataset("train")[np.arange(64)]
    out = task(batch["x"])
    assert task.physics_loss(out, batch["end"]) >= 0
    assert task._pairs["valid"][batch["end"]].float().mean() > 0.5
    # export: the task's model is a plain model; the physics lives in the loss only
    predictor = ox.predictor(task)
    x = torch.randn(4, 10, 3)
    assert torch.allclose(predictor(x), task.postprocess(task(x)), atol=1e-6)
    ox.export_onnx(predictor, 10, 3, tmp_path / "model.onnx")
    windows = np.random.default_rng(0).normal(size=(5, 10, 3)).astype(np.float32)
    np.testing.assert_allclose(
        ox.run_onnx(ox.session(tmp_path / "model.onnx"), windows),
        ox.run_torch(predictor, windows),
        rtol=1e-4,
        atol=1e-5,
    )


def test_physics_task_without_datamodule_names_the_fix():
    task = _rul_task()
    with pytest.raises(ConfigError, match="datamodule"):
        task.physics_loss(torch.zeros(2), torch.tensor([3, 4]))
    with pytest.raises(ConfigError, match="consistency_lag"):
        PhysicsRULTask(torch.nn.Linear(1, 1), torch.optim.SGD, consistency_lag=0)


# -- thermal model -----------------------------------------------------------------------
def test_thermal_model_integrates_first_order_system():
    k, h, c, amb = 2.0, 0.5, 3.0, 20.0
    model = ThermalModel(1, gain=k, conductance=h, capacity=c, ambient=amb)
    dt, steps, p = 0.01, 6001, 4.0  # 10 time constants
    power = torch.full((1, steps, 1), p)
    temp = model.simulate(torch.tensor([amb]), power, dt)[0]
    t = torch.arange(steps) * dt
    analytic = amb + k * p / h * (1 - torch.exp(-h * t / c))
    assert torch.allclose(temp, analytic, atol=0.05)  # Euler error O(dt)
    exact = ThermalModel(1, k, h, c, ambient=amb, integrator="exact")
    assert torch.allclose(exact.simulate(torch.tensor([amb]), power, dt)[0], analytic, atol=1e-3)
    assert abs(float(temp[-1]) - (amb + k * p / h)) < 0.5
    assert model.residual(temp[None], power, dt).abs().max() < 1e-4
    assert math.isclose(model.coefficients()["tau"], c / h, rel_tol=1e-5)


@pytest.mark.parametrize("integrator", ["euler", "exact"])
def test_thermal_coefficients_are_learned_back(integrator):
    torch.manual_seed(0)
    truth = ThermalModel(2, capacity=2.0, ambient=22.0, integrator=integrator)
    with torch.no_grad():
        truth.raw_k.copy_(torch.log(torch.expm1(torch.tensor([0.8, 0.3]))))
        truth.raw_h.copy_(torch.log(torch.expm1(torch.tensor(0.6))))
    power = torch.repeat_interleave(torch.rand(16, 12, 2) * 20, 10, dim=1)  # steps of inputs
    temp = truth.simulate(torch.full((16,), 22.0), power, 0.25)
    temp = temp + 0.01 * torch.randn_like(temp)
    fit = ThermalModel(2, capacity=2.0, learn_capacity=False, ambient_init=15.0)
    fit.integrator = integrator
    opt = torch.optim.Adam(fit.parameters(), lr=0.05)
    for _ in range(1500):
        opt.zero_grad()
        loss = fit.residual(temp, power, 0.25).square().mean()
        loss.backward()
        opt.step()
    got, want = fit.coefficients(), truth.coefficients()
    for name in ("k0", "k1", "h", "T_ambient"):
        assert abs(got[name] - want[name]) <= 0.1 * abs(want[name]), (name, got, want)


def _thermal_table(n_assets: int = 6, rows: int = 80) -> SensorTable:
    """Hourly pumps whose temperature follows the thermal model, failing at the end."""
    rng = np.random.default_rng(0)
    model = ThermalModel(1, gain=0.4, conductance=0.6, capacity=1.0, ambient=22.0)
    frames = []
    for a in range(n_assets):
        current = np.repeat(rng.uniform(30, 80, rows // 8), 8)[:rows]
        temp = model.simulate(torch.tensor([40.0]), torch.tensor(current)[None, :, None].float())
        frames.append(
            pd.DataFrame(
                {
                    "pump": a,
                    "hour": np.arange(rows, dtype=float),
                    "motor_current": current,
                    "bearing_temp": temp[0].numpy() + rng.normal(0, 0.05, rows),
                    "failure": (np.arange(rows) == rows - 1).astype(np.int8),
                }
            )
        )
    return SensorTable(
        frame=pd.concat(frames, ignore_index=True),
        asset_column="pump",
        time_column="hour",
        sensor_columns=["motor_current", "bearing_temp"],
        failure_column="failure",
        name="thermal fleet",
    )


def test_thermal_failure_task_trains_fits_and_exports():
    dm = SensorDataModule(
        Fixed(_thermal_table()),
        batch_size=128,
        split_by={"val_fraction": 0.2, "test_fraction": 0.0},
        window={"length": 12},
        target={"kind": "failure", "horizon": 10},
    )
    torch.manual_seed(0)
    task = ThermalFailureTask(
        LSTMModel(2, hidden_size=8, num_layers=1),
        functools.partial(torch.optim.AdamW, lr=1e-3),
        power=["motor_current"],
        physics_lr=0.05,
    )
    trainer = _trainer()
    trainer.fit(task, datamodule=dm)
    assert {"train/physics_loss", "physics/k", "physics/h", "physics/C"} <= set(
        trainer.callback_metrics
    )
    # the residual is in °C on de-normalised columns: ~0 with the generating coefficients
    with torch.no_grad():
        task.thermal.raw_k.fill_(math.log(math.expm1(0.4)))
        task.thermal.raw_h.fill_(math.log(math.expm1(0.6)))
        task.thermal.raw_c.fill_(math.log(math.expm1(1.0)))
        task.thermal.ambient_param.fill_(22.0)
    batch = dm.dataset("train")[np.arange(32)]
    assert task.physics_residual(batch["x"], batch["end"]).abs().max() < 0.5
    x = torch.randn(3, 12, 2)
    assert torch.allclose(ox.predictor(task)(x), task.postprocess(task(x)), atol=1e-6)


def test_thermal_task_names_missing_columns():
    dm = _rul_datamodule()
    dm.pipeline.target_cfg["kind"] = "failure"
    dm.pipeline.target_cfg["horizon"] = 5
    task = ThermalFailureTask(
        LSTMModel(3, hidden_size=4, num_layers=1),
        functools.partial(torch.optim.AdamW, lr=1e-3),
    )
    with pytest.raises(ConfigError, match="bearing_temp"):
        _trainer().fit(task, datamodule=dm)
