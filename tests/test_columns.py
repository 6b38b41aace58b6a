"""The columnar path: validate_table agrees with validate_rows, cell for cell."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from agbento.rows.columns import table_from_records, validate_records
from agbento.rows.schema import MAX_STRING_CHARS, Feature, FeatureSchema, LabelInfo

SCHEMA = FeatureSchema(
    features=(
        Feature("x", "numeric", nullable=False, minimum=0.0, maximum=10.0),
        Feature("y", "numeric", nullable=True, integer=True, minimum=-5.0, maximum=5.0),
        Feature("colour", "categorical", nullable=False, categories=("blue", "red")),
        Feature("shop", "categorical", nullable=True, categories=("a", "b"),
                categories_truncated=True),
        Feature("flag", "boolean", nullable=True),
        Feature("strict flag", "boolean", nullable=False),
        Feature("when", "datetime", nullable=True),
        Feature("note", "text", nullable=True),
    ),
    label=LabelInfo("label", "binary", ("no", "yes")),
)

_text = st.text(max_size=12)
_cell = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-10**20, max_value=10**20),
    st.integers(min_value=-3, max_value=12),
    st.floats(allow_nan=False),
    st.just(math.inf), st.just(-math.inf), st.just(1e400),
    st.sampled_from(["1", " 2.5 ", "1e3", "-0", "inf", "nan", "1_000", "abc", "", "  ",
                     "red", "blue", "green", "yes", "No", " TRUE ", "t", "0", "1", "y",
                     "2024-01-01", "2024-02-30", "2024-01-01T10:00:00Z", "10:30",
                     "2024-01-01 10:00:00+02:00", "not a date", "Infinity", "0x10"]),
    _text,
    st.just("x" * (MAX_STRING_CHARS + 1)),
    st.just("1" * (MAX_STRING_CHARS + 1)),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)
_keys = st.sampled_from([f.name for f in SCHEMA.features] + ["extra", "other"])
_row = st.one_of(
    st.dictionaries(_keys, _cell, max_size=10),
    st.fixed_dictionaries({f.name: _cell for f in SCHEMA.features}),
)
_rows = st.lists(st.one_of(_row, _row, _row, st.integers(), st.none(), st.text(max_size=3)),
                 min_size=1, max_size=8)


def _same(rows: list[Any], extra_fields: Any) -> None:
    by_row = SCHEMA.validate_rows(rows, extra_fields)
    by_column = validate_records(SCHEMA, rows, extra_fields)
    assert [p.to_dict() for p in by_column.problems] == [p.to_dict() for p in by_row.problems]
    assert list(by_column.indices) == by_row.indices
    assert by_column.ignored_fields == by_row.ignored_fields
    assert by_column.missing == by_row.missing
    assert by_column.unseen_categories == by_row.unseen_categories
    assert by_column.out_of_range == by_row.out_of_range
    # the sampled prediction log's rows: the row path's values (dates as ISO text)
    for mine, theirs in zip(by_column.rows, by_row.rows, strict=True):
        assert [v for v, f in zip(mine, SCHEMA.features, strict=True) if f.kind != "datetime"] \
            == [v for v, f in zip(theirs, SCHEMA.features, strict=True) if f.kind != "datetime"]
    expected = SCHEMA.to_frame(by_row.rows)
    pd.testing.assert_frame_equal(by_column.frame, expected, check_index_type=True)
    assert isinstance(by_column.frame.index, pd.RangeIndex)


@settings(max_examples=300, deadline=None)
@given(rows=_rows, extra_fields=st.sampled_from(["ignore", "reject"]))
def test_validate_table_agrees_with_validate_rows(rows: list[Any], extra_fields: Any) -> None:
    _same(rows, extra_fields)


def test_missing_key_and_null_keep_their_messages() -> None:
    rows = [{"x": 1, "colour": "red", "strict flag": True},
            {"colour": "red", "strict flag": None, "x": None},
            {"x": 2}]
    checked = validate_records(SCHEMA, rows)
    assert [(p.row, p.field, p.problem) for p in checked.problems] == [
        (1, "x", "null is not allowed: this feature had no missing values in training"),
        (1, "strict flag",
         "null is not allowed: this feature had no missing values in training"),
        (2, "colour", "missing required feature"),
        (2, "strict flag", "missing required feature"),
    ]
    assert list(checked.indices) == [0]
    _same(rows, "ignore")


def test_typed_columns_match_their_json_rows() -> None:
    """A typed table (as Parquet or Arrow decode) answers as its rows sent as JSON do."""
    frame = pd.DataFrame({
        "x": [1.0, np.nan, np.inf, 3.0],
        "y": pd.array([1, None, 7, -9], dtype="Int64").astype("float64"),
        "colour": ["red", "green", None, "blue"],
        "shop": [1, 2, 3, 4],
        "flag": [True, False, True, False],
        "strict flag": ["yes", "no", "maybe", "1"],
        "when": pd.to_datetime(["2024-01-01", None, "2024-03-01", "2024-01-05"]),
        "note": ["a", None, "b", "c"],
        "extra": [1, 2, 3, 4],
    })
    as_json = [{k: (None if pd.isna(v) else ("Infinity" if v == np.inf else
                                              (v.isoformat() if hasattr(v, "isoformat")
                                               else v)))
                for k, v in rec.items()} for rec in frame.to_dict("records")]
    as_json = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
               for r in as_json]
    by_row = SCHEMA.validate_rows(as_json)
    by_column = SCHEMA.validate_table(frame)
    assert [p.to_dict() for p in by_column.problems] == [p.to_dict() for p in by_row.problems]
    assert list(by_column.indices) == by_row.indices
    assert by_column.missing == by_row.missing
    assert by_column.ignored_fields == ["extra"]
    pd.testing.assert_frame_equal(by_column.frame, SCHEMA.to_frame(by_row.rows))


def test_a_column_not_present_is_missing() -> None:
    frame = table_from_records([{"x": 1.0, "colour": "red", "strict flag": "y"}]).frame
    checked = SCHEMA.validate_table(frame, present={"x", "strict flag"})
    assert [(p.field, p.problem) for p in checked.problems] == [
        ("colour", "missing required feature")]


def test_answer_media_keeps_json_the_default() -> None:
    from agbento.core.wire import ARROW_STREAM, PARQUET
    from agbento.runtime.contract import answer_media

    assert answer_media(None) is None
    assert answer_media("*/*") is None
    assert answer_media("application/json, application/vnd.apache.parquet") is None
    assert answer_media("application/vnd.apache.parquet") == PARQUET
    assert answer_media(f"{ARROW_STREAM};q=0.9, application/json;q=0.5") == ARROW_STREAM


def test_table_answer_columns_and_errors() -> None:
    import pyarrow as pa

    from agbento.core.wire import ARROW_STREAM
    from agbento.runtime.contract import PlacedAnswer, render_table
    from agbento.runtime.inference import ScoredRequest

    placed = PlacedAnswer(ScoredRequest('["yes",null,"no"]',
                                        '[{"no":0.25,"yes":0.75},null,{"no":0.5,"yes":0.5}]'),
                          [{"row": 1, "field": "x", "problem": "missing required feature"},
                           {"row": 1, "field": None, "problem": "the model could not score"}])
    table = pa.ipc.open_stream(render_table(placed, 3, ("no", "yes"), ARROW_STREAM)).read_all()
    assert table.column_names == ["prediction", "proba_no", "proba_yes", "error"]
    assert table.column("proba_yes").type == pa.float64()
    assert table.to_pylist() == [
        {"prediction": "yes", "proba_no": 0.25, "proba_yes": 0.75, "error": None},
        {"prediction": None, "proba_no": None, "proba_yes": None,
         "error": '[{"field":"x","problem":"missing required feature"},'
                  '{"field":null,"problem":"the model could not score"}]'},
        {"prediction": "no", "proba_no": 0.5, "proba_yes": 0.5, "error": None},
    ]
    regression = PlacedAnswer(ScoredRequest("[1.5,2.5]", "null"), [], classification=False)
    table = pa.ipc.open_stream(render_table(regression, 2, None, ARROW_STREAM)).read_all()
    assert table.to_pylist() == [{"prediction": 1.5, "error": None},
                                 {"prediction": 2.5, "error": None}]


def test_pandas_extension_dtypes_agree_with_their_json_rows() -> None:
    """What `batch --local` may hand over: nullable, categorical and string dtypes."""
    from agbento.rows.schema import json_records

    frame = pd.DataFrame({
        "x": pd.array([1, None, 3], dtype="Int64"),
        "y": pd.array([1.5, None, 2.0], dtype="Float64"),
        "colour": pd.Categorical(["red", None, "green"]),
        "shop": pd.array(["a", None, "z"], dtype="string"),
        "flag": pd.array([True, None, False], dtype="boolean"),
        "strict flag": [True, False, True],
        "when": pd.to_datetime(["2024-01-01", None, "2024-01-03"]).tz_localize("UTC"),
        "note": ["n", None, "m"],
    })
    by_row = SCHEMA.validate_rows(json_records(frame))
    by_column = SCHEMA.validate_table(frame)
    assert [p.to_dict() for p in by_column.problems] == [p.to_dict() for p in by_row.problems]
    assert list(by_column.indices) == by_row.indices == [0, 2]
    assert by_column.missing == by_row.missing
    assert by_column.unseen_categories == by_row.unseen_categories == {"colour": 1}
    pd.testing.assert_frame_equal(by_column.frame, SCHEMA.to_frame(by_row.rows))
