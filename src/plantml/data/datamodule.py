"""The Lightning data module: windows of a prepared fleet, served a batch at a time."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import lightning as L
import torch
from torch.utils.data import DataLoader

from plantml.data.pipeline import DataPipeline, PreparedData
from plantml.data.sampling import ResumableLoader, WindowBatchSampler, positive_weight
from plantml.data.sources.base import Source, check_split
from plantml.data.windows import WindowDataset
from plantml.errors import ConfigError

log = logging.getLogger(__name__)


class SensorDataModule(L.LightningDataModule):
    """Train / val / test windows of one source.

    Args:
        source: the dataset reader.
        split: the split that evaluation scores (``val`` or ``test``); with a
            source that ships an official test set, ``test`` scores it.
        batch_size: windows per batch.
        sampler: ``{kind: shuffle|balanced, positive_fraction: 0.3}`` for training.
        num_workers: DataLoader worker processes (0 gathers in the main process,
            usually fastest: a batch gather is one memory copy).
        device_gather: on a GPU, keep the table on the GPU and gather batches
            there (no host work per batch beyond the indices).
        cleaning, conditions, split_by, scaling, window, target,
        include_settings, state_features: the :class:`DataPipeline` steps
            (``state_features``: equipment-state inputs, see :mod:`plantml.data.state`).
    """

    def __init__(
        self,
        source: Source,
        split: str = "val",
        batch_size: int = 256,
        eval_batch_size: int | None = None,
        sampler: Mapping | None = None,
        num_workers: int = 0,
        device_gather: bool = True,
        cleaning: Mapping | None = None,
        conditions: Mapping | None = None,
        split_by: Mapping | None = None,
        scaling: Mapping | None = None,
        window: Mapping | None = None,
        target: Mapping | None = None,
        include_settings: bool = False,
        seed: int = 0,
        state_features: list[str] | None = None,
    ):
        super().__init__()
        self.eval_split = check_split(split)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or 4 * self.batch_size)
        sampler = dict(sampler or {})
        unknown = set(sampler) - {"kind", "positive_fraction"}
        if unknown:
            raise ConfigError(
                f"unknown key(s) {sorted(unknown)} in data.sampler; valid: kind, positive_fraction"
            )
        self.sampler_kind = sampler.get("kind", "shuffle")
        self.positive_fraction = float(sampler.get("positive_fraction", 0.5))
        self.num_workers = int(num_workers)
        self.device_gather = bool(device_gather)
        self.seed = seed
        self.pipeline = DataPipeline(
            source,
            cleaning,
            conditions,
            split_by,
            scaling,
            window,
            target,
            include_settings,
            seed,
            state_features,
        )
        self.data: PreparedData | None = None
        self.official_test: PreparedData | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.data is None:
            self.data = self.pipeline.prepare()
            log.info("data: %s", self.data.summary())
        if (
            self.eval_split == "test"
            and self.pipeline.source.has_official_test
            and self.official_test is None
            and stage in (None, "test", "predict")
        ):
            self.official_test = self.pipeline.prepare_official_test()

    # -- facts the task needs ------------------------------------------------------
    def pos_weight(self) -> float:
        self.setup()
        return positive_weight(self.data.windows["train"].targets)

    def gather_device(self) -> torch.device | None:
        """The accelerator to gather batches on, when training on one (else None: host)."""
        trainer = getattr(self, "trainer", None)
        if not self.device_gather or trainer is None:
            return None
        device = trainer.strategy.root_device
        return device if device.type == "cuda" else None

    def prepared(self, split: str) -> PreparedData:
        """The prepared data holding ``split``'s windows (the official test set when loaded)."""
        self.setup("test" if split == "test" else "fit")
        if split == "test" and self.official_test is not None:
            return self.official_test
        return self.data

    def dataset(self, split: str) -> WindowDataset:
        data = self.prepared(split)
        return WindowDataset(
            data.features, data.windows[split], data.window_length, self.gather_device()
        )

    # -- loaders ---------------------------------------------------------------------
    def _loader(
        self, dataset: WindowDataset, sampler: WindowBatchSampler, kind: type = DataLoader
    ) -> DataLoader:
        on_device = dataset.device is not None
        workers = 0 if on_device else self.num_workers
        return kind(
            dataset,
            batch_size=None,  # the sampler yields whole batches; one gather per batch
            sampler=sampler,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=not on_device and torch.cuda.is_available(),
            # the loader's own generator seeds workers: starting an epoch's iterator does not
            # draw from torch's global RNG, so a resumed run draws the same dropout masks
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> DataLoader:
        dataset = self.dataset("train")
        sampler = WindowBatchSampler(
            len(dataset),
            self.batch_size,
            kind=self.sampler_kind,
            labels=dataset.index.targets if self.sampler_kind == "balanced" else None,
            positive_fraction=self.positive_fraction,
            drop_last=len(dataset) > self.batch_size,
            seed=self.seed,
        )
        return self._loader(dataset, sampler, ResumableLoader)

    def _eval_loader(self, split: str) -> DataLoader:
        dataset = self.dataset(split)
        return self._loader(
            dataset, WindowBatchSampler(len(dataset), self.eval_batch_size, "sequential")
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.eval_split)

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader(self.eval_split)

    def state(self) -> dict:
        """What a deployment needs to rebuild the inputs (plain JSON types)."""
        self.setup()
        d = self.data
        return {
            "feature_names": d.feature_names,
            "window_length": d.window_length,
            "target_kind": d.target_kind,
            "class_names": d.class_names,
            "conditions": d.conditions.state(),
            "scaler": d.scaler.state(),
            "n_train_windows": len(d.windows["train"]),
        }
