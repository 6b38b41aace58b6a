"""The feature schema: derived from training data, stored with the model, enforced on every row.

One `FeatureSchema` serves three purposes:
- `derive` reads a training table and decides each feature's kind (numeric, categorical,
  boolean, datetime, text), nullability, observed categories and numeric range;
- `validate_rows` checks JSON rows before they may enter a batch, naming row and field;
- `to_frame` turns rows (or a training table) into the exact dtypes the predictor was fit
  on. Training and serving call the same function, so they cannot disagree.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd

FeatureKind = Literal["numeric", "categorical", "boolean", "datetime", "text"]

# How many observed categories we keep per feature (ids and the like have thousands).
MAX_STORED_CATEGORIES = 200
# A string column is "text" (not categorical) when its values average this many words
# and most of them are distinct.
TEXT_MIN_MEAN_WORDS = 3.0
TEXT_MIN_UNIQUE_RATIO = 0.5
# Longest string value a request may carry in one field (a limit, not a training fact).
MAX_STRING_CHARS = 10_000

ExtraFieldsPolicy = Literal["ignore", "reject"]
CLASSIFICATION_PROBLEMS = frozenset({"binary", "multiclass"})


def is_classification(problem_type: str) -> bool:
    """AutoGluon's problem types with classes (and so class probabilities)."""
    return problem_type in CLASSIFICATION_PROBLEMS

# What a request's bad rows do: fail the request, or answer null in place (skip).
OnError = Literal["fail", "skip"]
ON_ERROR_CHOICES: tuple[str, ...] = get_args(OnError)

_TRUE = {"true", "yes", "1", "t", "y"}
_FALSE = {"false", "no", "0", "f", "n"}
_MISSING = object()


@dataclass(frozen=True)
class Feature:
    name: str
    kind: FeatureKind
    nullable: bool
    integer: bool = False
    minimum: float | None = None
    maximum: float | None = None
    categories: tuple[str, ...] | None = None
    categories_truncated: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["categories"] = list(self.categories) if self.categories is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Feature:
        cats = data.get("categories")
        return cls(
            name=data["name"],
            kind=data["kind"],
            nullable=bool(data["nullable"]),
            integer=bool(data.get("integer", False)),
            minimum=data.get("minimum"),
            maximum=data.get("maximum"),
            categories=tuple(cats) if cats is not None else None,
            categories_truncated=bool(data.get("categories_truncated", False)),
        )


@dataclass(frozen=True)
class LabelInfo:
    name: str
    problem_type: str
    classes: tuple[Any, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "problem_type": self.problem_type,
            "classes": list(self.classes) if self.classes is not None else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelInfo:
        classes = data.get("classes")
        return cls(
            name=data["name"],
            problem_type=data["problem_type"],
            classes=tuple(classes) if classes is not None else None,
        )


@dataclass
class RowProblem:
    row: int
    field: str | None
    problem: str

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "problem": self.problem}


@dataclass
class ValidatedRows:
    """Rows that passed, as value lists in schema order, and what was wrong with the rest.

    `indices[k]` is the request row that `rows[k]` came from. The drift counters say, per
    feature, how many accepted values were categories never seen in training or numbers
    outside the training range: accepted (the model copes), but worth watching.
    """

    rows: list[list[Any]]
    indices: list[int] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    ignored_fields: list[str] = field(default_factory=list)
    unseen_categories: dict[str, int] = field(default_factory=dict)
    out_of_range: dict[str, int] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def drift(self) -> dict[str, dict[str, int]]:
        return {"unseen_categories": self.unseen_categories, "out_of_range": self.out_of_range}


def json_value(value: Any) -> Any:
    """A cell (numpy, pandas, Arrow, a file's) as a plain JSON value.

    NaN, NaT and NA become null; infinities become text, which the schema rejects by row and
    field.
    """
    if value is None or value is pd.NaT:
        return None
    if hasattr(value, "item") and not isinstance(value, (list, dict)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, decimal.Decimal):
        return json_value(float(value))
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, Iterable):
        return [json_value(v) for v in value]
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def _all_parse(values: pd.Series, parse: Any) -> bool:
    try:
        parsed = parse(values)
    except (ValueError, TypeError, OverflowError):
        return False
    return bool(parsed.notna().all())


