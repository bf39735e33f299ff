"""Batch samplers and class weights for rare failures.

Samplers yield whole batches of window indices (numpy int64 arrays) so the
dataset gathers a batch in one step. In distributed training every rank
draws the same seeded order and takes its own share, and all ranks get the
same number of batches (a rank that runs out would hang the others).

The training sampler is resumable: :meth:`WindowBatchSampler.state_dict` holds
its seed, epoch and how many batches of the epoch were consumed, and after
:meth:`~WindowBatchSampler.load_state_dict` the next iteration of that epoch
skips those batches (the order is a function of seed and epoch, so the rest of
the epoch is the batches an uninterrupted run would have drawn).
:class:`ResumableLoader` is the DataLoader that reports the consumed count
(Lightning saves and restores a loader with ``state_dict``/``load_state_dict``
in mid-epoch checkpoints).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import DataLoader

from plantml.errors import ConfigError, DataError

KINDS = ("shuffle", "sequential", "balanced")


def _rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class WindowBatchSampler:
    """Yields batches of window indices.

    Args:
        n: number of windows.
        batch_size: windows per batch.
        kind: ``shuffle`` (each window once per epoch), ``sequential`` (in
            order; evaluation) or ``balanced`` (each batch holds about
            ``positive_fraction`` positive windows, drawn with replacement).
        labels: 0/1 label per window; needed by ``balanced``.
        positive_fraction: target share of positives per batch.
        drop_last: drop a last, incomplete batch (training).
        seed: base seed; the epoch is added so each epoch differs.

    Under DDP, ``shuffle`` and ``balanced`` give every rank the same number of
    batches (wrapping around); ``sequential`` deals batches out to ranks
    without padding, so each window is scored exactly once.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        kind: str = "shuffle",
        labels: np.ndarray | None = None,
        positive_fraction: float = 0.5,
        drop_last: bool = False,
        seed: int = 0,
    ):
        if kind not in KINDS:
            raise ConfigError(f"unknown data.sampler.kind {kind!r}; use one of {', '.join(KINDS)}")
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {batch_size}")
        self.n, self.batch_size, self.kind = n, batch_size, kind
        self.drop_last, self.seed, self.epoch = drop_last, seed, 0
        self._resume: tuple[int, int] | None = None  # (epoch, batches to skip in it)
        if kind == "balanced":
            if labels is None:
                raise ConfigError("data.sampler.kind=balanced needs binary targets (task failure)")
            if not 0 < positive_fraction < 1:
                raise ConfigError(
                    f"data.sampler.positive_fraction must be in (0, 1), got {positive_fraction}"
                )
            labels = np.asarray(labels)
            self.positives = np.flatnonzero(labels > 0.5)
            self.negatives = np.flatnonzero(labels <= 0.5)
            if len(self.positives) == 0 or len(self.negatives) == 0:
                raise DataError(
                    f"balanced sampling needs both classes in training, found "
                    f"{len(self.positives)} positive and {len(self.negatives)} negative windows; "
                    "use data.sampler.kind=shuffle or a longer horizon"
                )
        self.positive_fraction = positive_fraction

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    # -- resuming ----------------------------------------------------------------------
    def state_dict(self, batches_done: int = 0) -> dict:
        """Seed, epoch and ``batches_done`` (batches of this epoch already consumed)."""
        return {
            "kind": self.kind,
            "n": self.n,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "epoch": self.epoch,
            "batches_done": int(batches_done),
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue where ``state`` left off: the rest of its epoch, or the next epoch.

        Raises :class:`DataError` when the state was written for other training
        windows or another batch size or sampler (the skipped batches would not be
        the ones consumed).
        """
        mine = self.state_dict()
        for key in ("kind", "n", "batch_size", "seed"):
            if state.get(key) != mine[key]:
                raise DataError(
                    f"the checkpoint's training sampler had {key}={state.get(key)!r}, this run has "
                    f"{mine[key]!r}: it was written with other training data or settings; resume "
                    "with the run's own config (data.*, data.batch_size, seed) or start a new run"
                )
        epoch, done = int(state["epoch"]), int(state["batches_done"])
        if done >= len(self):
            epoch, done = epoch + 1, 0
        self.epoch = epoch
        self._resume = (epoch, done) if done else None

    def start_batch(self) -> int:
        """Batches the next iteration skips: the consumed part of a resumed epoch, else 0."""
        if self._resume is not None and self._resume[0] == self.epoch:
            return self._resume[1]
        return 0

    def __iter__(self):
        skip = self.start_batch()
        self._resume = None
        for i, batch in enumerate(self._epoch_batches()):
            if i >= skip:
                yield batch

    def _batches(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full if (self.drop_last and full > 0) or rest == 0 else full + 1

    def __len__(self) -> int:
        rank, world = _rank_world()
        if self.kind == "sequential":
            return len(range(rank, self._batches(), world))
        return math.ceil(self._batches() / world)

    def _epoch_batches(self):
        """This epoch's batches, from its first (balanced draws consume the RNG in order)."""
        rank, world = _rank_world()
        if self.kind == "sequential":
            for b in range(rank, self._batches(), world):
                yield np.arange(b * self.batch_size, min((b + 1) * self.batch_size, self.n))
            return
        rng = np.random.default_rng([self.seed, self.epoch])
        n_batches = self._batches()
        per_rank = math.ceil(n_batches / world)
        if self.kind == "shuffle":
            order = rng.permutation(self.n)
            bounds = [
                (b * self.batch_size, min((b + 1) * self.batch_size, self.n))
                for b in range(n_batches)
            ]
            picks = [bounds[(rank + world * i) % n_batches] for i in range(per_rank)]
            for lo, hi in picks:
                yield order[lo:hi]
            return
        # Draws with replacement: each rank its own stream, same batch count on all ranks.
        rng = np.random.default_rng([self.seed, self.epoch, rank])
        n_pos = rng.binomial(self.batch_size, self.positive_fraction, size=per_rank)
        for k in n_pos:
            batch = np.concatenate(
                [
                    rng.choice(self.positives, size=k),
                    rng.choice(self.negatives, size=self.batch_size - k),
                ]
            )
            yield batch[rng.permutation(len(batch))]


class ResumableLoader(DataLoader):
    """A DataLoader over a :class:`WindowBatchSampler` whose position survives a checkpoint.

    It counts the batches it has handed out in the current epoch; ``state_dict``
    is the sampler's state with that count and ``load_state_dict`` makes the next
    iteration skip the consumed batches. Lightning calls both for loaders that
    have them (mid-epoch checkpoints). The underlying iterator is created on the
    first batch, so the sampler's epoch is final by then (Lightning sets it after
    asking for the iterator when a run resumes).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(self.sampler, WindowBatchSampler):
            raise TypeError("ResumableLoader needs a WindowBatchSampler as its sampler")
        self.batches_done = 0

    def __iter__(self):
        self.batches_done = self.sampler.start_batch()
        for batch in super().__iter__():
            self.batches_done += 1
            yield batch

    def state_dict(self) -> dict:
        return self.sampler.state_dict(self.batches_done)

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state)


def positive_weight(labels: np.ndarray) -> float:
    """``pos_weight`` for BCE: negatives / positives among the training windows."""
    labels = np.asarray(labels)
    n_pos = float((labels > 0.5).sum())
    if n_pos == 0:
        raise DataError("no positive windows in training; class weights cannot be computed")
    return float((labels <= 0.5).sum()) / n_pos
