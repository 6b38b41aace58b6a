"""Reference distributions: each feature's training rows in a few bins, kept in the model card,
so served rows (or a file) can be counted into the same bins and compared (PSI).

Per feature kind:
- numeric: 10 quantile bins of the training values (edges rounded to 6 significant digits,
  repeated edges merged, so an integer feature may have fewer), and `missing`;
- datetime: the same, on seconds since the epoch (labels in ISO form);
- text: the same, on the length in characters;
- boolean: `false`, `true`, `missing`;
- categorical: the 20 most frequent training categories, `other`, `missing`.
A bin `[a, b)` holds a <= x < b. The training shares are those of the training rows counted
by the very code that counts served rows (`FeatureBins.counts`), so rows like the training
rows give a PSI near 0 by construction.

Counting takes a validated group as the runtime holds it: value lists in schema order (the
row path: canonical values, datetimes as ISO text) or the model frame (`to_frame` dtypes:
float64 with NaN for numbers and booleans, datetime64[ns], object text with None).
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from agbento.rows.schema import FeatureSchema, json_value

MISSING_BIN = "missing"
OTHER_BIN = "other"
QUANTILE_BINS = 10
TOP_CATEGORIES = 20
SIGNIFICANT_DIGITS = 6
# A share below this counts as this in PSI (an empty bin would make ln(0)); the recording
# rule `agbento:feature_psi:1h` clamps with the same value.
PSI_EPSILON = 1e-4
# Up to this many rows a group is counted in Python: numpy's and pandas' fixed cost per
# call is more than a short loop's (a single-row request is the common case online).
FEW_ROWS = 16
REFERENCE_VERSION = 1

_EPOCH = datetime(1970, 1, 1)  # noqa: DTZ001 - the model frame's datetimes are naive UTC
_RESERVED = {MISSING_BIN, OTHER_BIN, ""}
# bin kinds: how a value finds its bin
_BY_EDGES = ("numeric", "datetime", "text")


def _significant(value: float) -> float:
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def _edge_text(kind: str, edge: float) -> str:
    if kind == "datetime":
        return datetime.fromtimestamp(edge, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{edge:.{SIGNIFICANT_DIGITS}g}"


def interval_labels(kind: str, edges: Sequence[float]) -> list[str]:
    """`[-inf, e1)`, `[e1, e2)`, ..., `[en, +inf)`: one per interval between the edges."""
    bounds = ["-inf", *(_edge_text(kind, e) for e in edges), "+inf"]
    return [f"[{low}, {high})" for low, high in zip(bounds[:-1], bounds[1:], strict=True)]


def category_label(category: str) -> str:
    """A category as its bin label: itself, quoted when it would read as a reserved bin (or
    be an empty Prometheus label value, which means no label)."""
    return json.dumps(category) if category in _RESERVED else category


def datetime_seconds(value: str) -> float:
    """An accepted ISO-8601 text (the row path's datetime) as seconds since the epoch, UTC,
    as `to_frame` reads it (an offset converts to UTC; none means UTC)."""
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:  # other forms pandas accepts
        stamp = pd.Timestamp(value).to_pydatetime()
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(UTC).replace(tzinfo=None)
    return (stamp - _EPOCH).total_seconds()


def _numbers(kind: str, column: Any) -> np.ndarray:
    """A model-frame column as float64 per its bin kind, NaN where missing."""
    if kind == "datetime":
        stamps = np.asarray(column, dtype="datetime64[ns]")
        seconds = stamps.view(np.int64) / 1e9
        seconds[np.isnat(stamps)] = np.nan
        return seconds
    if kind == "text":
        cells = np.asarray(column, dtype=object)
        lengths = np.full(len(cells), np.nan)
        present = ~pd.isna(cells)
        lengths[present] = np.fromiter(map(len, cells[present]), dtype=np.float64,
                                       count=int(present.sum()))
        return lengths
    try:
        return np.asarray(column, dtype=np.float64)
    except (TypeError, ValueError):  # a value the model's own frame would not hold: missing
        return pd.to_numeric(pd.Series(column), errors="coerce").to_numpy(dtype=np.float64)


def _datetime_number(value: Any) -> float:
    """Seconds since the epoch of a datetime cell: the row path's ISO text, the model
    frame's nanoseconds (`tolist` of datetime64[ns]) or a timestamp."""
    if isinstance(value, str):
        return datetime_seconds(value)
    if isinstance(value, int):
        return value / 1e9
    return pd.Timestamp(value).value / 1e9


@dataclass(frozen=True)
class FeatureBins:
    """One feature's bins, how a value finds its bin, and the training share of each.

    `kind` is the feature kind. By edges (numeric, datetime, text length): bin i < len(edges)
    + 1 is the interval `searchsorted(edges, x, "right")`. By category (categorical,
    boolean): one bin per category, then `other` (categorical only). `missing` is last.
    """

    name: str
    kind: str
    labels: tuple[str, ...]
    shares: tuple[float, ...]
    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()
    _lookup: dict[str, int] = field(init=False, repr=False, compare=False)
    _edges: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # made once: every request's lookups use them (frozen: set here, never changed)
        object.__setattr__(self, "_lookup", {c: i for i, c in enumerate(self.categories)})
        object.__setattr__(self, "_edges", np.array(self.edges, dtype=np.float64))

    @property
    def missing(self) -> int:
        return len(self.labels) - 1

    @property
    def other(self) -> int:
        return len(self.categories)  # categorical only: the bin after the categories

    # -- fitting ------------------------------------------------------------------------------

    @classmethod
    def fit(cls, name: str, kind: str, column: Any,
            universe: Sequence[str] | None = None) -> FeatureBins:
        """Bins from the training rows of one feature (a model-frame column); `universe`:
        for a categorical, the categories to choose from (all seen ones by default)."""
        if kind in _BY_EDGES:
            numbers = _numbers(kind, column)
            finite = numbers[np.isfinite(numbers)]
            edges: list[float] = []
            if len(finite):
                quantiles = np.quantile(finite, np.arange(1, QUANTILE_BINS) / QUANTILE_BINS,
                                        method="lower")
                rounded = (float(round(q)) if kind == "datetime" else _significant(q)
                           for q in quantiles)
                edges = sorted(set(rounded))
            unfitted = cls(name, kind, (*interval_labels(kind, edges), MISSING_BIN), (),
                           tuple(edges))
        elif kind == "boolean":
            unfitted = cls(name, kind, ("false", "true", MISSING_BIN), (), (), ("0", "1"))
        else:
            unfitted = cls._categorical(name, column, universe)
        counts = unfitted.counts(column)
        total = int(counts.sum())
        shares = tuple(float(c / total) if total else 0.0 for c in counts)
        return cls(name, kind, unfitted.labels, shares, unfitted.edges, unfitted.categories)

    @classmethod
    def _categorical(cls, name: str, column: Any,
                     universe: Sequence[str] | None) -> FeatureBins:
        values = pd.Series(np.asarray(column, dtype=object)).dropna().astype(str)
        frequency = values.value_counts(sort=False)
        candidates = list(universe) if universe is not None else list(frequency.index)
        # most frequent first; ties in the candidates' order (stable sort)
        ranked = sorted(candidates, key=lambda c: -int(frequency.get(c, 0)))
        top = tuple(str(c) for c in ranked[:TOP_CATEGORIES])
        labels = (*(category_label(c) for c in top), OTHER_BIN, MISSING_BIN)
        return cls(name, "categorical", labels, (), (), top)

    # -- counting -----------------------------------------------------------------------------

    def counts(self, column: Any) -> np.ndarray:
        """Rows per bin (int64, one per label) of a model-frame column."""
        if len(column) <= FEW_ROWS:
            return self.counts_of_values(column.tolist() if hasattr(column, "tolist")
                                         else column)
        if self.kind == "categorical":
            return self._count_cells(np.asarray(column, dtype=object))
        return self._count_numbers(_numbers(self.kind, column))

    def counts_of_values(self, values: Sequence[Any]) -> np.ndarray:
        """Rows per bin of canonical values (a row path's column, or a short column): one
        at a time when few, else converted to an array first."""
        if len(values) > FEW_ROWS:
            if self.kind == "categorical":
                return self._count_cells(np.array(values, dtype=object))
            return self._count_numbers(self._numbers_of(values))
        counts = np.zeros(len(self.labels), dtype=np.int64)
        for value in values:
            counts[self.index_of(value)] += 1
        return counts

    def _numbers_of(self, values: Sequence[Any]) -> np.ndarray:
        nan = math.nan
        if self.kind == "datetime":  # NaT too: not equal to itself
            numbers = [nan if v is None or v != v else _datetime_number(v)  # noqa: PLR0124
                       for v in values]
        elif self.kind == "text":
            numbers = [nan if v is None else len(v) for v in values]
        else:  # numbers and booleans (True is 1.0)
            numbers = [nan if v is None else v for v in values]
        return np.array(numbers, dtype=np.float64)

    def _count_numbers(self, numbers: np.ndarray) -> np.ndarray:
        """Rows per bin of float64 values, NaN where missing (by edges, or booleans)."""
        missing = int(np.count_nonzero(np.isnan(numbers)))
        if self.kind == "boolean":
            index = (numbers != 0).astype(np.intp)  # NaN != 0: counted as true, moved below
            nan_bin = 1
        else:  # numpy sorts NaN last: searchsorted puts it after the last edge
            index = np.searchsorted(self._edges, numbers, side="right")
            nan_bin = len(self.edges)
        counts = np.bincount(index, minlength=len(self.labels))
        if missing:
            counts[nan_bin] -= missing
            counts[self.missing] += missing
        return counts

    def _count_cells(self, cells: np.ndarray) -> np.ndarray:
        """Rows per bin of a categorical's cells: each distinct value looked up once (a hash
        table in C finds them; None and NaN are code -1, the last entry: missing)."""
        codes, distinct = pd.factorize(cells)
        lookup = np.array([*(self._lookup.get(v if isinstance(v, str) else str(v), self.other)
                             for v in distinct.tolist()), self.missing], dtype=np.intp)
        return np.bincount(lookup[codes], minlength=len(self.labels))

    def index_of(self, value: Any) -> int:
        """The bin of one value: a canonical row-path value or a model-frame cell (one the
        bins cannot place, a text where training saw numbers, counts as missing)."""
        if value is None or value != value:  # noqa: PLR0124 - NaN (and NaT) are not equal
            return self.missing
        try:
            return self._index_of(value)
        except (TypeError, ValueError):
            return self.missing

    def _index_of(self, value: Any) -> int:
        kind = self.kind
        if kind == "numeric":
            return bisect.bisect_right(self.edges, value)
        if kind == "categorical":
            return self._lookup.get(value if isinstance(value, str) else str(value), self.other)
        if kind == "boolean":
            return 1 if value else 0
        if kind == "text":
            return bisect.bisect_right(self.edges, len(value))
        return bisect.bisect_right(self.edges, _datetime_number(value))

    # -- stored form --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "kind": self.kind, "bins": list(self.labels),
                                "shares": list(self.shares)}
        if self.kind in _BY_EDGES:
            data["edges"] = list(self.edges)
        if self.kind == "categorical":
            data["categories"] = list(self.categories)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureBins:
        kind = str(data["kind"])
        categories = ("0", "1") if kind == "boolean" else tuple(data.get("categories", ()))
        return cls(str(data["name"]), kind, tuple(data["bins"]),
                   tuple(float(s) for s in data["shares"]),
                   tuple(float(e) for e in data.get("edges", ())), categories)