def _parse_datetimes(values: pd.Series) -> pd.Series:
    parsed = pd.to_datetime(values, errors="coerce", format="mixed", utc=True)
    return parsed.dt.tz_localize(None)


def infer_kind(series: pd.Series) -> FeatureKind:
    """Decide what a column is, looking through text that holds numbers, dates or booleans."""
    if pd.api.types.is_bool_dtype(series):
        return "boolean"
    if pd.api.types.is_numeric_dtype(series):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime"
    values = series.dropna()
    if values.empty:
        return "categorical"
    if values.map(lambda v: isinstance(v, (bool, np.bool_))).all():
        return "boolean"
    as_text = values.astype(str).str.strip()
    if _all_parse(as_text, lambda s: pd.to_numeric(s, errors="coerce")):
        return "numeric"
    if as_text.str.lower().isin(_TRUE | _FALSE).all() and as_text.str.lower().nunique() <= 2:
        return "boolean"
    if as_text.str.contains(r"\d", regex=True).all() and _all_parse(as_text, _parse_datetimes):
        return "datetime"
    words = as_text.str.split().str.len().mean()
    unique_ratio = as_text.nunique() / len(as_text)
    if words >= TEXT_MIN_MEAN_WORDS and unique_ratio >= TEXT_MIN_UNIQUE_RATIO:
        return "text"
    return "categorical"


def _to_bool(value: Any) -> bool | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


def derive_feature(name: str, series: pd.Series) -> Feature:
    kind = infer_kind(series)
    nullable = bool(series.isna().any())
    if kind == "numeric":
        numbers = pd.to_numeric(series, errors="coerce").dropna()
        finite = numbers[np.isfinite(numbers)]
        integer = bool(len(finite) and (finite == np.floor(finite)).all())
        return Feature(
            name=name,
            kind=kind,
            nullable=nullable,
            integer=integer,
            minimum=float(finite.min()) if len(finite) else None,
            maximum=float(finite.max()) if len(finite) else None,
        )
    if kind == "categorical":
        counts = series.dropna().astype(str).value_counts()
        cats = tuple(sorted(counts.index[:MAX_STORED_CATEGORIES]))
        return Feature(
            name=name,
            kind=kind,
            nullable=nullable,
            categories=cats,
            categories_truncated=len(counts) > MAX_STORED_CATEGORIES,
        )
    return Feature(name=name, kind=kind, nullable=nullable)


