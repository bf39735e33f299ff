"""Check an export against torch and score every variant on real windows, per condition."""

from __future__ import annotations

import numpy as np
import torch

from plantml.evaluation.metrics import clean_json, evaluate
from plantml.export.onnx import ExportError


def parity(reference: np.ndarray, candidate: np.ndarray, atol: float, rtol: float) -> dict:
    """Largest differences between two prediction vectors and whether they are within tolerance.

    Passes when ``|candidate - reference| <= atol + rtol * |reference|`` everywhere
    (the ``numpy.allclose`` rule).
    """
    diff = np.abs(candidate.astype(np.float64) - reference.astype(np.float64))
    rel = diff / np.maximum(np.abs(reference.astype(np.float64)), 1e-12)
    worst = int(np.argmax(diff - (atol + rtol * np.abs(reference)))) if len(diff) else 0
    return {
        "windows": len(diff),
        "max_abs": float(diff.max()) if len(diff) else 0.0,
        "max_rel": float(rel.max()) if len(rel) else 0.0,
        "atol": float(atol),
        "rtol": float(rtol),
        "passed": bool(np.all(diff <= atol + rtol * np.abs(reference))),
        "worst_window": worst,
    }


def require_parity(result: dict, what: str) -> None:
    """Raise :class:`ExportError` when ``result`` (from :func:`parity`) failed."""
    if not result["passed"]:
        raise ExportError(
            f"{what} differs from torch beyond tolerance: max abs error {result['max_abs']:.3g} "
            f"(atol {result['atol']:g}), max relative {result['max_rel']:.3g} (rtol "
            f"{result['rtol']:g}) on {result['windows']} scored windows; the export is "
            "wrong: try export.exporter=dynamo or torchscript, or loosen export.parity only if "
            "the difference is understood"
        )


class EvalWindows:
    """The scored split's windows with labels, conditions and assets, as numpy arrays."""

    def __init__(self, datamodule, split: str, limit: int | None = None):
        data = datamodule.prepared(split)
        dataset = datamodule.dataset(split)
        n = len(dataset)
        idx = np.arange(n) if not limit or limit >= n else np.linspace(0, n - 1, limit).astype(int)
        self.split = split
        self.windows = dataset.gather(idx)
        index = data.windows[split]
        self.y = index.targets[idx]
        self.conditions = index.conditions[idx]
        self.assets = index.assets[idx]
        self.condition_names = data.condition_names

    def score(self, kind: str, pred: np.ndarray, threshold: float) -> dict:
        """Metrics overall and per condition (:func:`plantml.evaluation.metrics.evaluate`)."""
        result = evaluate(
            kind,
            torch.from_numpy(np.asarray(pred, np.float32)),
            torch.from_numpy(self.y.astype(np.float32)),
            torch.from_numpy(self.conditions),
            self.condition_names,
            threshold,
            assets=torch.from_numpy(self.assets),
        )
        return clean_json(result)
