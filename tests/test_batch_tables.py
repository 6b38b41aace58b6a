"""The batch client on tables: the same answers as the JSON API, refused rows in the middle,
a resumed in-process run."""

from __future__ import annotations

from pathlib import Path

import bentoml
import httpx
import numpy as np
import pandas as pd
import pytest

from agbento.offline.batch import main
from agbento.rows.schema import json_value
from tests.helpers import interrupt_and_resume, penguin_file
from tests.servers import BentoServer
from tests.tiny_models import TinyModels, loose_schema_model

pytestmark = pytest.mark.integration
PROBAS = ["proba_Adelie", "proba_Chinstrap", "proba_Gentoo"]


def json_api(url: str, frame: pd.DataFrame) -> dict:
    """POST /predict with the rows as JSON objects, as any JSON client sends them."""
    rows = [{k: json_value(v) for k, v in row.items() if json_value(v) is not None}
            for row in frame.to_dict("records")]
    answer = httpx.post(f"{url}/predict", json={"data": rows, "on_error": "skip"}, timeout=120)
    assert answer.status_code == 200, answer.text[:500]
    return answer.json()


def test_table_round_trip_equals_the_json_api_and_local(
    multiclass_server: BentoServer, tiny_models: TinyModels, tmp_path: Path
) -> None:
    frame = penguin_file(tmp_path / "in.parquet", 1000, seed=3)
    out, local = tmp_path / "out.parquet", tmp_path / "local.parquet"
    flags = ["--id-column", "penguin_id", "--quiet", "--chunk-rows", "300"]
    assert main([str(tmp_path / "in.parquet"), str(out), "--url", multiclass_server.url,
                 *flags]) == 0
    assert main([str(tmp_path / "in.parquet"), str(local), "--local",
                 tiny_models.multiclass.tag, *flags]) == 0
    want = json_api(multiclass_server.url, frame.drop(columns="penguin_id"))
    assert want["errors"] == []
    for path in (out, local):
        scored = pd.read_parquet(path)
        assert scored["penguin_id"].tolist() == frame["penguin_id"].tolist()
        assert scored["prediction"].tolist() == want["predictions"]
        expected = np.array([[p[c.removeprefix("proba_")] for c in PROBAS]
                             for p in want["probabilities"]])
        # JSON answers carry 15 significant digits; a table carries the float64 itself
        assert np.allclose(scored[PROBAS].to_numpy(), expected, rtol=1e-13, atol=0)


@pytest.mark.parametrize("where", ["server", "local"])
def test_refused_rows_in_the_middle_of_a_chunk_are_skipped_and_listed(
    multiclass_server: BentoServer, tiny_models: TinyModels, tmp_path: Path, where: str
) -> None:
    clean = penguin_file(tmp_path / "clean.parquet", 30, seed=4)
    frame = clean.astype({"year": object, "bill_length_mm": object})
    frame.loc[15, ["year", "bill_length_mm"]] = ["someday", "long"]  # two fields, one row
    frame.loc[16, "year"] = "later"
    source = tmp_path / "in.jsonl"  # JSON Lines keep numbers and text in one column
    frame.to_json(source, orient="records", lines=True)
    target = (["--url", multiclass_server.url] if where == "server"
              else ["--local", tiny_models.multiclass.tag])
    out = tmp_path / "out.csv"
    code = main([str(source), str(out), *target, "--id-column", "penguin_id",
                 "--chunk-rows", "10", "--quiet"])
    assert code == 3
    scored = pd.read_csv(out)
    assert scored["penguin_id"].tolist() == clean["penguin_id"].tolist()
    assert scored["prediction"].isna().tolist() == [i in (15, 16) for i in range(30)]
    assert main([str(tmp_path / "clean.parquet"), str(tmp_path / "clean.csv"), *target,
                 "--id-column", "penguin_id", "--chunk-rows", "10", "--quiet"]) == 0
    want = pd.read_csv(tmp_path / "clean.csv").drop(index=[15, 16])
    pd.testing.assert_frame_equal(scored.drop(index=[15, 16]), want)
    rejects = pd.read_csv(tmp_path / "out.csv.rejects.csv")
    assert rejects[["row", "id", "field"]].values.tolist() == [
        [15, "p000015", "bill_length_mm"], [15, "p000015", "year"], [16, "p000016", "year"]]
    assert "someday" in rejects["problem"][1] and "long" in rejects["problem"][0]


