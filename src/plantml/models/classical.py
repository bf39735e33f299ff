"""Classical baselines behind the same task and export interfaces: trees on window statistics.

``model=gbm`` (histogram gradient boosting, scikit-learn) predicts RUL or failure and
``model=iforest`` (isolation forest) scores anomalies, both on the per-channel window
statistics of :class:`~plantml.features.stats.WindowStats`, computed by the same torch
module in training and inside the exported ONNX graph. They are not trained by gradient
descent: the task fits them once on all training windows
(:mod:`plantml.tasks.classical`) and then evaluates, reports and exports them as any
other model. ``forward`` maps ``(batch, time, channels)`` to the task's raw output
``(batch, 1)``: the regression value (RUL / target_scale), the failure logit, or the
anomaly score (``-decision_function``: higher is more anomalous).

The fitted estimator lives in a ``uint8`` buffer (its pickle) so that it travels in the
checkpoint's ``state_dict`` like weights do. Needs scikit-learn (``pip install
'plantml[classical]'``).
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from plantml.errors import ConfigError
from plantml.features.stats import WindowStats

DEFAULT_STATS = ("mean", "std", "slope", "last", "peak")
KINDS = {"gbm": ("rul", "failure"), "iforest": ("anomaly",)}


def _sklearn():
    try:
        import sklearn.ensemble
    except ImportError:
        raise ConfigError(
            "the classical models need scikit-learn: pip install 'plantml[classical]'"
        ) from None
    return sklearn.ensemble


class Float64Stats(nn.Module):
    """Window statistics in float64: ``(batch, time, channels)`` → ``(batch, F)`` float64."""

    def __init__(self, stats: WindowStats):
        super().__init__()
        self.stats = stats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stats(x.double())


class _TreeModel(nn.Module):
    """What both classical models share: the statistics front end and the stored estimator."""

    classical = True
    family = ""

    def __init__(
        self,
        in_features: int,
        out_features: int = 1,
        stats: Sequence[str] = DEFAULT_STATS,
        dropout: float | None = None,
    ):
        # dropout: not used by trees; accepted so that experiments which set model.dropout
        # for every neural model (cmapss_rul) also run with model=gbm
        super().__init__()
        if out_features != 1:
            raise ConfigError(
                f"model={self.family} predicts one value per window; the class task "
                "(several classes) is not supported by the classical models yet"
            )
        self.in_features = int(in_features)
        self.features = WindowStats(stats)
        self.register_buffer("estimator_state", torch.empty(0, dtype=torch.uint8))
        self.estimator = None
        self.kind: str | None = None

    # -- the estimator travels in the state dict -------------------------------------------
    def _store(self) -> None:
        blob = pickle.dumps({"kind": self.kind, "estimator": self.estimator})
        self.estimator_state = torch.frombuffer(bytearray(blob), dtype=torch.uint8).clone()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "estimator_state"
        if key in state_dict and state_dict[key].numel():
            blob = state_dict[key].cpu().numpy().tobytes()
            stored = pickle.load(io.BytesIO(blob))
            self.kind, self.estimator = stored["kind"], stored["estimator"]
            self.estimator_state = state_dict[key].clone()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- features and fitting --------------------------------------------------------------
    def window_features(self, x: torch.Tensor) -> np.ndarray:
        """``(batch, time, channels)`` → statistics ``(batch, channels * stats)`` float32.

        Computed in float64, then rounded to float32 (:class:`Float64Stats`; the ONNX graph
        does the same). Computed in float32, torch and ONNX Runtime differ in the last bits,
        and a statistic that equals a split threshold (gradient boosting places thresholds
        on training values) then goes down the other branch now and then; the float64
        results differ by ~1e-16 and round to the same float32.
        """
        with torch.no_grad():
            return Float64Stats(self.features)(x.detach().cpu()).float().numpy()

    def check_kind(self, kind: str) -> None:
        if kind not in KINDS[self.family]:
            other = "iforest" if kind == "anomaly" else "gbm"
            raise ConfigError(
                f"model={self.family} does not do the {kind} task (it does "
                f"{', '.join(KINDS[self.family])}); use model={other}"
            )

    def fit(self, features: np.ndarray, y: np.ndarray, kind: str, val=None) -> dict:
        """Fit on statistics ``(n, F)`` and targets ``(n,)``; ``val`` = (features, y) or None."""
        self.check_kind(kind)
        self.kind = kind
        info = self._fit(np.asarray(features, np.float32), np.asarray(y), val)
        self._store()
        return info

    def _fit(self, x: np.ndarray, y: np.ndarray, val) -> dict:
        raise NotImplementedError

    def raw(self, features: np.ndarray) -> np.ndarray:
        """The task's raw output ``(n,)`` float64 from statistics ``(n, F)``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.estimator is None:
            raise ConfigError(
                f"model={self.family} is not fitted: it is fitted by plantml-train "
                "(the task fits it on the training windows before the first epoch)"
            )
        out = self.raw(self.window_features(x))
        return torch.as_tensor(out, dtype=torch.float32, device=x.device).unsqueeze(-1)

    def parameter_count(self) -> int:
        """Tree nodes (split thresholds and leaf values) of the fitted ensemble."""
        return sum(len(t["feature"]) for t in self.trees()) if self.estimator is not None else 0

    def trees(self) -> list[dict]:
        """The fitted trees as arrays (``feature``, ``threshold``, ``left``, ``right``,
        ``leaf``, ``value``, ``missing_left``), in the ensemble's order."""
        raise NotImplementedError


