"""Interoperable input forms, partial success, drift counts, isolation inside batches."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from tests.helpers import GOOD, adaptive_batches, penguin_rows
from tests.servers import BentoServer

pytestmark = pytest.mark.integration


def predict(server: BentoServer, content: bytes, content_type: str, query: str = "") -> Any:
    response = httpx.post(
        f"{server.url}/predict{query}",
        content=content,
        headers={"content-type": content_type},
        timeout=60,
    )
    assert response.status_code == 200, response.text[:500]
    return response.json()


def test_all_input_forms_give_the_same_predictions(multiclass_server: BentoServer) -> None:
    rows = penguin_rows("species", 30, seed=3)
    frame = pd.DataFrame(rows)
    as_records = predict(multiclass_server, json.dumps({"data": rows}).encode(),
                         "application/json")
    split = {"columns": list(frame.columns),
             "data": json.loads(frame.to_json(orient="values"))}
    forms = {
        "dataframe_split": (json.dumps({"dataframe_split": split}).encode(),
                            "application/json"),
        "dataframe_records": (json.dumps({"dataframe_records": rows}).encode(),
                              "application/json; charset=utf-8"),
        "csv": (frame.to_csv(index=False).encode(), "text/csv"),
        "parquet": (frame.to_parquet(index=False), "application/vnd.apache.parquet"),
    }
    for name, (content, content_type) in forms.items():
        answer = predict(multiclass_server, content, content_type)
        assert answer["predictions"] == as_records["predictions"], name
        for got, want in zip(answer["probabilities"], as_records["probabilities"], strict=True):
            assert got == pytest.approx(want, abs=1e-9), name


def test_skip_answers_bad_rows_in_place(multiclass_server: BentoServer) -> None:
    good = penguin_rows("species", 3, seed=4)
    body = {"data": [good[0], {"island": "Dream", "year": "x"}, good[1], 7, good[2]],
            "on_error": "skip"}
    answer = predict(multiclass_server, json.dumps(body).encode(), "application/json")
    assert [p is None for p in answer["predictions"]] == [False, True, False, True, False]
    assert [p is None for p in answer["probabilities"]] == [False, True, False, True, False]
    assert [(e["row"], e["field"]) for e in answer["errors"]] == [(1, "year"), (3, None)]
    strict = predict(multiclass_server, json.dumps({"data": good}).encode(), "application/json")
    assert [answer["predictions"][i] for i in (0, 2, 4)] == strict["predictions"]


def test_skip_for_files_comes_from_the_query(multiclass_server: BentoServer) -> None:
    csv = b"island,year\nDream,2008\nBiscoe,never\n"
    answer = predict(multiclass_server, csv, "text/csv", "?on_error=skip")
    assert answer["predictions"][0] is not None and answer["predictions"][1] is None
    assert answer["errors"] == [
        {"row": 1, "field": "year", "problem": "expected a number, got the string 'never'"}
    ]


def test_skip_with_every_row_bad_still_answers_each(multiclass_server: BentoServer) -> None:
    body = {"data": [{"year": "x"}, {"year": "y"}], "on_error": "skip"}
    answer = predict(multiclass_server, json.dumps(body).encode(), "application/json")
    assert answer["predictions"] == [None, None]
    assert {e["row"] for e in answer["errors"]} == {0, 1}


def test_unseen_categories_and_out_of_range_are_accepted_and_counted(
    multiclass_server: BentoServer,
) -> None:
    rows = [{**GOOD, "island": "Atlantis"}, {**GOOD, "body_mass_g": 99_999}, GOOD,
            {**GOOD, "island": "Ätlantïs 🐧"}]
    answer = predict(multiclass_server, json.dumps({"data": rows}).encode(), "application/json")
    assert len(answer["predictions"]) == 4
    assert answer["input_drift"] == {
        "unseen_categories": {"island": 2},
        "out_of_range": {"body_mass_g": 1},
    }


def test_openapi_describes_this_models_rows(multiclass_server: BentoServer) -> None:
    spec = httpx.get(f"{multiclass_server.url}/docs.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    data = body["schema"]["properties"]["data"]
    row = data["items"]
    assert set(row["properties"]) == {"island", "bill_length_mm", "bill_depth_mm",
                                      "flipper_length_mm", "body_mass_g", "sex", "year"}
    assert row["required"] == ["island", "year"]
    assert "Biscoe" in row["properties"]["island"]["description"]
    example = data["examples"][0]
    assert predict(multiclass_server, json.dumps({"data": example}).encode(),
                   "application/json")["predictions"]


def test_a_row_only_the_model_rejects_fails_only_its_own_request(
    loose_server: BentoServer,
) -> None:
    """Good and bad requests at once: the bad rows share batches with good ones."""
    # this model's schema takes bill_length_mm as text; numbers as text still score
    good = [
        {**row, "bill_length_mm": str(row["bill_length_mm"]), "body_mass_g": 5000.5 + i}
        for i, row in enumerate(penguin_rows("species", 48, seed=5))
        if row["bill_length_mm"] is not None
    ]
    bad = [{**GOOD, "bill_length_mm": f"not a number {i}"} for i in range(16)]
    requests = [([row], True) for row in good] + [([row], False) for row in bad]
    requests = requests[::2] + requests[1::2]  # interleave
    rows_before, calls_before = adaptive_batches(loose_server.url)

    def send(item: tuple[list[dict[str, Any]], bool]) -> tuple[int, Any, bool]:
        response = httpx.post(f"{loose_server.url}/predict", json={"data": item[0]}, timeout=60)
        return response.status_code, response.json(), item[1]

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(send, requests))
    for status, body, is_good in results:
        if is_good:
            assert status == 200, body
            assert body["predictions"][0] in {"Adelie", "Chinstrap", "Gentoo"}
        else:
            assert status == 422, body
            assert body["error"]["code"] == "model_rejected_rows"
            assert body["error"]["details"][0]["row"] == 0
    rows_after, calls_after = adaptive_batches(loose_server.url)
    assert rows_after - rows_before == len(requests)
    assert calls_after - calls_before < len(requests)  # some batches were merged
    # in one request, skip mode answers the model's rejections in place too
    body = {"data": [good[0], bad[0], good[1]], "on_error": "skip"}
    answer = httpx.post(f"{loose_server.url}/predict", json=body, timeout=60).json()
    assert [p is None for p in answer["predictions"]] == [False, True, False]
    assert answer["errors"][0]["row"] == 1
    assert "could not score" in answer["errors"][0]["problem"]


def test_schemathesis_finds_no_server_error(multiclass_server: BentoServer,
                                            tmp_path: Path) -> None:
    st = Path(sys.executable).with_name("st")
    result = subprocess.run(
        [str(st), "run", f"{multiclass_server.url}/docs.json",
         "--checks", "not_a_server_error", "--max-examples", "60", "--seed", "7",
         # one worker: with two, schemathesis 4.32 itself crashes in ast (threads)
         "--generation-database", "none", "--workers", "1"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-12000:]
    assert "No issues found" in result.stdout
    assert "Traceback" not in multiclass_server.log()
