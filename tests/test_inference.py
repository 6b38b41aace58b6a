"""TabularRuntime in-process: one encoding of answers, whatever path a row takes."""

from __future__ import annotations

import json

import pytest

from agbento.runtime.inference import TabularRuntime, encode_rows
from tests.tiny_models import TinyModels, loose_schema_model


def json_items(fragment: str) -> list[str]:
    """The bytes of each value of a flat JSON array of numbers/null (as the runtime wrote it)."""
    assert fragment.startswith("[") and fragment.endswith("]")
    return fragment[1:-1].split(",")


@pytest.fixture(scope="module")
def regression(tiny_models: TinyModels) -> TabularRuntime:
    return TabularRuntime.load(tiny_models.regression)


def test_a_row_scored_alone_by_the_fallback_answers_the_batch_bytes(
    regression: TabularRuntime,
) -> None:
    rows = regression.schema.validate_rows(regression.card.examples).rows
    assert len(rows) >= 2
    (batched,) = regression.score_requests([encode_rows(rows)])
    alone = regression._score_rows_one_by_one(rows[:1])
    value = json_items(batched.predictions)[0]
    assert json_items(alone.predictions) == [value]
    assert alone.probabilities == batched.probabilities == "null"
    # the test can tell: the value needs more digits than pandas' default 10 decimals
    assert round(json.loads(value), 10) != json.loads(value)


def test_a_good_row_next_to_one_the_model_rejects_answers_as_in_any_batch(
    tiny_models: TinyModels,
) -> None:
    card = loose_schema_model(tiny_models.regression, "bill_length_mm")
    runtime = TabularRuntime.load(card)
    good = runtime.schema.validate_rows(card.examples[:1]).rows[0]
    bad = runtime.schema.validate_rows([{**card.examples[0], "bill_length_mm": "long"}]).rows[0]
    (alone,) = runtime.score_requests([encode_rows([good])])
    (mixed,) = runtime.score_requests([encode_rows([good, bad])])  # the row-by-row path
    assert [f["row"] for f in mixed.failed] == [1]
    assert json_items(mixed.predictions) == [json_items(alone.predictions)[0], "null"]


def test_json_floats_are_the_values_the_json_writer_writes() -> None:
    """Arrays rendered as columns say what the JSON answer says, to the last bit."""
    import numpy as np
    import orjson
    import pandas as pd

    from agbento.runtime.inference import JSON_DOUBLE_PRECISION, json_floats

    rng = np.random.default_rng(14)
    values = np.concatenate([
        rng.random(200_000),  # probabilities
        rng.random(20_000) ** 12,  # confident models' small ones
        1 + 9 * rng.random(50_000),  # where numpy's rounding is not the writer's
        10 ** rng.uniform(-30, 30, 100_000) * rng.choice([-1, 1], 100_000),
        rng.random(20_000).astype(np.float32),  # a float32 model
        [0.0, -0.0, 1.0, 1e-15, 9.99e-16, 1e16, 0.5, np.nan, 2.0 ** 53, 1e300, 5e-324],
    ])
    written = pd.Series(values).to_json(orient="values", double_precision=JSON_DOUBLE_PRECISION)
    expected = np.array([np.nan if v is None else v for v in orjson.loads(written)])
    np.testing.assert_array_equal(json_floats(values), expected)


@pytest.mark.parametrize("labels", [
    ["Adelie", "Gen\"too", "x,y", None] * 10,
    [1, 2, 3, 4] * 10,
    [True, False] * 20,
    [1234.5678901234567, 0.1, 1e20, -2.5e-7, float("nan"), 5e-324, 3.0, 1 / 3] * 5,
])
def test_a_request_of_a_merged_batch_writes_what_pandas_writes_for_its_slice(
        labels: list) -> None:
    """Few rows go through pandas' own encoder on Python values, more through a pandas
    slice: the bytes must be the same either way (the answer does not depend on how many
    rows shared the batch)."""
    import numpy as np
    import pandas as pd

    from agbento.runtime.inference import FEW_JSON_ROWS, JSON_DOUBLE_PRECISION, ScoredRequest

    rng = np.random.default_rng(3)
    proba = pd.DataFrame(rng.dirichlet([0.05, 1, 1], len(labels)), columns=["a", "b", "c"])
    proba.iloc[0, 0] = 7.080481054e-06  # pandas writes 0.000007080481054, not 7.08e-6
    batch = ScoredRequest(labels=pd.Series(labels), proba=proba)
    for rows in (slice(0, 1), slice(3, 3 + FEW_JSON_ROWS), slice(1, len(labels))):
        expected_labels = pd.Series(labels).iloc[rows].to_json(
            orient="values", double_precision=JSON_DOUBLE_PRECISION)
        expected_proba = proba.iloc[rows].to_json(orient="records",
                                                  double_precision=JSON_DOUBLE_PRECISION)
        answer = ScoredRequest(source=batch, placement=rows)
        assert answer.predictions == expected_labels
        assert answer.probabilities == expected_proba
        assert len(answer) == rows.stop - rows.start
