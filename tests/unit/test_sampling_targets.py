import numpy as np
import pandas as pd
import pytest
import torch

from plantml.data.sampling import ResumableLoader, WindowBatchSampler, positive_weight
from plantml.data.table import SensorTable
from plantml.data.targets import life_ids, row_targets
from plantml.errors import ConfigError, DataError
from plantml.tasks.losses import FocalLoss


def test_balanced_sampler_hits_target_fraction():
    labels = np.r_[np.ones(20), np.zeros(1980)]  # 1 % positives
    sampler = WindowBatchSampler(
        len(labels), 256, "balanced", labels=labels, positive_fraction=0.3, seed=0
    )
    batches = list(sampler)
    assert len(batches) == len(sampler) == 8
    frac = np.mean([labels[b].mean() for b in batches])
    assert 0.27 < frac < 0.33
    sampler.set_epoch(1)
    assert not np.array_equal(next(iter(sampler)), batches[0])


@pytest.mark.parametrize("kind", ["shuffle", "balanced"])
def test_sampler_resumes_the_rest_of_its_epoch(kind):
    labels = (np.arange(500) % 10 == 0).astype(float)

    def sampler():
        return WindowBatchSampler(500, 32, kind, labels=labels, seed=4, drop_last=True)

    whole = sampler()
    whole.set_epoch(3)
    batches = list(whole)
    loader = ResumableLoader(np.arange(500), batch_size=None, sampler=sampler())
    loader.sampler.set_epoch(3)
    it = iter(loader)
    for _ in range(5):
        next(it)
    state = loader.state_dict()
    assert (state["epoch"], state["batches_done"]) == (3, 5)
    fresh = ResumableLoader(np.arange(500), batch_size=None, sampler=sampler())
    fresh.load_state_dict(state)
    fresh.sampler.set_epoch(3)  # what Lightning does after loading
    rest = [np.asarray(b) for b in fresh]
    assert len(rest) == len(batches) - 5
    assert all(np.array_equal(a, b) for a, b in zip(rest, batches[5:], strict=True))
    assert fresh.state_dict()["batches_done"] == len(batches)
    # a finished epoch resumes at the next one, from its first batch
    done = sampler()
    done.load_state_dict({**state, "batches_done": len(batches)})
    assert done.epoch == 4 and done.start_batch() == 0
    with pytest.raises(DataError, match="sampler had n=400, this run has 500"):
        sampler().load_state_dict({**state, "n": 400})


def test_shuffle_sampler_covers_every_window_once():
    sampler = WindowBatchSampler(1000, 64, "shuffle", seed=1)
    seen = np.concatenate(list(sampler))
    assert sorted(seen.tolist()) == list(range(1000))


def test_sequential_sampler_in_order():
    batches = list(WindowBatchSampler(10, 4, "sequential"))
    assert [b.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_sampler_errors():
    with pytest.raises(DataError, match="both classes"):
        WindowBatchSampler(10, 4, "balanced", labels=np.zeros(10))
    with pytest.raises(ConfigError, match="positive_fraction"):
        WindowBatchSampler(10, 4, "balanced", labels=np.r_[1, np.zeros(9)], positive_fraction=1.5)
    with pytest.raises(ConfigError, match="kind"):
        WindowBatchSampler(10, 4, "weird")


def test_pos_weight():
    assert positive_weight(np.r_[np.ones(5), np.zeros(95)]) == 19.0


def test_focal_loss_downweights_easy_examples():
    target = torch.tensor([1.0, 1.0])
    logits = torch.tensor([4.0, -1.0])  # easy, hard
    focal = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    loss_easy = FocalLoss(gamma=2.0, alpha=None)(logits[:1], target[:1])
    loss_hard = FocalLoss(gamma=2.0, alpha=None)(logits[1:], target[1:])
    assert loss_easy / focal[0] < 0.01 < loss_hard / focal[1]
    assert torch.isclose(FocalLoss(gamma=0.0, alpha=None)(logits, target), focal.mean())


def _events_table():
    # one asset: life 1 ends in failure at t=5, maintenance at t=6, life 2 censored at t=11
    t = np.arange(12)
    frame = pd.DataFrame(
        {
            "a": 0,
            "t": t,
            "s": np.arange(12.0),
            "failure": (t == 5).astype(int),
            "maint": (t == 6).astype(int),
        }
    )
    return SensorTable(frame, "a", "t", ["s"], failure_column="failure", maintenance_column="maint")


def test_rul_is_time_to_failure_within_a_life_and_censored_after():
    table = _events_table()
    np.testing.assert_array_equal(life_ids(table), [0] * 6 + [1] * 6)
    rul = row_targets(table, "rul")
    np.testing.assert_array_equal(rul[:6], [5, 4, 3, 2, 1, 0])
    assert np.isnan(rul[6:]).all()
    np.testing.assert_array_equal(row_targets(table, "rul", rul_cap=3)[:6], [3, 3, 3, 2, 1, 0])


def test_failure_within_horizon_with_censoring():
    label = row_targets(_events_table(), "failure", horizon=2)
    # life 1: positive when failure <= 2 ahead; life 2: observed to t=11, so known negative until t=9
    np.testing.assert_array_equal(label[:6], [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(label[6:10], [0, 0, 0, 0])
    assert np.isnan(label[10:]).all()


def test_target_errors():
    table = _events_table()
    with pytest.raises(ConfigError, match="horizon"):
        row_targets(table, "failure")
    # no anomaly labels: unknown per row (the pipeline decides what counts as normal)
    assert np.isnan(row_targets(table, "anomaly")).all()
    with pytest.raises(ConfigError, match="kind"):
        row_targets(table, "health")