class GradientBoostingModel(_TreeModel):
    """Histogram gradient boosting on window statistics (RUL regression or failure).

    Args:
        in_features: channels per time step.
        stats: window statistics per channel (``plantml.features.stats``; ``last`` is the
            window's last value: with ``data.window.length=1`` the row itself).
        max_iter, learning_rate, max_leaf_nodes, min_samples_leaf, l2_regularization:
            scikit-learn's ``HistGradientBoosting*`` options.
        early_stopping_rounds: stop when the validation loss (on the run's validation
            windows) has not improved for this many iterations (0: never).
        class_weight: failure only: ``balanced`` weights the rare positives up.
        max_train_windows: fit on at most this many training windows (seeded sample).
        seed: random seed of the estimator.
        dropout: ignored (trees have none); experiments set it for every neural model.
    """

    family = "gbm"

    def __init__(
        self,
        in_features: int,
        out_features: int = 1,
        stats: Sequence[str] = DEFAULT_STATS,
        max_iter: int = 500,
        learning_rate: float = 0.05,
        max_leaf_nodes: int = 31,
        min_samples_leaf: int = 20,
        l2_regularization: float = 0.0,
        early_stopping_rounds: int = 20,
        class_weight: str | None = None,
        max_train_windows: int = 500_000,
        seed: int = 0,
        dropout: float | None = None,
    ):
        super().__init__(in_features, out_features, stats, dropout)
        self.options = {
            "max_iter": int(max_iter),
            "learning_rate": float(learning_rate),
            "max_leaf_nodes": int(max_leaf_nodes),
            "min_samples_leaf": int(min_samples_leaf),
            "l2_regularization": float(l2_regularization),
            "random_state": int(seed),
        }
        self.early_stopping_rounds = int(early_stopping_rounds)
        if class_weight not in (None, "balanced"):
            raise ConfigError(f"model.class_weight must be null or balanced, got {class_weight!r}")
        self.class_weight = class_weight
        self.max_train_windows = int(max_train_windows)

    def _fit(self, x: np.ndarray, y: np.ndarray, val) -> dict:
        ensemble = _sklearn()
        stop = self.early_stopping_rounds > 0 and val is not None and len(val[1]) > 0
        options = {
            **self.options,
            "early_stopping": bool(stop),
            "n_iter_no_change": max(self.early_stopping_rounds, 1),
        }
        if self.kind == "failure":
            if len(np.unique(y)) < 2:
                raise ConfigError(
                    "model=gbm needs failure and non-failure training windows; the training "
                    "split has one class only (check data.target.horizon and the split)"
                )
            est = ensemble.HistGradientBoostingClassifier(**options, class_weight=self.class_weight)
            y = (y > 0.5).astype(np.int64)
            val_y = None if not stop else (val[1] > 0.5).astype(np.int64)
        else:
            est = ensemble.HistGradientBoostingRegressor(**options)
            val_y = None if not stop else val[1]
        if stop:
            est.fit(x, y, X_val=np.asarray(val[0], np.float32), y_val=val_y)
        else:
            est.fit(x, y)
        self.estimator = est
        return {"iterations": int(est.n_iter_), "early_stopped": bool(stop)}

    def raw(self, features: np.ndarray) -> np.ndarray:
        if self.kind == "failure":
            return np.asarray(self.estimator.decision_function(features), np.float64)
        return np.asarray(self.estimator.predict(features), np.float64)

    def baseline(self) -> float:
        """The ensemble's starting value (the raw output before any tree)."""
        return float(np.ravel(self.estimator._baseline_prediction)[0])

    def trees(self) -> list[dict]:
        out = []
        for (predictor,) in self.estimator._predictors:
            n = predictor.nodes
            if n["is_categorical"].any():
                raise ConfigError("categorical splits are not exported")
            out.append(
                {
                    "feature": n["feature_idx"].astype(np.int64),
                    "threshold": n["num_threshold"].astype(np.float64),
                    "left": n["left"].astype(np.int64),
                    "right": n["right"].astype(np.int64),
                    "leaf": n["is_leaf"].astype(bool),
                    "value": n["value"].astype(np.float64),
                    "missing_left": n["missing_go_to_left"].astype(bool),
                }
            )
        return out