@dataclass(frozen=True)
class Reference:
    """What the model saw: its features' training bins, the holdout's predictions in bins
    (classes, or deciles of a regression's values), and every holdout metric."""

    features: tuple[FeatureBins, ...]
    rows: int
    predictions: FeatureBins | None = None
    holdout_metrics: dict[str, float] = field(default_factory=dict)
    eval_metric: str | None = None
    positive_class: Any = None  # binary: the class AutoGluon scores as positive

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def feature(self, name: str) -> FeatureBins:
        return next(f for f in self.features if f.name == name)

    def bin_counts(self, group: pd.DataFrame | Sequence[Sequence[Any]],
                   positions: Sequence[int] | None = None) -> dict[str, np.ndarray]:
        """Rows per bin, per feature, of a validated group: the model frame, or value lists
        whose item `positions[k]` belongs to feature k (default: the features' order)."""
        if isinstance(group, pd.DataFrame):
            return {f.name: f.counts(group[f.name].to_numpy()) for f in self.features}
        where = range(len(self.features)) if positions is None else positions
        columns = list(zip(*group, strict=True)) if len(group) else [()] * (max(where) + 1)
        return {f.name: f.counts_of_values(columns[at])
                for f, at in zip(self.features, where, strict=True)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, without nulls (BentoML metadata refuses them)."""
        data: dict[str, Any] = {
            "version": REFERENCE_VERSION,
            "rows": self.rows,
            "features": [f.to_dict() for f in self.features],
            "holdout_metrics": {k: float(v) for k, v in self.holdout_metrics.items()
                                if math.isfinite(v)},
        }
        if self.predictions is not None:
            data["predictions"] = self.predictions.to_dict()
        if self.eval_metric is not None:
            data["eval_metric"] = self.eval_metric
        if self.positive_class is not None:
            data["positive_class"] = json_value(self.positive_class)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reference:
        predictions = data.get("predictions")
        return cls(
            features=tuple(FeatureBins.from_dict(f) for f in data["features"]),
            rows=int(data["rows"]),
            predictions=FeatureBins.from_dict(predictions) if predictions else None,
            holdout_metrics={str(k): float(v) for k, v in
                             (data.get("holdout_metrics") or {}).items()},
            eval_metric=data.get("eval_metric"),
            positive_class=data.get("positive_class"),
        )


def build_reference(frame: pd.DataFrame, schema: FeatureSchema,
                    predictions: Sequence[Any] | None = None,
                    holdout_metrics: Mapping[str, float] | None = None,
                    eval_metric: str | None = None, positive_class: Any = None) -> Reference:
    """The reference of a model: `frame` its training rows as model input (`to_frame`
    dtypes; other columns, such as the label, are ignored), `predictions` the holdout's."""
    features = tuple(FeatureBins.fit(f.name, f.kind, frame[f.name].to_numpy())
                     for f in schema.features)
    predicted = None
    if predictions is not None:
        values = np.asarray(predictions)
        if schema.label.classes is not None:
            classes = [str(json_value(c)) for c in schema.label.classes]
            as_text = np.array([None if v is None else str(json_value(v)) for v in values],
                               dtype=object)
            predicted = FeatureBins.fit("prediction", "categorical", as_text, classes)
        else:
            predicted = FeatureBins.fit("prediction", "numeric", values.astype(np.float64))
    return Reference(features, len(frame), predicted, dict(holdout_metrics or {}),
                     eval_metric, positive_class)


# -- comparing ------------------------------------------------------------------------------


def shares(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    array = np.asarray(counts, dtype=np.float64)
    total = array.sum()
    return array / total if total else array


def psi(expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray,
        epsilon: float = PSI_EPSILON) -> float:
    """Population stability index of two share vectors over the same bins:
    sum_i (a_i - e_i) * ln(a_i / e_i), each share first raised to at least `epsilon`
    (not renormalised: the recording rule computes exactly this)."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), epsilon)
    a = np.maximum(np.asarray(actual, dtype=np.float64), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


class BinTally:
    """Counts per feature bin summed over many groups (a file's chunks), for an offline
    report: `add` each validated chunk, then compare with `psi_by_feature`."""

    def __init__(self, reference: Reference) -> None:
        self.reference = reference
        self.counts = {f.name: np.zeros(len(f.labels), dtype=np.int64)
                       for f in reference.features}
        self.rows = 0

    def add(self, group: pd.DataFrame | Sequence[Sequence[Any]]) -> None:
        for name, counts in self.reference.bin_counts(group).items():
            self.counts[name] += counts
        self.rows += len(group)

    def psi_by_feature(self, baseline: BinTally | None = None) -> dict[str, float]:
        """PSI per feature against the training shares, or against `baseline`'s counts."""
        return {f.name: psi(f.shares if baseline is None else shares(baseline.counts[f.name]),
                            shares(self.counts[f.name]))
                for f in self.reference.features}

    def top_drifting(self, limit: int = 5, threshold: float = 0.0,
                     baseline: BinTally | None = None) -> list[tuple[str, float]]:
        """The features with the highest PSI (above `threshold`), highest first."""
        ranked = sorted(self.psi_by_feature(baseline).items(), key=lambda item: -item[1])
        return [(name, value) for name, value in ranked if value > threshold][:limit]


@dataclass(frozen=True)
class FeatureDrift:
    """One feature compared: its PSI and, per bin, the expected and the actual share."""

    name: str
    kind: str
    psi: float
    labels: tuple[str, ...]
    expected: tuple[float, ...]
    actual: tuple[float, ...]

    def to_dict(self, threshold: float) -> dict[str, Any]:
        return {"feature": self.name, "kind": self.kind, "psi": round(self.psi, 6),
                "drifting": self.psi > threshold,
                "bins": [{"bin": label, "expected": round(e, 6), "actual": round(a, 6)}
                         for label, e, a in zip(self.labels, self.expected, self.actual,
                                                strict=True)]}


def compare(tally: BinTally, baseline: BinTally | None = None) -> list[FeatureDrift]:
    """Every feature of `tally` against the training shares (or `baseline`'s), highest PSI
    first."""
    found = []
    for bins in tally.reference.features:
        expected = bins.shares if baseline is None else tuple(
            shares(baseline.counts[bins.name]).tolist())
        actual = tuple(shares(tally.counts[bins.name]).tolist())
        found.append(FeatureDrift(bins.name, bins.kind, psi(expected, actual), bins.labels,
                                  tuple(expected), actual))
    return sorted(found, key=lambda drift: -drift.psi)
