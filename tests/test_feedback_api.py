"""POST /feedback on a real server: labelled rows measured by the served model beside the
holdout, counted per model; bad labels answered as bad rows are."""

from __future__ import annotations

import random

import httpx
import pytest

from agbento.rows.schema import json_records
from agbento.training.pipeline import demo_table
from tests.helpers import metric_samples, total
from tests.servers import BentoServer
from tests.tiny_models import TinyModels

pytestmark = pytest.mark.integration


def labelled(label: str, n: int = 120, permuted: bool = False) -> list[dict]:
    table = demo_table().dropna().sample(n=n, random_state=4)
    rows = json_records(table)
    if permuted:
        truths = [row[label] for row in rows]
        random.Random(5).shuffle(truths)
        for row, truth in zip(rows, truths, strict=True):
            row[label] = truth
    return rows


def test_true_labels_score_near_the_holdout_and_permuted_ones_far_below(
        multiclass_server: BentoServer, tiny_models: TinyModels) -> None:
    card = tiny_models.multiclass
    url = f"{multiclass_server.url}/feedback"
    before = total(metric_samples(multiclass_server.url), "agbento_feedback_rows_total",
                   model=card.tag)
    true = httpx.post(url, json={"data": labelled("species")}, timeout=60)
    assert true.status_code == 200, true.text[:500]
    body = true.json()
    assert body["rows"] == 120 and body["eval_metric"] == "accuracy"
    assert body["model"]["tag"] == card.tag == true.headers["x-agbento-model"]
    assert body["holdout_metrics"]["accuracy"] == pytest.approx(
        card.metadata["holdout_metrics"]["accuracy"])
    assert body["metrics"]["accuracy"] > 0.85 and body["errors"] == []
    permuted = httpx.post(url, json={"data": labelled("species", permuted=True)}).json()
    assert permuted["metrics"]["accuracy"] < body["metrics"]["accuracy"] - 0.3
    samples = metric_samples(multiclass_server.url)
    assert total(samples, "agbento_feedback_rows_total", model=card.tag) == before + 240
    assert total(samples, "agbento_holdout_score", model=card.tag, metric="accuracy") > 0.8
    # the diagonal of the outcomes is the correct count
    correct = total(samples, "agbento_feedback_correct_total", model=card.tag)
    diagonal = sum(s.value for s in samples["agbento_feedback_outcomes_total"]
                   if s.labels["model"] == card.tag and s.labels["actual"] == s.labels["predicted"])
    assert correct == diagonal > 0


def test_regression_feedback_reports_error_metrics(regression_server: BentoServer,
                                                   tiny_models: TinyModels) -> None:
    answer = httpx.post(f"{regression_server.url}/feedback",
                        json={"data": labelled("body_mass_g")}, timeout=60)
    assert answer.status_code == 200, answer.text[:500]
    metrics = answer.json()["metrics"]
    assert metrics["root_mean_squared_error"] < 0  # AutoGluon's sign: higher is better
    assert -600 < metrics["root_mean_squared_error"]
    samples = metric_samples(regression_server.url)
    tag = tiny_models.regression.tag
    assert total(samples, "agbento_feedback_squared_error_total", model=tag) > 0


def test_a_missing_or_unknown_label_is_a_bad_row(multiclass_server: BentoServer) -> None:
    rows = labelled("species", n=4)
    del rows[1]["species"]
    rows[2]["species"] = "Dodo"
    refused = httpx.post(f"{multiclass_server.url}/feedback", json={"data": rows})
    assert refused.status_code == 422
    details = {(d["row"], d["field"]) for d in refused.json()["error"]["details"]}
    assert details == {(1, "species"), (2, "species")}
    skipped = httpx.post(f"{multiclass_server.url}/feedback",
                         json={"data": rows, "on_error": "skip"})
    assert skipped.status_code == 200
    assert skipped.json()["rows"] == 2
    assert [e["row"] for e in skipped.json()["errors"]] == [1, 2]


def test_feedback_as_a_csv_file_with_many_rows(multiclass_server: BentoServer) -> None:
    """Large bodies are read into columns: the label column is taken out there too."""
    table = demo_table().dropna()
    body = table.sample(n=600, replace=True, random_state=1).to_csv(index=False).encode()
    answer = httpx.post(f"{multiclass_server.url}/feedback", content=body,
                        headers={"content-type": "text/csv"}, timeout=60)
    assert answer.status_code == 200, answer.text[:500]
    assert answer.json()["rows"] == 600 and answer.json()["metrics"]["accuracy"] > 0.85
