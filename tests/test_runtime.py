"""TabularRuntime with a stand-in predictor (as KServe tests its model servers): merging,
isolation by request then by row, and a broken model, without training anything."""

from __future__ import annotations

import json
import time

from agbento.runtime.inference import encode_frame, encode_rows
from tests.helpers import POISON, runtime


def rows(*lengths: float) -> str:
    return encode_rows([["Biscoe", length] for length in lengths])


def test_merged_requests_are_one_model_call_answered_per_request() -> None:
    model, predictor = runtime()
    before = predictor.calls
    first, second = model.score_requests([rows(40.0), rows(70.0, 20.0)])
    assert predictor.calls == before + 1
    assert json.loads(first.predictions) == ["Adelie"]
    assert json.loads(second.predictions) == ["Gentoo", "Adelie"]
    assert json.loads(second.probabilities)[0] == {"Adelie": 0.3, "Gentoo": 0.7}


def test_a_row_the_model_rejects_fails_only_itself() -> None:
    model, _ = runtime()
    clean, mixed = model.score_requests([rows(40.0), rows(40.0, POISON)])
    assert clean.failed == [] and json.loads(clean.predictions) == ["Adelie"]
    assert [f["row"] for f in mixed.failed] == [1]
    assert "ValueError" in mixed.failed[0]["problem"]
    assert "cannot score" not in mixed.failed[0]["problem"]  # the message goes to the log
    assert json.loads(mixed.predictions) == ["Adelie", None]
    assert model.ready and model.fault is None


def test_a_broken_model_answers_model_error_and_heals() -> None:
    model, predictor = runtime()
    predictor.broken = True
    (answer,) = model.score_requests([rows(40.0)])
    assert answer.model_error == "ValueError" and not model.ready
    predictor.broken = False
    deadline = time.monotonic() + 10
    while not model.ready and time.monotonic() < deadline:
        time.sleep(0.02)
    assert model.ready
    (answer,) = model.score_requests([rows(40.0)])
    assert answer.model_error is None and json.loads(answer.predictions) == ["Adelie"]


def frame(*lengths: float) -> str:
    """A request that crossed the hop as columns (Arrow IPC of its typed frame)."""
    model, _ = runtime()
    return encode_frame(model.schema.to_frame([["Biscoe", length] for length in lengths]))


def test_frames_and_value_lists_merge_and_answer_alike() -> None:
    model, predictor = runtime()
    before = predictor.calls
    answers = model.score_requests([rows(40.0), frame(70.0, 20.0), rows(70.0, 20.0)])
    assert predictor.calls == before + 1
    assert answers[1].predictions == answers[2].predictions
    assert answers[1].probabilities == answers[2].probabilities
    alone = model.score_groups([model.schema.to_frame([["Biscoe", 70.0], ["Biscoe", 20.0]])])
    assert alone[0].predictions == answers[1].predictions


def test_a_row_the_model_rejects_in_a_frame_fails_only_itself() -> None:
    model, _ = runtime()
    clean, mixed, other = model.score_requests(
        [frame(40.0), frame(40.0, POISON, 70.0), rows(20.0)])
    assert clean.failed == [] and json.loads(clean.predictions) == ["Adelie"]
    assert [f["row"] for f in mixed.failed] == [1]
    assert json.loads(mixed.predictions) == ["Adelie", None, "Gentoo"]
    assert other.failed == [] and json.loads(other.predictions) == ["Adelie"]
    assert model.ready and model.fault is None


def test_a_broken_model_answers_model_error_for_frames_too() -> None:
    model, predictor = runtime()
    predictor.broken = True
    (answer,) = model.score_requests([frame(40.0, 50.0)])
    assert answer.model_error == "ValueError" and not model.ready
