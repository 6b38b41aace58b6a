"""Feature schema: kinds derived from messy tables, row validation, model-input frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agbento.rows.schema import FeatureSchema, infer_kind, json_records


@pytest.fixture()
def messy_table() -> pd.DataFrame:
    n = 60
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "customer id": [f"C-{i:05d}" for i in range(n)],
            "Amount ($)": [str(round(x, 2)) for x in rng.uniform(1, 500, n)],
            "signup date": pd.date_range("2024-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
            "last seen": pd.date_range("2024-03-01 08:00", periods=n, freq="h"),
            "comment": [f"customer wrote note number {i} about item {i * 7}" for i in range(n)],
            "plan/tier": rng.choice(["free", "pro", "team"], n),
            "is_active?": rng.choice(["yes", "no"], n),
            "flag": rng.choice([True, False], n),
            "visits": rng.integers(0, 40, n).astype(float),
            "label": rng.choice(["a", "b"], n),
        }
    ).assign(visits=lambda t: t["visits"].where(t.index % 7 != 0))


def test_kinds_of_a_messy_table(messy_table: pd.DataFrame) -> None:
    schema = FeatureSchema.derive(messy_table, "label", "binary")
    kinds = {f.name: f.kind for f in schema.features}
    assert kinds == {
        "customer id": "categorical",
        "Amount ($)": "numeric",
        "signup date": "datetime",
        "last seen": "datetime",
        "comment": "text",
        "plan/tier": "categorical",
        "is_active?": "boolean",
        "flag": "boolean",
        "visits": "numeric",
    }
    assert "label" not in schema.names
    assert schema.label.classes == ("a", "b")


def test_nullability_range_and_categories(messy_table: pd.DataFrame) -> None:
    schema = FeatureSchema.derive(messy_table, "label", "binary")
    by_name = {f.name: f for f in schema.features}
    assert by_name["visits"].nullable and by_name["visits"].integer
    assert not by_name["Amount ($)"].nullable and not by_name["Amount ($)"].integer
    assert 1 <= by_name["Amount ($)"].minimum <= by_name["Amount ($)"].maximum <= 500
    assert by_name["plan/tier"].categories == ("free", "pro", "team")
    # 60 distinct ids: kept (within the limit), not truncated
    assert len(by_name["customer id"].categories) == 60


def test_schema_round_trips_through_dict(messy_table: pd.DataFrame) -> None:
    schema = FeatureSchema.derive(messy_table, "label", "binary")
    assert FeatureSchema.from_dict(schema.to_dict()) == schema


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        ([1, 2, 3], "numeric"),
        (["1.5", " 2", "-3e2"], "numeric"),
        (["true", "False", "TRUE"], "boolean"),
        (["2024-01-01", "2024-02-03T10:00:00Z"], "datetime"),
        (["red", "green", "red"], "categorical"),
        ([None, None], "categorical"),
        (["12 apples", "red"], "categorical"),
    ],
)
def test_infer_kind(values: list[object], kind: str) -> None:
    assert infer_kind(pd.Series(values)) == kind


def test_validate_rows_names_every_bad_row_and_field(messy_table: pd.DataFrame) -> None:
    schema = FeatureSchema.derive(messy_table, "label", "binary")
    good = json_records(messy_table.drop(columns="label").head(2))
    rows = [
        good[0],
        {**good[1], "Amount ($)": "lots", "visits": True},
        "not a row",
        {k: v for k, v in good[0].items() if k != "plan/tier"},
        {**good[0], "signup date": "not a date", "extra": 1},
    ]
    result = schema.validate_rows(rows)
    problems = {(p.row, p.field) for p in result.problems}
    assert problems == {
        (1, "Amount ($)"),
        (1, "visits"),
        (2, None),
        (3, "plan/tier"),
        (4, "signup date"),
    }
    assert len(result.rows) == 1
    assert result.ignored_fields == ["extra"]


def test_nullable_features_accept_null_and_absence(messy_table: pd.DataFrame) -> None:
    schema = FeatureSchema.derive(messy_table, "label", "binary")
    row = json_records(messy_table.drop(columns="label").head(1))[0]
    row["visits"] = None
    assert schema.validate_rows([row]).ok
    del row["visits"]
    assert schema.validate_rows([row]).ok
    row["comment"] = None  # never missing in training
    assert not schema.validate_rows([row]).ok


def test_to_frame_gives_the_same_model_input_for_tables_and_json_rows(
    messy_table: pd.DataFrame,
) -> None:
    schema = FeatureSchema.derive(messy_table, "label", "binary")
    features = messy_table.drop(columns="label")
    from_table = schema.to_frame(features)
    validated = schema.validate_rows(json_records(features))
    assert validated.ok
    from_json = schema.to_frame(validated.rows)
    pd.testing.assert_frame_equal(from_table, from_json, check_index_type=False)
    assert from_table["Amount ($)"].dtype == np.float64
    assert from_table["is_active?"].isin([0.0, 1.0]).all()
    assert pd.api.types.is_datetime64_any_dtype(from_table["signup date"])


def test_json_records_turns_nan_and_numpy_into_json() -> None:
    frame = pd.DataFrame({"a": [np.float64(1.5), np.nan], "b": [np.int64(2), np.int64(3)]})
    assert json_records(frame) == [{"a": 1.5, "b": 2}, {"a": None, "b": 3}]


# -- properties of the validator (hypothesis) ---------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["Biscoe", "Dream", "2024-01-01", "yes", "1e400", "NaN", " 42 "])
)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(max_size=5), inner, max_size=3), max_leaves=6
)


def penguin_schema() -> FeatureSchema:
    from agbento.training.pipeline import demo_table

    return FeatureSchema.derive(demo_table().dropna(subset=["species"]), "species", "multiclass")


PENGUINS = penguin_schema()
field_names = st.sampled_from([*PENGUINS.names, "extra", ""])
rows_strategy = st.lists(
    st.dictionaries(field_names, json_values, max_size=9) | json_values, max_size=8
)


@settings(max_examples=300, deadline=None)
@given(rows_strategy)
def test_validator_accounts_for_every_row(rows: list[object]) -> None:
    result = PENGUINS.validate_rows(rows)
    bad = {p.row for p in result.problems}
    # every row is either accepted or named in a problem, never both, never lost
    assert sorted(bad | set(result.indices)) == list(range(len(rows)))
    assert not bad & set(result.indices)
    assert all(p.field is None or p.field in PENGUINS.names for p in result.problems)
    assert all(len(values) == len(PENGUINS.names) for values in result.rows)
    # accepted rows always make a model input frame with the training dtypes
    frame = PENGUINS.to_frame(result.rows)
    assert list(frame.columns) == PENGUINS.names
    numeric = [f.name for f in PENGUINS.features if f.kind == "numeric"]
    assert all(frame[name].dtype == np.float64 for name in numeric)
    assert np.isfinite(frame[numeric].to_numpy(dtype=float)[~frame[numeric].isna()]).all()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.fixed_dictionaries({
    "island": st.sampled_from(["Biscoe", "Dream", "Torgersen", "Atlantis"]),
    "year": st.integers(1900, 2100) | st.floats(-1e300, 1e300),
    "bill_length_mm": st.none() | st.floats(-1e6, 1e6) | st.integers(-10**6, 10**6),
}), min_size=1, max_size=5))
def test_well_typed_rows_are_always_accepted(rows: list[dict[str, object]]) -> None:
    result = PENGUINS.validate_rows(rows)
    assert result.ok and result.indices == list(range(len(rows)))
    unseen = sum(1 for r in rows if r["island"] == "Atlantis")
    assert result.unseen_categories.get("island", 0) == unseen


def test_extra_fields_policy() -> None:
    row = {"island": "Dream", "year": 2008, "colour": "black"}
    assert PENGUINS.validate_rows([row]).ignored_fields == ["colour"]
    rejected = PENGUINS.validate_rows([row], extra_fields="reject")
    assert [(p.row, p.field) for p in rejected.problems] == [(0, "colour")]
