"""Mergeable sketches of production data against a reference profile (numpy only).

An edge agent keeps one :class:`ProfileSketch` per bundle, updates it with the
raw rows it receives and the predictions it makes, sends ``to_dict()`` in its
periodic summary and calls ``reset()``. The cloud side rebuilds sketches with
``from_dict(d, profile)`` and adds them with ``merge``: counts add and the
moments combine exactly (Chan et al.), so statistics of a merged sketch equal
those of one sketch of all the rows.

Blocks: ``0..K-1`` the bundle's conditions, ``K`` "unseen" (a condition code
outside ``0..K-1``, or a cluster distance beyond the reference's
``distance_limit``), ``K+1`` "all" (every row: the condition-blind view).
Signals: the C features, then the multivariate PCA error. Memory is fixed by
the profile: ``(K+2) * S * (B + 8)`` numbers for the inputs, ``(K+2) * (B_out + 9)``
for the outputs, whatever the number of rows.

Interface (shapes): ``update(x_raw (n, C), condition_codes (n,), predictions=None (m,),
alarms=None (m,), distance=None (n,), prediction_codes=None (m,))``,
``update_outputs(predictions (m,), codes (m,), alarms=None (m,))``, ``merge(other)``,
``to_dict()``, ``ProfileSketch.from_dict(d, profile)``, ``reset()``. Update in
batches (a few hundred rows): each call costs about (K+2) x S small numpy calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from plantml.monitoring.errors import SketchError
from plantml.monitoring.multivariate import reconstruction_error
from plantml.monitoring.profile import ReferenceProfile

FORMAT = "plantml-sketch"
FORMAT_VERSION = 1
UNSEEN = "unseen"
ALL = "all"


class Moments:
    """Count, mean, sum of squared deviations, min and max per cell; mergeable exactly."""

    def __init__(self, shape: tuple[int, ...]):
        self.n = np.zeros(shape, dtype=np.int64)
        self.mean = np.zeros(shape)
        self.m2 = np.zeros(shape)
        self.lo = np.full(shape, np.inf)
        self.hi = np.full(shape, -np.inf)

    def add(self, n, mean, m2, lo, hi, where=...) -> None:
        """Combine another set of moments into cells ``where`` (Chan's parallel formula)."""
        na = self.n[where].astype(np.float64)
        nb = np.asarray(n, dtype=np.float64)
        total = na + nb
        safe = np.where(total > 0, total, 1.0)
        delta = np.asarray(mean) - self.mean[where]
        self.mean[where] = self.mean[where] + delta * nb / safe
        self.m2[where] = self.m2[where] + np.asarray(m2) + delta**2 * na * nb / safe
        self.n[where] = self.n[where] + np.asarray(n, dtype=np.int64)
        self.lo[where] = np.minimum(self.lo[where], lo)
        self.hi[where] = np.maximum(self.hi[where], hi)

    def add_values(self, values: np.ndarray, where=...) -> None:
        """Add the finite ``values`` (m, ...) column-wise into cells ``where``."""
        fin = np.isfinite(values)
        n = fin.sum(0)
        safe = np.maximum(n, 1)
        v0 = np.where(fin, values, 0.0)
        mean = v0.sum(0) / safe
        m2 = (np.where(fin, values - mean, 0.0) ** 2).sum(0)
        lo = np.where(fin, values, np.inf).min(0) if len(values) else np.inf
        hi = np.where(fin, values, -np.inf).max(0) if len(values) else -np.inf
        self.add(n, mean, m2, lo, hi, where)

    def merge(self, other: Moments) -> None:
        self.add(other.n, other.mean, other.m2, other.lo, other.hi)

    @property
    def std(self) -> np.ndarray:
        """Population std per cell (NaN where empty)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n > 0, np.sqrt(self.m2 / np.maximum(self.n, 1)), np.nan)

    def to_dict(self) -> dict[str, Any]:
        def floats(a: np.ndarray) -> list:
            return np.where(np.isfinite(a), a, None).tolist()

        return {
            "n": self.n.tolist(),
            "mean": self.mean.tolist(),
            "m2": self.m2.tolist(),
            "min": floats(self.lo),
            "max": floats(self.hi),
        }

    def load(self, d: Mapping[str, Any], what: str) -> None:
        shape = self.n.shape
        for key, attr, empty in (
            ("n", "n", None),
            ("mean", "mean", None),
            ("m2", "m2", None),
            ("min", "lo", np.inf),
            ("max", "hi", -np.inf),
        ):
            arr = np.array(d[key], dtype=object)
            if arr.shape != shape:
                raise SketchError(
                    f"sketch {what}.{key} has shape {arr.shape}, the profile needs {shape}; "
                    "the sketch was made for another bundle"
                )
            if empty is not None:
                arr = np.where(arr == None, empty, arr)  # noqa: E711 (JSON null)
            setattr(self, attr, arr.astype(self.n.dtype if key == "n" else np.float64))


class ProfileSketch:
    """Histograms and moments of production rows and outputs, per block, on the profile's bins."""

    def __init__(self, profile: ReferenceProfile):
        self.profile = profile
        k = profile.n_conditions
        self.n_blocks = k + 2
        self.blocks = [*profile.conditions, UNSEEN, ALL]
        # per sketch block: the profile block whose edges and PCA it uses (unseen, all -> pooled)
        self._ref = np.r_[np.arange(k), k, k]
        out = profile.output
        self._out_edges = out.edges if out is not None else np.zeros((k + 1, 0))
        self.reset()

    @classmethod
    def from_reference(cls, profile: ReferenceProfile) -> ProfileSketch:
        """An empty sketch on ``profile``'s bins."""
        return cls(profile)

    def reset(self) -> None:
        """Forget every row (start the next period)."""
        p = self.profile
        s, b = len(p.signals), p.bins
        self.rows = np.zeros(self.n_blocks, dtype=np.int64)
        self.counts = np.zeros((self.n_blocks, s, b), dtype=np.int64)
        self.missing = np.zeros((self.n_blocks, s), dtype=np.int64)
        self.tail_sum = np.zeros((self.n_blocks, s, 2))  # sums of the values in the outer bins
        self.moments = Moments((self.n_blocks, s))
        self.out_counts = np.zeros((self.n_blocks, self._out_edges.shape[1] + 1), dtype=np.int64)
        self.out_moments = Moments((self.n_blocks,))
        self.out_tail_sum = np.zeros((self.n_blocks, 2))
        self.alarms = np.zeros(self.n_blocks, dtype=np.int64)
        self.alarm_n = np.zeros(self.n_blocks, dtype=np.int64)

    # --- updates ---------------------------------------------------------------------------------

    def block_codes(self, codes: np.ndarray, distance: np.ndarray | None = None) -> np.ndarray:
        """Sketch block per row (n,): the condition code, or K (unseen) when unknown or too far."""
        k = self.profile.n_conditions
        codes = np.asarray(codes)
        if codes.dtype.kind not in "iu":
            raise SketchError(
                f"condition codes must be integers (the bundle's codes, -1 unseen), got {codes.dtype}"
            )
        codes = codes.astype(np.int64)
        known = (codes >= 0) & (codes < k)
        out = np.where(known, codes, k)
        limit = self.profile.distance_limit
        if distance is not None and limit is not None:
            distance = np.asarray(distance, dtype=np.float64)
            if distance.shape != codes.shape:
                raise SketchError(
                    f"distance has shape {distance.shape}; one per row {codes.shape} is needed"
                )
            far = known & (distance > limit[np.where(known, codes, 0)])
            out[far] = k
        return out

    def update(
        self,
        x_raw: np.ndarray,
        condition_codes: np.ndarray,
        predictions: np.ndarray | None = None,
        alarms: np.ndarray | None = None,
        distance: np.ndarray | None = None,
        prediction_codes: np.ndarray | None = None,
    ) -> ProfileSketch:
        """Add raw rows ``x_raw`` (n, C) in the bundle's feature order (NaN = missing).

        ``condition_codes`` (n,) are the bundle's codes (-1 unseen); ``distance``
        (n,), for cluster conditions, the scaled distance to the nearest centroid
        (:meth:`plantml.core.conditions.ConditionRule.nearest`). Predictions
        (m,) and alarms (m,) go to :meth:`update_outputs` with ``prediction_codes``
        (default: ``condition_codes``, when m == n).
        """
        c = len(self.profile.features)
        x = np.asarray(x_raw, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != c:
            raise SketchError(
                f"rows must have shape (n, {c}) with the bundle's features in order "
                f"({', '.join(self.profile.features[:6])}...), got {x.shape}"
            )
        if len(np.asarray(condition_codes)) != len(x):
            raise SketchError(
                f"{len(np.asarray(condition_codes))} condition codes for {len(x)} rows; "
                "pass one code per row"
            )
        blocks = self.block_codes(condition_codes, distance)
        self.rows += np.bincount(blocks, minlength=self.n_blocks)
        self.rows[-1] += len(x)
        k = self.profile.n_conditions
        pooled_err = reconstruction_error(x, self.profile.pca[k]) if len(x) else np.zeros(0)
        for b in np.unique(blocks):
            sel = blocks == b
            err = pooled_err[sel] if b == k else reconstruction_error(x[sel], self.profile.pca[b])
            self._add(int(b), np.column_stack([x[sel], err]))
        if len(x):
            self._add(self.n_blocks - 1, np.column_stack([x, pooled_err]))
        if predictions is not None:
            codes = condition_codes if prediction_codes is None else prediction_codes
            self.update_outputs(predictions, codes, alarms)
        return self

    def _add(self, block: int, values: np.ndarray) -> None:
        ref = self._ref[block]
        edges = self.profile.edges[ref]
        bins = self.profile.bins
        fin = np.isfinite(values)
        self.missing[block] += (~fin).sum(0)
        for j in range(values.shape[1]):
            v = values[fin[:, j], j]
            if len(v):
                idx = np.searchsorted(edges[j], v, side="right")
                self.counts[block, j] += np.bincount(idx, minlength=bins)
                self.tail_sum[block, j] += (v[idx == 0].sum(), v[idx == bins - 1].sum())
        self.moments.add_values(values, block)

    def update_outputs(
        self, predictions: np.ndarray, codes: np.ndarray, alarms: np.ndarray | None = None
    ) -> ProfileSketch:
        """Add model outputs (m,) with their windows' condition codes (m,) and 0/1 alarms (m,).

        For a class bundle, ``predictions`` are the predicted class indices.
        """
        pred = np.asarray(predictions, dtype=np.float64).reshape(-1)
        codes = np.asarray(codes)
        if codes.shape != pred.shape:
            raise SketchError(
                f"{len(codes)} condition codes for {len(pred)} predictions; pass one per prediction"
            )
        blocks = self.block_codes(codes)
        if alarms is not None:
            alarms = np.asarray(alarms).reshape(-1)
            if alarms.shape != pred.shape:
                raise SketchError(f"{len(alarms)} alarms for {len(pred)} predictions")
        for b in [*np.unique(blocks).tolist(), self.n_blocks - 1]:
            sel = blocks == b if b != self.n_blocks - 1 else np.ones(len(pred), dtype=bool)
            v = pred[sel]
            fin = v[np.isfinite(v)]
            edges = self._out_edges[self._ref[b]]
            idx = np.searchsorted(edges, fin, side="right")
            self.out_counts[b] += np.bincount(idx, minlength=len(edges) + 1)
            self.out_tail_sum[b] += (fin[idx == 0].sum(), fin[idx == len(edges)].sum())
            self.out_moments.add_values(v[:, None], (slice(b, b + 1),))
            if alarms is not None:
                a = alarms[sel]
                self.alarms[b] += int(np.nansum(a.astype(np.float64)))
                self.alarm_n[b] += int(np.isfinite(a.astype(np.float64)).sum())
        return self

    # --- merging and serialization ---------------------------------------------------------------

    def merge(self, other: ProfileSketch) -> ProfileSketch:
        """Add ``other`` (same profile) into this sketch; returns self."""
        if other.profile.sha256 != self.profile.sha256:
            raise SketchError(
                "cannot merge sketches of different reference profiles (different bundles); "
                "merge only summaries of the same bundle version"
            )
        self.rows += other.rows
        self.counts += other.counts
        self.missing += other.missing
        self.tail_sum += other.tail_sum
        self.moments.merge(other.moments)
        self.out_counts += other.out_counts
        self.out_tail_sum += other.out_tail_sum
        self.out_moments.merge(other.out_moments)
        self.alarms += other.alarms
        self.alarm_n += other.alarm_n
        return self

    @classmethod
    def merged(cls, profile: ReferenceProfile, sketches: Iterable[ProfileSketch]) -> ProfileSketch:
        """One sketch holding all of ``sketches`` (an empty one when there are none)."""
        out = cls(profile)
        for s in sketches:
            out.merge(s)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the agent's summary field ``sketch``); floats exact."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "profile_sha256": self.profile.sha256,
            "blocks": list(self.blocks),
            "rows": self.rows.tolist(),
            "input": {
                "counts": self.counts.tolist(),
                "missing": self.missing.tolist(),
                "tail_sum": self.tail_sum.tolist(),
                **self.moments.to_dict(),
            },
            "output": {
                "counts": self.out_counts.tolist(),
                "alarms": self.alarms.tolist(),
                "alarm_n": self.alarm_n.tolist(),
                "tail_sum": self.out_tail_sum.tolist(),
                **self.out_moments.to_dict(),
            },
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], profile: ReferenceProfile) -> ProfileSketch:
        """Rebuild a sketch sent by a device; it must follow ``profile``."""
        if not isinstance(d, Mapping) or d.get("format") != FORMAT:
            raise SketchError(f"not a plantml sketch (format {FORMAT!r} expected)")
        if d.get("format_version") != FORMAT_VERSION:
            raise SketchError(
                f"sketch format_version {d.get('format_version')!r} is not supported "
                f"(this plantml reads {FORMAT_VERSION}); upgrade plantml"
            )
        if d.get("profile_sha256") != profile.sha256:
            raise SketchError(
                f"the sketch follows reference profile {str(d.get('profile_sha256'))[:12]}, not "
                f"{profile.sha256[:12]}: it was made by another bundle; pass that bundle"
            )
        out = cls(profile)
        try:
            inp, outp = d["input"], d["output"]
            out.rows = _ints(d["rows"], out.rows.shape, "rows")
            out.counts = _ints(inp["counts"], out.counts.shape, "input.counts")
            out.missing = _ints(inp["missing"], out.missing.shape, "input.missing")
            out.tail_sum = _sums(inp["tail_sum"], out.tail_sum.shape, "input.tail_sum")
            out.moments.load(inp, "input")
            out.out_counts = _ints(outp["counts"], out.out_counts.shape, "output.counts")
            out.out_tail_sum = _sums(outp["tail_sum"], out.out_tail_sum.shape, "output.tail_sum")
            out.out_moments.load(outp, "output")
            out.alarms = _ints(outp["alarms"], out.alarms.shape, "output.alarms")
            out.alarm_n = _ints(outp["alarm_n"], out.alarm_n.shape, "output.alarm_n")
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, SketchError):
                raise
            raise SketchError(f"malformed sketch ({exc!r}); resend it from the device") from None
        return out

    def tail_means(self, output: bool = False) -> np.ndarray:
        """Mean of the values in the first and last bin, (K+2, S, 2) or (K+2, 2); NaN if empty."""
        counts = self.out_counts if output else self.counts
        sums = self.out_tail_sum if output else self.tail_sum
        n = np.stack([counts[..., 0], counts[..., -1]], axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, sums / np.maximum(n, 1), np.nan)

    @property
    def n_rows(self) -> int:
        """Rows added since the last reset."""
        return int(self.rows[-1])


def _sums(value: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != shape:
        raise SketchError(f"sketch {what} has shape {arr.shape}, the profile needs {shape}")
    return arr


def _ints(value: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.int64)
    if arr.shape != shape:
        raise SketchError(
            f"sketch {what} has shape {arr.shape}, the profile needs {shape}; the sketch was "
            "made for another bundle"
        )
    if (arr < 0).any():
        raise SketchError(f"sketch {what} holds negative counts; resend it from the device")
    return arr
