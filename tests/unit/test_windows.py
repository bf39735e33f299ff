import tracemalloc

import numpy as np
import pytest
import torch

from plantml.data.windows import WindowDataset, WindowIndex, run_starts, window_ends
from plantml.errors import ConfigError


def naive_windows(x, assets, length):
    """Reference: loop over assets, cut every full window, in row order."""
    out, ends = [], []
    for a in np.unique(assets):
        rows = np.flatnonzero(assets == a)
        for end in rows[length - 1 :]:
            out.append(x[end - length + 1 : end + 1])
            ends.append(end)
    return np.array(out), np.array(ends)


def test_windows_equal_naive_reference():
    rng = np.random.default_rng(0)
    assets = np.repeat([0, 1, 2, 3], [7, 12, 3, 20])
    x = rng.normal(size=(len(assets), 4)).astype(np.float32)
    length = 5
    ends = window_ends(run_starts(assets), length)
    ref, ref_ends = naive_windows(x, assets, length)
    np.testing.assert_array_equal(ends, ref_ends)
    index = WindowIndex(
        ends, np.zeros(len(ends), np.float32), np.zeros(len(ends), np.int64), assets[ends]
    )
    ds = WindowDataset(x, index, length)
    batch = ds[np.arange(len(ds))]
    np.testing.assert_array_equal(batch["x"].numpy(), ref)
    assert batch["x"].shape == (len(ref), length, 4)
    # shuffled gather gives the same windows
    perm = rng.permutation(len(ds))
    np.testing.assert_array_equal(ds[perm]["x"].numpy(), ref[perm])
    # single item
    np.testing.assert_array_equal(ds[3]["x"].numpy(), ref[3])
    assert ds[3]["x"].shape == (length, 4)


def test_no_window_crosses_an_asset_or_a_short_asset():
    assets = np.repeat([0, 1], [3, 10])  # asset 0 shorter than the window
    ends = window_ends(run_starts(assets), 4)
    assert ends.min() >= 3 + 3  # first full window of asset 1 ends at its 4th row
    assert len(ends) == 10 - 4 + 1


def test_stride_counts_forward_from_each_run_start():
    # the convention a streaming device can follow: the first complete window of every
    # run, then every stride-th one
    assets = np.repeat([0, 1], [10, 9])
    ends = window_ends(run_starts(assets), 3, stride=4)
    np.testing.assert_array_equal(ends, [2, 6, 12, 16])


@pytest.mark.parametrize("stride", [1, 2, 5])
def test_streaming_rule_keeps_the_same_windows_as_the_batch_rule(stride):
    from plantml.core.windows import window_due

    assets = np.repeat([0, 1, 2], [17, 4, 23])
    starts = run_starts(assets)
    streamed = [row for row in range(len(assets)) if window_due(row - starts[row] + 1, 4, stride)]
    np.testing.assert_array_equal(window_ends(starts, 4, stride), streamed)


def test_runs_break_on_any_key():
    a = np.array([0, 0, 0, 0, 1, 1])
    seg = np.array([0, 0, 1, 1, 0, 0])
    np.testing.assert_array_equal(run_starts(a, seg), [0, 0, 2, 2, 4, 4])


def test_padding_repeats_the_first_row():
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    index = WindowIndex(
        np.array([1]),
        np.zeros(1, np.float32),
        np.zeros(1, np.int64),
        np.zeros(1, np.int64),
        starts=np.array([0]),
    )
    win = WindowDataset(x, index, 4)[np.array([0])]["x"][0].numpy()
    np.testing.assert_array_equal(win[:, 0], [0, 0, 0, 2])


def test_gather_memory_does_not_grow_with_window_length():
    x = np.zeros((10_000, 8), np.float32)
    for length in (10, 1000):
        ends = window_ends(np.zeros(len(x), np.int64), length)
        index = WindowIndex(
            ends,
            np.zeros(len(ends), np.float32),
            np.zeros(len(ends), np.int64),
            np.zeros(len(ends), np.int64),
        )
        tracemalloc.start()
        ds = WindowDataset(x, index, length)
        allocated = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        # the dataset holds the table itself and per-window indices, never window copies
        assert np.shares_memory(ds.features, x)
        assert allocated < 40 * len(ends) + 100_000
        assert ds[np.arange(4)]["x"].shape == (4, length, 8)
        assert isinstance(ds[np.arange(4)]["y"], torch.Tensor)


def test_bad_window_length():
    with pytest.raises(ConfigError, match="length"):
        window_ends(np.zeros(5, np.int64), 0)


@pytest.mark.parametrize("padded", [False, True])
def test_device_gather_equals_host_gather(padded):
    rng = np.random.default_rng(1)
    assets = np.repeat([0, 1, 2], [9, 15, 4])
    x = rng.normal(size=(len(assets), 3)).astype(np.float32)
    starts = run_starts(assets)
    ends = window_ends(starts, 1) if padded else window_ends(starts, 4)
    index = WindowIndex(
        ends,
        rng.normal(size=len(ends)).astype(np.float32),
        ends % 3,
        assets[ends],
        starts=starts[ends] if padded else None,
    )
    host = WindowDataset(x, index, 4)
    device = WindowDataset(x, index, 4, device="cpu")
    idx = rng.permutation(len(ends))[:7]
    for key, value in host[idx].items():
        torch.testing.assert_close(device[idx][key], value)