@pytest.mark.parametrize("where", ["server", "local"])
def test_rows_only_the_model_refuses_are_skipped_and_listed(
    loose_server: BentoServer, tiny_models: TinyModels, tmp_path: Path, where: str
) -> None:
    frame = penguin_file(tmp_path / "in.parquet", 20, seed=5)
    frame["bill_length_mm"] = frame["bill_length_mm"].astype(str)
    refused = [7, 8, 15]  # adjacent ones too: a failing chunk is halved down to rows
    frame.loc[refused, "bill_length_mm"] = "long"  # passes the loose schema, not the model
    frame.to_parquet(tmp_path / "in.parquet", index=False)
    if where == "server":
        target = ["--url", loose_server.url]
    else:
        try:
            tag = str(bentoml.models.get("tiny-loose:latest").tag)
        except bentoml.exceptions.NotFound:
            tag = loose_schema_model(tiny_models.multiclass, "bill_length_mm").tag
        target = ["--local", tag]
    out = tmp_path / "out.parquet"
    assert main([str(tmp_path / "in.parquet"), str(out), *target, "--id-column",
                 "penguin_id", "--quiet"]) == 3
    scored = pd.read_parquet(out)
    assert scored["prediction"].isna().tolist() == [i in refused for i in range(20)]
    assert scored[PROBAS].notna().all(axis=1).tolist() == [i not in refused for i in range(20)]
    rejects = pd.read_csv(tmp_path / "out.parquet.rejects.csv")
    assert rejects["row"].tolist() == refused
    assert rejects["id"].tolist() == [f"p{i:06d}" for i in refused]
    assert rejects["field"].isna().all()
    assert rejects["problem"].str.contains("the model could not score this row").all()


def test_an_interrupted_local_run_resumes_without_rescoring(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    frame = penguin_file(tmp_path / "in.parquet", 40_000, seed=6)
    out = tmp_path / "out.parquet"
    args = [str(tmp_path / "in.parquet"), str(out), "--local", tiny_models.multiclass.tag,
            "--id-column", "penguin_id", "--chunk-rows", "40", "--concurrency", "1"]
    done, facts = interrupt_and_resume(args, out)
    assert facts["model"] == tiny_models.multiclass.tag
    assert facts["chunks_resumed"] == done >= 10
    assert facts["scored_now"] == 40_000 - 40 * done
    scored = pd.read_parquet(out)
    assert scored["penguin_id"].tolist() == frame["penguin_id"].tolist()  # exactly once
    whole = tmp_path / "whole.parquet"
    assert main([str(tmp_path / "in.parquet"), str(whole), "--local",
                 tiny_models.multiclass.tag, "--id-column", "penguin_id", "--quiet"]) == 0
    pd.testing.assert_frame_equal(scored, pd.read_parquet(whole))


def test_chunks_larger_than_the_service_takes_stop_the_run_with_a_hint(
    multiclass_server: BentoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    penguin_file(tmp_path / "in.parquet", 1500)  # the server takes 1,000 rows a request
    code = main([str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet"), "--url",
                 multiclass_server.url, "--chunk-rows", "1500", "--quiet"])
    assert code == 1
    error = capsys.readouterr().err
    assert "413" in error and "--chunk-rows" in error
    assert not (tmp_path / "out.parquet").exists()


def test_a_first_chunk_of_refused_rows_does_not_type_the_output(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    frame = penguin_file(tmp_path / "clean.parquet", 30, seed=7).astype({"year": object})
    frame.loc[:9, "year"] = "someday"  # every row of the first chunk
    frame.to_json(tmp_path / "in.jsonl", orient="records", lines=True)
    out = tmp_path / "out.parquet"
    assert main([str(tmp_path / "in.jsonl"), str(out), "--local", tiny_models.multiclass.tag,
                 "--chunk-rows", "10", "--quiet"]) == 3
    scored = pd.read_parquet(out)
    assert scored["prediction"].isna().tolist() == [i < 10 for i in range(30)]
    assert set(scored["prediction"][10:]) <= {"Adelie", "Chinstrap", "Gentoo"}
    assert scored[PROBAS].dtypes.tolist() == [np.float64] * 3
