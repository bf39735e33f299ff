"""The reference profile: what the model saw in training, in a few kilobytes of JSON.

Written by ``plantml-export`` into every bundle as ``reference_profile.json``
(named by the manifest key ``reference_profile``, hashed like every file).
Numpy only: devices read it.

Blocks: ``0..K-1`` are the bundle's operating conditions, block ``K`` pools
every training row (the condition-blind view). Signals: the C input features in
the bundle's order, then ``multivariate`` (the PCA reconstruction error of the
row, :mod:`~plantml.monitoring.multivariate`). Format (``format_version`` 1)::

    {
      "format": "plantml-reference-profile", "format_version": 1,
      "features": [C names], "signals": [C names, "multivariate"],
      "conditions": [K names], "bins": B,
      "input": {                                   # training split, raw (unnormalized) values
        "edges":  (K+1, S, B-1),                   # interior bin edges: reference quantiles
        "counts": (K+1, S, B),                     # rows per bin; bin i holds edges[i-1] <= x < edges[i]
        "n", "missing", "mean", "std", "min", "max": (K+1, S),
        "tail_mean": (K+1, S, 2)                   # mean of the values in the first / last bin
      },
      "mix": [K],                                  # training rows per condition
      "distance_limit": [K] | null,                # cluster conditions: a row farther (scaled
                                                   # settings) from its centroid is "unseen"
      "multivariate": {"method": "pca", "variance": float,
                       "blocks": [{"mean": [C], "scale": [C], "components": [[C]] * r}] * (K+1)},
      "output": null | {                           # validation split: the model's outputs
        "kind", "name", "classes": [..] | null, "threshold", "alarm_when", "split",
        "edges": (K+1, B_out-1), "counts": (K+1, B_out), "n", "mean", "std", "min", "max": (K+1,),
        "tail_mean": (K+1, 2), "alarms": (K+1,) | null},
      "calibrator": null | {"method": "isotonic", "x": [..], "y": [..]},   # failure probabilities
      "null": null | {                             # in-control behaviour of the drift statistic
        "statistic": "wasserstein", "offset": w0, "sizes": [G], "rows": (K+1, G),
        "mu": (K+1, S, G), "sd": (K+1, S, G),     # log(W / std + w0) ~ N(mu, sd) at rows[b, g]
        "scale": (K+1, G), "scale_k": 0.5,         # persistence: CUSUMs use z / scale
        "chunks": R, "block_rows": int, "split": str},
      "source": {...}                              # informational: rows, splits, seed
    }

Size: about ``(K+1) * S * (2B + 8)`` numbers plus the PCA components; floats are
kept to 7 significant digits. NaN (a block without rows) is written as ``null``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from plantml.monitoring.errors import ProfileError

FORMAT = "plantml-reference-profile"
FORMAT_VERSION = 1
FILE_NAME = "reference_profile.json"
MANIFEST_KEY = "reference_profile"
MULTIVARIATE = "multivariate"
REEXPORT = "re-export the bundle with plantml-export"
STATS = ("n", "missing", "mean", "std", "min", "max")


def round_floats(value: Any) -> Any:
    """Arrays and floats as JSON lists with 7 significant digits; NaN becomes None."""
    arr = np.asarray(value)
    if arr.dtype.kind in "iub":
        return arr.tolist()
    flat = [None if not np.isfinite(v) else float(f"{v:.7g}") for v in arr.astype(float).ravel()]
    if arr.ndim == 0:
        return flat[0]
    return np.array(flat, dtype=object).reshape(arr.shape).tolist()


def _floats(value: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    try:
        arr = np.array(value, dtype=object)
        arr = np.where(arr == None, np.nan, arr).astype(np.float64)  # noqa: E711 (JSON null)
    except (TypeError, ValueError):
        raise ProfileError(
            f"reference profile: {what} is not a table of numbers; {REEXPORT}"
        ) from None
    if arr.shape != shape:
        raise ProfileError(
            f"reference profile: {what} has shape {arr.shape}, expected {shape}; {REEXPORT}"
        )
    return arr


@dataclass(eq=False)
class OutputReference:
    """The model's outputs on the validation split, per block (K conditions + pooled)."""

    kind: str
    name: str
    edges: np.ndarray  # (K+1, Bo-1)
    counts: np.ndarray  # (K+1, Bo) int64
    stats: dict[str, np.ndarray]  # n, mean, std, min, max: (K+1,)
    alarms: np.ndarray | None  # (K+1,) int64 or None without a threshold
    threshold: float | None = None
    alarm_when: str | None = None
    classes: list[str] | None = None
    split: str = "val"

    @property
    def alarm_rate(self) -> np.ndarray | None:
        """Share of windows that raised an alarm, per block (K+1,)."""
        if self.alarms is None:
            return None
        return self.alarms / np.maximum(self.stats["n"], 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "classes": self.classes,
            "threshold": self.threshold,
            "alarm_when": self.alarm_when,
            "split": self.split,
            "edges": round_floats(self.edges),
            "counts": self.counts.astype(np.int64).tolist(),
            **{k: round_floats(v) for k, v in self.stats.items()},
            "alarms": None if self.alarms is None else self.alarms.astype(np.int64).tolist(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], blocks: int) -> OutputReference:
        counts = _floats(d["counts"], (blocks, len(d["counts"][0])), "output.counts")
        bins = counts.shape[1]
        return cls(
            kind=str(d["kind"]),
            name=str(d["name"]),
            edges=_floats(d["edges"], (blocks, bins - 1), "output.edges"),
            counts=counts.astype(np.int64),
            stats={
                **{k: _floats(d[k], (blocks,), f"output.{k}") for k in STATS if k != "missing"},
                "tail_mean": _floats(d["tail_mean"], (blocks, 2), "output.tail_mean"),
            },
            alarms=None
            if d.get("alarms") is None
            else _floats(d["alarms"], (blocks,), "output.alarms").astype(np.int64),
            threshold=d.get("threshold"),
            alarm_when=d.get("alarm_when"),
            classes=d.get("classes"),
            split=str(d.get("split", "val")),
        )


