"""The prediction contract in-process: accept, place, render; answers match their models."""

from __future__ import annotations

import json

import pytest

from agbento.core.errors import ApiError
from agbento.rows.response_models import PredictionResponse, ProbabilityResponse
from agbento.runtime.contract import PredictionContract
from agbento.runtime.inference import ScoredRequest
from tests.helpers import card_without_model

GOOD = {"island": "Biscoe", "bill_length_mm": 45.0}
BAD = {"island": "Biscoe", "bill_length_mm": "long"}


def scored(n: int, failed_rows: tuple[int, ...] = ()) -> ScoredRequest:
    failed = [{"row": i, "problem": "the model could not score this row (ValueError)"}
              for i in failed_rows]
    predictions = [None if i in failed_rows else "Gentoo" for i in range(n)]
    probabilities = [None if i in failed_rows else {"Adelie": 0.1, "Gentoo": 0.9}
                     for i in range(n)]
    return ScoredRequest(json.dumps(predictions), json.dumps(probabilities), failed)


@pytest.fixture
def contract() -> PredictionContract:
    return PredictionContract(card_without_model(), max_rows=10)


def test_every_row_scored_renders_both_shapes_as_their_models_say(
    contract: PredictionContract,
) -> None:
    rows = contract.accept([GOOD, GOOD])
    placed = contract.place(rows, 2, scored(2))
    answer = PredictionResponse.model_validate_json(contract.render(placed, rows, "r1"))
    assert answer.predictions == ["Gentoo", "Gentoo"] and answer.request_id == "r1"
    assert answer.probabilities == [{"Adelie": 0.1, "Gentoo": 0.9}] * 2
    only = ProbabilityResponse.model_validate_json(
        contract.render(placed, rows, "r1", "probabilities"))
    assert only.classes == ["Adelie", "Gentoo"] and len(only.probabilities) == 2


def test_skipped_rows_are_null_in_place_and_listed(contract: PredictionContract) -> None:
    rows = contract.accept([BAD, GOOD, GOOD], on_error="skip")
    assert rows.indices == [1, 2]
    placed = contract.place(rows, 3, scored(2, failed_rows=(1,)), on_error="skip")
    answer = PredictionResponse.model_validate_json(contract.render(placed, rows, "r2"))
    assert answer.predictions == [None, "Gentoo", None]
    assert [(e.row, e.field) for e in answer.errors] == [(0, "bill_length_mm"), (2, None)]


def test_a_row_the_model_rejects_fails_the_request_unless_skipped(
    contract: PredictionContract,
) -> None:
    rows = contract.accept([GOOD, GOOD])
    with pytest.raises(ApiError) as caught:
        contract.place(rows, 2, scored(2, failed_rows=(1,)))
    assert caught.value.code == "model_rejected_rows" and caught.value.details[0]["row"] == 1
    assert "ValueError" in caught.value.details[0]["problem"]


@pytest.mark.parametrize(("data", "code"), [
    ("rows", "bad_request"), ([], "empty_data"), ([GOOD] * 11, "too_many_rows"),
    ([BAD], "invalid_rows"),
])
def test_refusals_name_their_code(contract: PredictionContract, data: object,
                                  code: str) -> None:
    with pytest.raises(ApiError) as caught:
        contract.accept(data)
    assert caught.value.code == code


def test_a_regression_model_has_no_probabilities() -> None:
    contract = PredictionContract(card_without_model("regression"), max_rows=10)
    with pytest.raises(ApiError) as caught:
        contract.require_shape("probabilities")
    assert caught.value.code == "not_a_classifier"
    rows = contract.accept([GOOD])
    placed = contract.place(rows, 1, ScoredRequest("[4200.5]", "null"))
    answer = PredictionResponse.model_validate_json(contract.render(placed, rows, "r3"))
    assert answer.predictions == [4200.5] and answer.probabilities is None
