"""Feature schema: kinds derived from messy tables, row validation, model-input frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from agbento.schema import FeatureSchema, infer_kind, json_records


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