@dataclass(frozen=True)
class FeatureSchema:
    features: tuple[Feature, ...]
    label: LabelInfo

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @classmethod
    def derive(cls, table: pd.DataFrame, label: str, problem_type: str) -> FeatureSchema:
        features = tuple(
            derive_feature(str(col), table[col]) for col in table.columns if col != label
        )
        classes = None
        if is_classification(problem_type):
            classes = tuple(sorted(json_value(v) for v in table[label].dropna().unique()))
        return cls(features=features, label=LabelInfo(label, problem_type, classes))

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": [f.to_dict() for f in self.features],
            "label": self.label.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSchema:
        return cls(
            features=tuple(Feature.from_dict(f) for f in data["features"]),
            label=LabelInfo.from_dict(data["label"]),
        )

    def row_json_schema(self, extra_fields: ExtraFieldsPolicy = "ignore") -> dict[str, Any]:
        """JSON Schema of one request row, for the OpenAPI document.

        It documents rather than restricts: unseen categories and out-of-range numbers are
        accepted, so categories and ranges go into descriptions, not enums or bounds.
        """
        properties = {f.name: _feature_json_schema(f) for f in self.features}
        return {
            "type": "object",
            "properties": properties,
            "required": [f.name for f in self.features if not f.nullable],
            "additionalProperties": extra_fields == "ignore",
        }

    def labelled_row_json_schema(self, extra_fields: ExtraFieldsPolicy = "ignore"
                                 ) -> dict[str, Any]:
        """`row_json_schema` with the label the model was trained on, required (the rows
        of POST /feedback)."""
        row = self.row_json_schema(extra_fields)
        label = self.label
        if is_classification(label.problem_type):
            shown = ", ".join(str(c) for c in (label.classes or ())[:20])
            labelled: dict[str, Any] = {
                "type": ["string", "integer", "boolean"],
                "enum": list(label.classes or ()),
                "description": f"the true label: one of the model's classes ({shown})"}
        else:
            labelled = {"type": "number", "description": "the true label: a finite number"}
        return {**row, "properties": {**row["properties"], label.name: labelled},
                "required": [*row["required"], label.name]}

    # -- serving --------------------------------------------------------------------------

    def validate_rows(
        self, rows: Sequence[Any], extra_fields: ExtraFieldsPolicy = "ignore"
    ) -> ValidatedRows:
        """Check every row against the schema; all problems at once, rows in schema order."""
        result = ValidatedRows(rows=[])
        known = set(self.names)
        ignored: set[str] = set()
        for index, row in enumerate(rows):
            if not isinstance(row, dict):
                result.problems.append(
                    RowProblem(index, None, f"a row must be a JSON object, got {_type_name(row)}")
                )
                continue
            values: list[Any] = []
            row_ok = True
            for feature in self.features:
                value, problem = _check_value(feature, row.get(feature.name, _MISSING))
                if problem is not None:
                    result.problems.append(RowProblem(index, feature.name, problem))
                    row_ok = False
                elif value is not None:
                    _count_drift(feature, value, result)
                else:
                    result.missing[feature.name] = result.missing.get(feature.name, 0) + 1
                values.append(value)
            if len(row) > len(known) or not known.issuperset(row):
                extras = sorted(str(k) for k in row if k not in known)
                if extra_fields == "reject":
                    result.problems.extend(
                        RowProblem(index, name, "unknown field (AGBENTO_EXTRA_FIELDS=reject)")
                        for name in extras
                    )
                    row_ok = False
                ignored.update(extras)
            if row_ok:
                result.rows.append(values)
                result.indices.append(index)
        result.ignored_fields = sorted(ignored)
        return result

    def validate_table(
        self, table: pd.DataFrame, extra_fields: ExtraFieldsPolicy = "ignore",
        present: set[str] | None = None,
    ) -> ValidatedTable:
        """`validate_rows` per column: the same decisions, messages and counts.

        A column not in `present` (default: every column) was not sent at all; a `MISSING`
        cell is a key one JSON row did not carry. Both are "missing", not null.
        """
        n = len(table)
        columns = {str(c): table[c] for c in table.columns
                   if present is None or str(c) in present}
        result = ValidatedTable(frame=pd.DataFrame(), indices=np.arange(0), total=n,
                                features=self.features)
        refused = np.zeros(n, dtype=bool)
        order: list[tuple[int, int, RowProblem]] = []
        values: dict[str, np.ndarray] = {}
        for position, feature in enumerate(self.features):
            checked = _check_column(feature, columns.get(feature.name), n)
            values[feature.name] = checked.values
            for row, problem in checked.bad.items():
                order.append((row, position, RowProblem(row, feature.name, problem)))
                refused[row] = True
            _drift(feature, checked, result)
        known = set(self.names)
        extras = sorted(name for name in columns if name not in known)
        ignored = set()
        for name in extras:
            cells = columns[name]
            carried = np.ones(n, dtype=bool) if cells.dtype != object \
                else ~(cells.to_numpy() == MISSING)
            if not carried.any():
                continue
            ignored.add(name)
            if extra_fields == "reject":
                for row in np.flatnonzero(carried):
                    order.append((int(row), len(self.features), RowProblem(
                        int(row), name, "unknown field (AGBENTO_EXTRA_FIELDS=reject)")))
                refused |= carried
        order.sort(key=lambda item: (item[0], item[1]))  # stable: extras keep name order
        result.problems = [problem for _, _, problem in order]
        result.ignored_fields = sorted(ignored)
        result.indices = np.flatnonzero(~refused).astype(np.int64)
        if refused.any():
            values = {name: column[result.indices] for name, column in values.items()}
        result.frame = pd.DataFrame(values, index=pd.RangeIndex(len(result.indices)), copy=False)
        return result

    def to_frame(self, rows: pd.DataFrame | Sequence[Sequence[Any]]) -> pd.DataFrame:
        """Model input with training dtypes, from a table or from validated value lists."""
        if isinstance(rows, pd.DataFrame):
            frame = rows.reindex(columns=self.names)
        else:
            frame = pd.DataFrame.from_records(list(rows), columns=self.names)
        out: dict[str, pd.Series] = {}
        for feature in self.features:
            col = frame[feature.name]
            if feature.kind == "numeric":
                out[feature.name] = pd.to_numeric(col, errors="coerce").astype("float64")
            elif feature.kind == "boolean":
                out[feature.name] = col.map(_to_bool).astype("float64")
            elif feature.kind == "datetime":
                out[feature.name] = _parse_datetimes(col)
            else:
                out[feature.name] = _as_text(col)
        return pd.DataFrame(out, index=frame.index)