class IsolationForestModel(_TreeModel):
    """Isolation forest on window statistics: anomaly score ``-decision_function``.

    Fitted on the normal training windows only. Args: ``n_estimators``, ``max_samples``
    (per tree), ``max_train_windows``, ``seed`` as in scikit-learn's ``IsolationForest``.
    """

    family = "iforest"

    def __init__(
        self,
        in_features: int,
        out_features: int = 1,
        stats: Sequence[str] = DEFAULT_STATS,
        n_estimators: int = 200,
        max_samples: int | str = "auto",
        max_train_windows: int = 500_000,
        seed: int = 0,
        dropout: float | None = None,
    ):
        super().__init__(in_features, out_features, stats, dropout)
        self.options = {
            "n_estimators": int(n_estimators),
            "max_samples": max_samples,
            "random_state": int(seed),
        }
        self.max_train_windows = int(max_train_windows)

    def _fit(self, x: np.ndarray, y: np.ndarray, val) -> dict:
        normal = x[~(y > 0.5)]
        if len(normal) < 2:
            raise ConfigError("model=iforest needs normal (label 0) training windows to fit on")
        self.estimator = _sklearn().IsolationForest(**self.options).fit(normal)
        return {"normal_windows": len(normal)}

    def raw(self, features: np.ndarray) -> np.ndarray:
        return -np.asarray(self.estimator.decision_function(features), np.float64)

    def path_scale(self) -> float:
        """``c(max_samples)``: the average path length that normalizes the depths."""
        from sklearn.ensemble._iforest import _average_path_length

        return float(_average_path_length([self.estimator.max_samples_])[0])

    def trees(self) -> list[dict]:
        from sklearn.ensemble._iforest import _average_path_length

        out = []
        for tree, feats in zip(
            self.estimator.estimators_, self.estimator.estimators_features_, strict=True
        ):
            t = tree.tree_
            leaf = t.children_left == -1
            depth = np.zeros(t.node_count, np.float64)
            for node in range(t.node_count):  # parents come before children
                if not leaf[node]:
                    depth[t.children_left[node]] = depth[node] + 1
                    depth[t.children_right[node]] = depth[node] + 1
            value = depth + _average_path_length(t.n_node_samples)
            out.append(
                {
                    "feature": np.where(leaf, 0, np.asarray(feats)[np.maximum(t.feature, 0)]),
                    "threshold": t.threshold.astype(np.float64),
                    "left": t.children_left.astype(np.int64),
                    "right": t.children_right.astype(np.int64),
                    "leaf": leaf,
                    "value": np.where(leaf, value, 0.0),
                    "missing_left": np.ones(t.node_count, bool),
                }
            )
        return out
