"""Windows over one contiguous feature array, never materialized.

All rows live in one ``(rows, channels)`` float32 array, ordered by asset,
segment and time. A window is named by the row index of its last step
(its *end*); a batch is gathered from a strided view of that array, so
memory stays the size of the table whatever the window length. Which rows
end a window (and the stride convention) is :mod:`plantml.core.windows`,
shared with the edge runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from plantml.core.windows import gather_windows, run_starts, window_ends

__all__ = ["WindowDataset", "WindowIndex", "gather_windows", "run_starts", "window_ends"]


@dataclass
class WindowIndex:
    """The windows of one split: each window's end row and its labels.

    Attributes:
        ends: row index of each window's last step, (windows,) int64.
        targets: target per window, (windows,) float32.
        conditions: operating-condition code per window, (windows,) int64.
        assets: asset code per window, (windows,) int64.
        starts: first row allowed for each window (its run's start); only
            used when short histories are padded.
    """

    ends: np.ndarray
    targets: np.ndarray
    conditions: np.ndarray
    assets: np.ndarray
    starts: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ends)

    def subset(self, keep: np.ndarray) -> WindowIndex:
        return WindowIndex(
            self.ends[keep],
            self.targets[keep],
            self.conditions[keep],
            self.assets[keep],
            None if self.starts is None else self.starts[keep],
        )


class WindowDataset(torch.utils.data.Dataset):
    """Windows of ``length`` rows gathered from ``features`` by ``index``.

    ``dataset[i]`` gives one window; ``dataset[array_of_i]`` gives a whole
    batch in one gather, which is how :class:`~plantml.data.sampling.WindowBatchSampler`
    feeds it. Items are dicts: ``x`` (batch, time, channels) float32, ``y``
    (batch,), ``condition`` (batch,), ``asset`` (batch,) and ``end`` (batch,),
    the table row of each window's last step.

    With ``device`` (e.g. ``cuda``) the table and labels live on that device
    and batches are gathered there: per batch only the indices cross to the
    device, so the host stays off the training step's critical path.
    """

    def __init__(
        self,
        features: np.ndarray,
        index: WindowIndex,
        length: int,
        device: str | torch.device | None = None,
    ):
        if features.dtype != np.float32 or not features.flags["C_CONTIGUOUS"]:
            features = np.ascontiguousarray(features, dtype=np.float32)
        self.features = features
        self.index = index
        self.length = length
        self.padded = index.starts is not None
        self._offsets = np.arange(-length + 1, 1)
        self._y = index.targets.astype(np.float32)
        self._cond = index.conditions.astype(np.int64)
        self._asset = index.assets.astype(np.int64)
        self.device = None if device is None else torch.device(device)
        if self.device is not None:
            to = partial(torch.as_tensor, device=self.device)
            self._t = {
                "features": to(features),
                "ends": to(index.ends.astype(np.int64)),
                "starts": to(index.starts.astype(np.int64)) if self.padded else None,
                "offsets": to(self._offsets.astype(np.int64)),
                "y": to(self._y),
                "condition": to(self._cond),
                "asset": to(self._asset),
                "end": to(index.ends.astype(np.int64)),
            }

    def _device_batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        t = self._t
        i = torch.as_tensor(idx, device=self.device)
        rows = t["ends"][i, None] + t["offsets"]
        if self.padded:
            rows = torch.maximum(rows, t["starts"][i, None])
        return {
            "x": t["features"][rows],
            "y": t["y"][i],
            "condition": t["condition"][i],
            "asset": t["asset"][i],
            "end": t["end"][i],
        }

    def __len__(self) -> int:
        return len(self.index)

    def gather(self, idx: np.ndarray) -> np.ndarray:
        """Windows ``idx`` as one (batch, time, channels) array (a copy of just those rows).

        Short histories (``index.starts``) repeat the run's first row in front.
        """
        starts = self.index.starts[idx] if self.padded else None
        return gather_windows(self.features, self.index.ends[idx], self.length, starts)

    def __getitem__(self, idx):
        if not isinstance(idx, np.ndarray) or idx.ndim != 1:
            single = np.ndim(idx) == 0
            idx = np.atleast_1d(np.asarray(idx, dtype=np.int64))
        else:
            single = False
        if self.device is not None:
            batch = self._device_batch(idx)
            return {k: v[0] for k, v in batch.items()} if single else batch
        batch = {
            "x": torch.from_numpy(self.gather(idx)),
            "y": torch.from_numpy(self._y.take(idx)),
            "condition": torch.from_numpy(self._cond.take(idx)),
            "asset": torch.from_numpy(self._asset.take(idx)),
            "end": torch.from_numpy(self.index.ends.take(idx)),
        }
        if single:
            return {k: v[0] for k, v in batch.items()}
        return batch