@dataclass(eq=False)
class ReferenceProfile:
    """A loaded reference profile (format in the module docstring) with numpy arrays.

    ``edges`` (K+1, S, B-1), ``counts`` (K+1, S, B) and ``stats[name]`` (K+1, S)
    describe the inputs; ``pca`` holds per block ``mean`` (C,), ``scale`` (C,)
    and ``components`` (r, C).
    """

    features: list[str]
    conditions: list[str]
    edges: np.ndarray
    counts: np.ndarray
    stats: dict[str, np.ndarray]
    mix: np.ndarray
    pca: list[dict[str, np.ndarray]]
    variance: float = 0.9
    distance_limit: np.ndarray | None = None
    output: OutputReference | None = None
    calibrator: dict[str, Any] | None = None
    null: dict[str, Any] | None = None
    source: dict[str, Any] = field(default_factory=dict)
    _sha256: str | None = field(default=None, repr=False)

    @property
    def signals(self) -> list[str]:
        """The monitored signals: the input features, then ``multivariate``."""
        return [*self.features, MULTIVARIATE]

    @property
    def n_conditions(self) -> int:
        return len(self.conditions)

    @property
    def bins(self) -> int:
        return int(self.counts.shape[-1])

    @property
    def std_floor(self) -> np.ndarray:
        """Reference std per block and signal (K+1, S), floored so that ratios stay finite.

        A signal constant within a condition (C-MAPSS FD002's sensor_1) gets
        ``1e-3`` of its pooled std (or of its magnitude), so any change of it shows.
        """
        std = np.nan_to_num(self.stats["std"], nan=0.0)
        pooled = std[-1:]
        magnitude = np.abs(np.nan_to_num(self.stats["mean"], nan=0.0))
        floor = np.maximum(1e-3 * np.maximum(pooled, 1e-3 * magnitude), 1e-9)
        return np.maximum(std, floor)

    def to_dict(self) -> dict[str, Any]:
        """The profile as plain JSON types (the file format)."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "features": list(self.features),
            "signals": self.signals,
            "conditions": list(self.conditions),
            "bins": self.bins,
            "input": {
                "edges": round_floats(self.edges),
                "counts": self.counts.astype(np.int64).tolist(),
                **{
                    k: (v.astype(np.int64).tolist() if k in ("n", "missing") else round_floats(v))
                    for k, v in self.stats.items()
                },
            },
            "mix": self.mix.astype(np.int64).tolist(),
            "distance_limit": None
            if self.distance_limit is None
            else round_floats(self.distance_limit),
            "multivariate": {
                "method": "pca",
                "variance": self.variance,
                "blocks": [{k: round_floats(v) for k, v in block.items()} for block in self.pca],
            },
            "output": None if self.output is None else self.output.to_dict(),
            "calibrator": self.calibrator,
            "null": None if self.null is None else _null_to_dict(self.null),
            "source": dict(self.source),
        }

    @property
    def sha256(self) -> str:
        """SHA-256 of the profile's canonical JSON: sketches name the profile they follow."""
        if self._sha256 is None:
            self._sha256 = content_sha256(self.to_dict())
        return self._sha256

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReferenceProfile:
        """Check and load a profile dict (as read from ``reference_profile.json``)."""
        if not isinstance(d, Mapping) or d.get("format") != FORMAT:
            raise ProfileError(
                f"not a reference profile (format {d.get('format') if isinstance(d, Mapping) else None!r}, "
                f"expected {FORMAT!r}); {REEXPORT}"
            )
        if d.get("format_version") != FORMAT_VERSION:
            raise ProfileError(
                f"reference profile format_version {d.get('format_version')!r} is not supported "
                f"(this plantml reads {FORMAT_VERSION}); upgrade plantml or {REEXPORT}"
            )
        try:
            features, conditions = list(d["features"]), list(d["conditions"])
            k1, s, b = len(conditions) + 1, len(features) + 1, int(d["bins"])
            inp = d["input"]
            stats = {key: _floats(inp[key], (k1, s), f"input.{key}") for key in STATS}
            stats["tail_mean"] = _floats(inp["tail_mean"], (k1, s, 2), "input.tail_mean")
            pca = [
                {
                    "mean": _floats(blk["mean"], (s - 1,), "multivariate.mean"),
                    "scale": _floats(blk["scale"], (s - 1,), "multivariate.scale"),
                    "components": np.asarray(blk["components"], dtype=np.float64).reshape(
                        -1, s - 1
                    ),
                }
                for blk in d["multivariate"]["blocks"]
            ]
            if len(pca) != k1:
                raise ProfileError(
                    f"reference profile: {len(pca)} PCA blocks for {k1} blocks; {REEXPORT}"
                )
            limit = d.get("distance_limit")
            profile = cls(
                features=features,
                conditions=conditions,
                edges=_floats(inp["edges"], (k1, s, b - 1), "input.edges"),
                counts=_floats(inp["counts"], (k1, s, b), "input.counts").astype(np.int64),
                stats={
                    k: v.astype(np.int64) if k in ("n", "missing") else v for k, v in stats.items()
                },
                mix=_floats(d["mix"], (k1 - 1,), "mix").astype(np.int64),
                pca=pca,
                variance=float(d["multivariate"].get("variance", 0.9)),
                distance_limit=None if limit is None else _floats(limit, (k1 - 1,), "limit"),
                output=None
                if d.get("output") is None
                else OutputReference.from_dict(d["output"], k1),
                calibrator=d.get("calibrator"),
                null=None if d.get("null") is None else _null_from_dict(d["null"], k1, s),
                source=dict(d.get("source") or {}),
            )
        except (KeyError, TypeError, IndexError) as exc:
            raise ProfileError(f"reference profile lacks or garbles {exc}; {REEXPORT}") from None
        profile._sha256 = content_sha256(d)
        return profile

    def save(self, path: str | Path) -> Path:
        """Write the profile as JSON; returns the path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), separators=(",", ":")) + "\n", encoding="utf-8")
        return path


def _null_to_dict(null: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(null)
    for key in ("sizes", "rows", "mu", "sd", "scale"):
        if key in null:
            out[key] = round_floats(null[key])
    return out


def _null_from_dict(d: Mapping[str, Any], blocks: int, signals: int) -> dict[str, Any]:
    g = len(d["sizes"])
    return {
        **d,
        "sizes": _floats(d["sizes"], (g,), "null.sizes"),
        "rows": _floats(d["rows"], (blocks, g), "null.rows"),
        "mu": _floats(d["mu"], (blocks, signals, g), "null.mu"),
        "sd": _floats(d["sd"], (blocks, signals, g), "null.sd"),
        "scale": _floats(d["scale"], (blocks, g), "null.scale"),
    }


def content_sha256(d: Mapping[str, Any]) -> str:
    """SHA-256 of a JSON object's canonical form (sorted keys, no spaces)."""
    text = json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_profile(path: str | Path) -> ReferenceProfile:
    """Load ``reference_profile.json`` from a file."""
    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"reference profile {path} not found; {REEXPORT}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path} is not valid JSON ({exc}); {REEXPORT}") from None
    return ReferenceProfile.from_dict(data)


def load_profile(bundle: Any, required: bool = True) -> ReferenceProfile | None:
    """The reference profile of a bundle (a :class:`plantml.edge.bundle.Bundle` or its folder).

    Bundles exported before monitoring existed have none: returns None, or
    (``required``) raises :class:`ProfileError` saying how to get one. The
    bundle's hashes are checked when it is loaded from a folder.
    """
    if not hasattr(bundle, "manifest"):
        from plantml.edge.bundle import load_bundle

        bundle = load_bundle(bundle)
    name = bundle.manifest.get(MANIFEST_KEY)
    if not name:
        if required:
            raise ProfileError(
                f"bundle {bundle.path} has no reference profile (exported before monitoring "
                f"existed); {REEXPORT} to monitor it"
            )
        return None
    profile = read_profile(Path(bundle.path) / name)
    if profile.features != list(bundle.manifest["input"]["feature_columns"]):
        raise ProfileError(
            f"bundle {bundle.path}: the reference profile describes features "
            f"{profile.features[:5]}, the model reads {bundle.manifest['input']['feature_columns'][:5]}; "
            f"{REEXPORT}"
        )
    return profile
