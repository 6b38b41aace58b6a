"""Shadow scoring: a candidate scores a sample of live requests off the request path, its
agreement counted and its disagreements logged; the answers never change."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from prometheus_client import REGISTRY

from agbento.models.store import ModelCard
from agbento.runtime.inference import ScoredRequest, TabularRuntime
from agbento.runtime.shadow import ShadowIncompatible, ShadowScorer, _Offered, offered_rows
from agbento.training.pipeline import demo_table, train
from tests.helpers import metric_samples, penguin_rows, total
from tests.servers import start_server
from tests.tiny_models import TinyModels, tiny_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def contrarian(tmp_path_factory: pytest.TempPathFactory) -> ModelCard:
    """A species model trained on shuffled labels: a candidate that often disagrees."""
    table = demo_table()
    table["species"] = table["species"].sample(frac=1, random_state=7).to_numpy()
    path = tmp_path_factory.mktemp("shuffled") / "penguins.csv"
    table.to_csv(path, index=False)
    config = tiny_config("contrarian-species", "species", data=path, demo=False)
    return train(config, lambda _message: None).card


def rows_counted(shadow: str, agreement: str) -> float:
    return REGISTRY.get_sample_value("agbento_shadow_rows_total",
                                     {"shadow": shadow, "agreement": agreement}) or 0.0


def wait_until(condition, timeout: float = 30) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_same_model_in_the_shadow_agrees_on_every_row(tiny_models: TinyModels,
                                                         tmp_path: Path) -> None:
    card = tiny_models.multiclass
    served = TabularRuntime.ready_to_serve(card)
    shadow = ShadowScorer(TabularRuntime.ready_to_serve(card), 1.0, 1_000, 10, str(tmp_path))
    rows = served.schema.validate_rows(penguin_rows("species", 40)).rows
    (scored,) = served.score_groups([rows])
    before = rows_counted(card.tag, "agree")
    shadow.offer(served.schema, rows, scored, card.tag, "r-1")
    wait_until(lambda: rows_counted(card.tag, "agree") >= before + 40)
    assert rows_counted(card.tag, "disagree") == 0


def test_offered_rows_keep_their_order_across_value_lists_frames_and_schemas(
        tiny_models: TinyModels) -> None:
    served = TabularRuntime.ready_to_serve(tiny_models.multiclass)
    schema = served.schema
    rows = schema.validate_rows(penguin_rows("species", 7)).rows
    # the same features in another order: a second served version's schema
    reordered = dataclasses.replace(schema, features=tuple(reversed(schema.features)))
    reordered_rows = [list(reversed(row)) for row in rows[5:7]]
    answer = ScoredRequest("[]", "null")
    offers = [_Offered(rows[0:1], schema, answer, "a", "r0"),
              _Offered(rows[1:3], schema, answer, "a", "r1"),
              _Offered(schema.to_frame(rows[3:5]), schema, answer, "a", "r2"),
              _Offered(reordered_rows[0:1], reordered, answer, "b", "r3"),
              _Offered(reordered_rows[1:2], reordered, answer, "b", "r4")]
    got = schema.to_frame(offered_rows(offers))
    expected = schema.to_frame(rows)
    assert len(got) == 7
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True))


def test_a_full_queue_drops_and_counts(tiny_models: TinyModels, tmp_path: Path) -> None:
    card = tiny_models.multiclass
    shadow = ShadowScorer(TabularRuntime.ready_to_serve(card), 1.0, 10, 10, str(tmp_path))
    rows = shadow.schema.validate_rows(penguin_rows("species", 11)).rows
    answer = ScoredRequest("[]", "null")  # never read: dropped first
    labels = {"shadow": card.tag, "result": "dropped"}
    before = REGISTRY.get_sample_value("agbento_shadow_requests_total", labels) or 0.0
    shadow.offer(shadow.schema, rows, answer, card.tag, "r-2")
    assert REGISTRY.get_sample_value("agbento_shadow_requests_total", labels) == before + 1


def test_a_candidate_without_the_features_is_refused(tiny_models: TinyModels,
                                                     tmp_path: Path) -> None:
    regression = TabularRuntime.ready_to_serve(tiny_models.regression)  # needs species
    shadow = ShadowScorer(regression, 1.0, 10, 10, str(tmp_path))
    with pytest.raises(ShadowIncompatible, match="species"):
        shadow.check_compatible(tiny_models.multiclass.schema)


@pytest.mark.integration
def test_answers_never_change_and_disagreements_are_logged(
        tiny_models: TinyModels, contrarian: ModelCard, tmp_path: Path) -> None:
    card = tiny_models.multiclass
    body = {"data": penguin_rows("species", 30, seed=9)}
    with start_server(ROOT, card.tag, AGBENTO_CACHE_URL="off") as plain:
        expected = httpx.post(f"{plain.url}/predict", json=body).json()
    with start_server(ROOT, card.tag, AGBENTO_CACHE_URL="off",
                      AGBENTO_SHADOW_MODEL=contrarian.tag, AGBENTO_SHADOW_SAMPLE="1",
                      AGBENTO_PREDICTION_LOG_DIR=str(tmp_path)) as server:
        answers = [httpx.post(f"{server.url}/predict", json=body).json() for _ in range(5)]
        wait_until(lambda: total(metric_samples(server.url), "agbento_shadow_rows_total",
                                 shadow=contrarian.tag) >= 150)
        samples = metric_samples(server.url)
    for answer in answers:
        assert answer["predictions"] == expected["predictions"]
        assert answer["probabilities"] == expected["probabilities"]
        assert answer["model"]["tag"] == card.tag
    disagree = total(samples, "agbento_shadow_rows_total", shadow=contrarian.tag,
                     agreement="disagree")
    assert disagree > 0
    logged = list(tmp_path.glob("agbento_shadow/data/*"))
    assert logged and "shadow_prediction" in logged[0].read_text()
