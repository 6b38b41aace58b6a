"""The feature schema: derived from training data, stored with the model, enforced on every row.

One `FeatureSchema` serves three purposes:
- `derive` reads a training table and decides each feature's kind (numeric, categorical,
  boolean, datetime, text), nullability, observed categories and numeric range;
- `validate_rows` checks JSON rows before they may enter a batch, naming row and field;
- `to_frame` turns rows (or a training table) into the exact dtypes the predictor was fit
  on. Training and serving call the same function, so they cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

FeatureKind = Literal["numeric", "categorical", "boolean", "datetime", "text"]
KINDS: tuple[str, ...] = ("numeric", "categorical", "boolean", "datetime", "text")

# How many observed categories we keep per feature (ids and the like have thousands).
MAX_STORED_CATEGORIES = 200
# A string column is "text" (not categorical) when its values average this many words
# and most of them are distinct.
TEXT_MIN_MEAN_WORDS = 3.0
TEXT_MIN_UNIQUE_RATIO = 0.5

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
    """Rows that passed, as value lists in schema order, and what was wrong with the rest."""

    rows: list[list[Any]]
    problems: list[RowProblem] = field(default_factory=list)
    ignored_fields: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _json_scalar(value: Any) -> Any:
    """numpy/pandas scalars to plain JSON-able Python values."""
    if value is None:
        return None
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (pd.Timestamp,)):
        return value.isoformat()
    return value


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
        if problem_type in ("binary", "multiclass"):
            classes = tuple(sorted(_json_scalar(v) for v in table[label].dropna().unique()))
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

    # -- serving --------------------------------------------------------------------------

    def validate_rows(self, rows: Sequence[Any]) -> ValidatedRows:
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
                values.append(value)
            if len(row) > len(known) or not known.issuperset(row):
                ignored.update(k for k in row if k not in known)
            if row_ok:
                result.rows.append(values)
        result.ignored_fields = sorted(str(k) for k in ignored)
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
                out[feature.name] = col.astype(object).where(col.notna(), None).map(
                    lambda v: v if v is None or isinstance(v, str) else str(v)
                )
        return pd.DataFrame(out, index=frame.index)


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
    kind = feature.kind
    if kind == "numeric":
        if isinstance(value, bool):
            return None, "expected a number, got a boolean"
        if isinstance(value, (int, float)):
            number = float(value)
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


def json_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A table as JSON-able records (NaN -> null, numpy scalars -> Python)."""
    return [
        {str(k): _json_scalar(v) for k, v in rec.items()} for rec in frame.to_dict("records")
    ]