# -- columnar validation ----------------------------------------------------------------------

# A cell a row did not carry (a JSON key absent from that row, a CSV missing-value token):
# distinct from a null cell, as in `validate_rows` ("missing required feature").
MISSING = _MISSING
# Features whose drift `validate_rows` counts.
_PLAIN_TEXT = ("string", "empty")
_NUMBERS = ("integer", "floating", "mixed-integer-float", "empty")


@dataclass
class ValidatedTable:
    """`validate_table`'s answer: the accepted rows as the model's frame (`to_frame`'s dtypes,
    fresh RangeIndex), the request row each came from, and what `ValidatedRows` also says."""

    frame: pd.DataFrame
    indices: np.ndarray
    problems: list[RowProblem] = field(default_factory=list)
    ignored_fields: list[str] = field(default_factory=list)
    unseen_categories: dict[str, int] = field(default_factory=dict)
    out_of_range: dict[str, int] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)
    total: int = 0  # the request's rows, accepted or not
    features: tuple[Feature, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def rows(self) -> FrameRows:
        """The accepted rows as value lists, built only if someone iterates (the sampled
        prediction log does, rarely)."""
        return FrameRows(self.frame, self.features)

    def drift(self) -> dict[str, dict[str, int]]:
        return {"unseen_categories": self.unseen_categories, "out_of_range": self.out_of_range}


class FrameRows:
    """A model frame's rows as the row path's value lists (JSON values: booleans as booleans,
    dates as ISO text, null as None), on demand."""

    def __init__(self, frame: pd.DataFrame, features: Sequence[Feature]) -> None:
        self.frame = frame
        self.booleans = [f.kind == "boolean" for f in features]

    def __len__(self) -> int:
        return len(self.frame)

    def __iter__(self) -> Iterator[list[Any]]:
        for row in self.frame.itertuples(index=False, name=None):
            values = [json_value(v) for v in row]
            yield [bool(v) if flag and v is not None else v
                   for v, flag in zip(values, self.booleans, strict=True)]


@dataclass
class _Column:
    """One feature checked over every row: the frame's column and the refused cells."""

    values: np.ndarray  # the frame's values for every row (refused cells: anything)
    bad: dict[int, str]  # row -> problem
    accepted: np.ndarray  # bool: a value (not null) that passed


def _object_cells(column: pd.Series, nulls: np.ndarray) -> np.ndarray:
    if column.dtype == object:
        return column.to_numpy()
    cells = column.astype(object).to_numpy()
    cells[nulls] = None  # NaN, NaT, pd.NA: null, as json_value reads them
    return cells


def _scalar(feature: Feature, cells: np.ndarray, rows: np.ndarray, out: np.ndarray,
            bad: dict[int, str]) -> None:
    """The exact check, cell by cell, for the cells no fast path vouched for."""
    for row in rows:
        value, problem = _check_value(feature, cells[row])
        if problem is not None:
            bad[int(row)] = problem
        else:
            out[row] = value


def _long_strings(cells: np.ndarray, where: np.ndarray) -> np.ndarray:
    mask = np.zeros(len(cells), dtype=bool)
    try:  # the common case, in C: no value is that long (len of anything sized is an upper
        # bound here: only strings count, so a long list still goes the exact way below)
        if max(map(len, cells[where]), default=0) <= MAX_STRING_CHARS:
            return mask
    except TypeError:  # a value without len (a number among strings)
        pass
    lengths = np.fromiter((len(v) if isinstance(v, str) else 0 for v in cells[where]),
                          dtype=np.int64, count=int(where.sum()))
    mask[np.flatnonzero(where)[lengths > MAX_STRING_CHARS]] = True
    return mask


def _check_column(feature: Feature, column: pd.Series | None, n: int) -> _Column:
    """`_check_value` over a whole column: masks find the cells that need a closer look."""
    bad: dict[int, str] = {}
    if column is None:
        empty = np.ones(n, dtype=bool)
        missing, nulls = empty, np.zeros(n, dtype=bool)
        odd = nulls
        raw = cells = np.full(n, None, dtype=object)
        typed = False
    else:
        raw = column.to_numpy()
        typed = column.dtype.kind in "biufmM"
        nulls = pd.isna(raw)
        cells = _object_cells(column, nulls)
        missing = np.zeros(n, dtype=bool) if typed else cells == MISSING
        if not typed and (nulls.any() or missing.any()):
            nulls &= ~missing
            # only None is null to _check_value (a float NaN in a JSON row is a number)
            odd = nulls & ~np.equal(cells, None).astype(bool)
            nulls &= ~odd
        else:
            odd = np.zeros(n, dtype=bool)
        empty = missing | nulls
    if not feature.nullable:
        for row in np.flatnonzero(missing):
            bad[int(row)] = "missing required feature"
        for row in np.flatnonzero(nulls):
            bad[int(row)] = "null is not allowed: this feature had no missing values in training"
    given = ~empty
    kind = feature.kind
    numbers = np.full(n, np.nan) if kind in ("numeric", "boolean") else None
    out = np.full(n, None, dtype=object)
    if column is None or not given.any():
        return _Column(_frame_column(feature, out, numbers), bad, np.zeros(n, dtype=bool))
    suspect = odd.copy()
    dtype = column.dtype
    # numpy-typed columns (Arrow, CSV, Parquet) need no look at the cells' Python types
    inferred = None if typed else pd.api.types.infer_dtype(cells[given & ~odd], skipna=False)
    if inferred is not None and inferred not in _NUMBERS and inferred != "boolean":
        suspect |= _long_strings(cells, given)
    fast = given & ~suspect
    if kind == "numeric":
        assert numbers is not None
        if dtype.kind == "b" or inferred == "boolean":
            suspect |= fast
        elif dtype.kind in "iuf":
            numbers[fast] = raw[fast].astype(np.float64)
        elif inferred in _NUMBERS or inferred == "string":
            picked = cells[fast]
            if inferred == "string":  # pandas finds the text that does not parse ...
                parses = pd.notna(pd.to_numeric(picked, errors="coerce"))
                suspect[np.flatnonzero(fast)[~parses]] = True
                fast &= ~suspect
                picked = cells[fast]
            try:  # ... and Python's float (what _check_value calls) reads the rest
                numbers[fast] = picked.astype(np.float64)
            except (ValueError, TypeError, OverflowError):
                suspect |= fast
        else:
            suspect |= fast
        fast &= ~suspect
        suspect |= fast & ~np.isfinite(numbers)
    elif kind in ("categorical", "text"):
        if inferred == "string":
            out[fast] = cells[fast]
        elif kind == "categorical" and (inferred == "integer" or dtype.kind in "iu"):
            out[fast] = [str(int(v)) for v in cells[fast]]
        else:
            suspect |= fast
    elif kind == "boolean":
        assert numbers is not None
        if dtype.kind == "b" or inferred == "boolean":
            numbers[fast] = cells[fast].astype(np.float64)
        elif inferred == "string":
            text = pd.Series(cells[fast]).str.strip().str.lower()
            truth = text.isin(_TRUE).to_numpy()
            falsity = text.isin(_FALSE).to_numpy()
            rows = np.flatnonzero(fast)
            suspect[rows[~(truth | falsity)]] = True
            numbers[rows[truth]] = 1.0
            numbers[rows[falsity]] = 0.0
        else:
            suspect |= fast
    elif kind == "datetime":
        if dtype.kind == "M":
            out[fast] = cells[fast]
        elif inferred == "string":
            parsed = pd.to_datetime(pd.Series(cells[fast]), errors="coerce", format="mixed",
                                    utc=True)
            rows = np.flatnonzero(fast)
            suspect[rows[parsed.isna().to_numpy()]] = True
            good = rows[parsed.notna().to_numpy()]
            out[good] = cells[good]
        else:
            suspect |= fast
    else:
        raise AssertionError(f"unknown feature kind {kind}")
    rows = np.flatnonzero(suspect)
    if len(rows):
        _scalar(feature, cells, rows, out, bad)
        if numbers is not None:  # the numbers the exact check accepted
            for row in rows:
                if int(row) not in bad:
                    numbers[row] = float(out[row])
    accepted = given.copy()
    if bad:
        accepted[list(bad)] = False
    return _Column(_frame_column(feature, out, numbers), bad, accepted)


def _frame_column(feature: Feature, values: np.ndarray,
                  numbers: np.ndarray | None) -> np.ndarray:
    """`to_frame`'s conversion of one feature's canonical values (None where empty)."""
    if numbers is not None:  # numeric and boolean: float64, NaN where empty
        return numbers
    if feature.kind == "datetime":
        parsed = _parse_datetimes(pd.Series(values, dtype=object))
        return parsed.to_numpy(dtype="datetime64[ns]")
    return values  # text: str or None, as _as_text makes it


def _drift(feature: Feature, column: _Column, result: ValidatedTable) -> None:
    accepted = column.accepted
    count = int(accepted.sum())
    missing = len(accepted) - count - len(column.bad)
    if missing:
        result.missing[feature.name] = missing
    if not count:
        return
    if feature.kind == "numeric":
        values = column.values[accepted]
        low, high = feature.minimum, feature.maximum
        outside = np.zeros(count, dtype=bool)
        if low is not None:
            outside |= values < low
        if high is not None:
            outside |= values > high
        if outside.any():
            result.out_of_range[feature.name] = int(outside.sum())
    elif (feature.kind == "categorical" and feature.categories is not None
          and not feature.categories_truncated):
        values = pd.Series(column.values[accepted], dtype=object, copy=False)
        unseen = int((~values.isin(feature.categories)).sum())  # a hash table, in C
        if unseen:
            result.unseen_categories[feature.name] = unseen


def _as_text(col: pd.Series) -> pd.Series:
    """Strings and None (object dtype), as the predictor was fit on."""
    text = col.astype(object).where(col.notna(), None)
    # validated rows hold only strings and None: skip the per-value conversion (C check)
    if pd.api.types.infer_dtype(text, skipna=True) in ("string", "empty"):
        return text
    return text.map(lambda v: v if v is None or isinstance(v, str) else str(v))


_JSON_TYPES: dict[str, dict[str, Any]] = {
    "numeric": {"type": "number"},
    "boolean": {"type": "boolean"},
    "datetime": {"type": "string", "format": "date-time"},
    "categorical": {"type": "string"},
    "text": {"type": "string"},
}


def _feature_json_schema(feature: Feature) -> dict[str, Any]:
    schema = dict(_JSON_TYPES[feature.kind])
    notes = [feature.kind]
    if feature.kind == "numeric" and feature.minimum is not None:
        notes.append(f"training range [{feature.minimum:g}, {feature.maximum:g}]")
    if feature.categories:
        shown = ", ".join(feature.categories[:20])
        more = " ..." if len(feature.categories) > 20 or feature.categories_truncated else ""
        notes.append(f"seen in training: {shown}{more}")
    if feature.kind == "categorical":
        schema["type"] = ["string", "integer"]
    if feature.nullable:
        schema["type"] = [*([schema["type"]] if isinstance(schema["type"], str)
                            else schema["type"]), "null"]
    if feature.kind == "text":
        schema["maxLength"] = MAX_STRING_CHARS
    schema["description"] = "; ".join(notes)
    return schema


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _count_drift(feature: Feature, value: Any, result: ValidatedRows) -> None:
    if feature.kind == "numeric":
        low, high = feature.minimum, feature.maximum
        if (low is not None and value < low) or (high is not None and value > high):
            result.out_of_range[feature.name] = result.out_of_range.get(feature.name, 0) + 1
    elif (
        feature.kind == "categorical"
        and feature.categories is not None
        and not feature.categories_truncated
        and value not in feature.categories
    ):
        counts = result.unseen_categories
        counts[feature.name] = counts.get(feature.name, 0) + 1


def _check_value(feature: Feature, value: Any) -> tuple[Any, str | None]:
    """(canonical value, None) when the value fits the feature, else (None, problem)."""
    if value is _MISSING:
        if feature.nullable:
            return None, None
        return None, "missing required feature"
    if value is None:
        if feature.nullable:
            return None, None
        return None, "null is not allowed: this feature had no missing values in training"
    if isinstance(value, str) and len(value) > MAX_STRING_CHARS:
        return None, f"string of {len(value)} characters exceeds the limit of {MAX_STRING_CHARS}"
    kind = feature.kind
    if kind == "numeric":
        if isinstance(value, bool):
            return None, "expected a number, got a boolean"
        if isinstance(value, (int, float)):
            try:
                number = float(value)
            except OverflowError:
                return None, "number is too large"
        elif isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                return None, f"expected a number, got the string {_preview(value)}"
        else:
            return None, f"expected a number, got {_type_name(value)}"
        if not math.isfinite(number):
            return None, "number must be finite"
        return number, None
    if kind in ("categorical", "text"):
        if isinstance(value, str):
            return value, None
        if isinstance(value, int) and not isinstance(value, bool) and kind == "categorical":
            return str(value), None
        return None, f"expected a string, got {_type_name(value)}"
    if kind == "boolean":
        if isinstance(value, (bool, int, str)) and not isinstance(value, float):
            parsed = _to_bool(value)
            if parsed is not None:
                return parsed, None
        return None, f"expected a boolean, got {_type_name(value)} {_preview(value)}"
    if kind == "datetime":
        if not isinstance(value, str):
            return None, f"expected an ISO-8601 date string, got {_type_name(value)}"
        try:
            stamp = pd.Timestamp(value)
        except (ValueError, TypeError, OverflowError):
            return None, f"cannot parse {_preview(value)} as a date"
        if pd.isna(stamp):
            return None, f"cannot parse {_preview(value)} as a date"
        return value, None
    raise AssertionError(f"unknown feature kind {kind}")


def _preview(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def nulls_as_none(chunk: pd.DataFrame) -> pd.DataFrame:
    """Empty cells of text columns (NaN from CSV and JSON Lines readers) as None, the null a
    table body decodes to in the service: NaN there would be a number."""
    fixed = {name: column.where(column.notna(), None) for name, column in chunk.items()
             if column.dtype == object and column.hasnans}
    return chunk.assign(**fixed) if fixed else chunk


def json_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A table as JSON-able records (NaN -> null, numpy scalars -> Python)."""
    return [
        {str(k): json_value(v) for k, v in rec.items()} for rec in frame.to_dict("records")
    ]
