"""The batch client: files of any size, in order, every row exactly once, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from autogluon.tabular import TabularPredictor

from tests.faults import BreakingProxy
from tests.helpers import batch, interrupt_and_resume, penguin_file, summary, wait_for_parts
from tests.servers import BentoServer, free_port, start_server
from tests.tiny_models import TinyModels

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration


def expected(card_path: Path, frame: pd.DataFrame, schema) -> pd.Series:  # noqa: ANN001
    predictor = TabularPredictor.load(str(card_path), verbosity=0)
    return predictor.predict(schema.to_frame(frame.drop(columns="penguin_id")))


def test_100k_rows_in_order_equal_to_in_process(
    multiclass_server: BentoServer, tiny_models: TinyModels, tmp_path: Path
) -> None:
    frame = penguin_file(tmp_path / "in.parquet", 100_000)
    out = tmp_path / "out.parquet"
    result = batch(str(tmp_path / "in.parquet"), str(out), "--url", multiclass_server.url,
                   "--id-column", "penguin_id", "--chunk-rows", "1000")
    assert result.returncode == 0, result.stderr[-2000:]
    scored = pd.read_parquet(out)
    assert len(scored) == 100_000
    assert scored["penguin_id"].tolist() == frame["penguin_id"].tolist()
    card = tiny_models.multiclass
    want = expected(card.predictor_path, frame, card.schema)
    assert scored["prediction"].tolist() == want.tolist()
    probas = scored[["proba_Adelie", "proba_Chinstrap", "proba_Gentoo"]].to_numpy()
    assert np.allclose(probas.sum(axis=1), 1.0)
    facts = summary(result.stderr)
    assert facts["rows"] == 100_000 and facts["rejected_rows"] == 0
    assert not (tmp_path / "out.parquet.parts").exists()


def test_rejected_rows_go_to_the_rejects_file(
    multiclass_server: BentoServer, tiny_models: TinyModels, tmp_path: Path
) -> None:
    frame = penguin_file(tmp_path / "in.csv", 50)
    frame["year"] = frame["year"].astype(object)
    frame.loc[[3, 41], "year"] = "someday"
    frame.to_csv(tmp_path / "in.csv", index=False)
    out = tmp_path / "out.csv"
    result = batch(str(tmp_path / "in.csv"), str(out), "--url", multiclass_server.url,
                   "--id-column", "penguin_id", "--chunk-rows", "20")
    assert result.returncode == 3, result.stderr[-2000:]
    scored = pd.read_csv(out)
    assert len(scored) == 50
    assert scored["prediction"].isna().tolist() == [i in (3, 41) for i in range(50)]
    rejects = pd.read_csv(tmp_path / "out.csv.rejects.csv")
    assert rejects[["row", "id", "field"]].values.tolist() == [
        [3, "p000003", "year"], [41, "p000041", "year"]]
    assert "someday" in rejects["problem"][0]
    # local mode: the same answers without a server
    local = tmp_path / "local.csv"
    result = batch(str(tmp_path / "in.csv"), str(local), "--local", tiny_models.multiclass.tag,
                   "--id-column", "penguin_id")
    assert result.returncode == 3, result.stderr[-2000:]
    pd.testing.assert_frame_equal(pd.read_csv(local), scored)


def test_dry_run_checks_the_file_and_sends_nothing(
    multiclass_server: BentoServer, tmp_path: Path
) -> None:
    frame = penguin_file(tmp_path / "in.csv", 30)
    frame["bill_length_mm"] = frame["bill_length_mm"].astype(object)
    frame.loc[7, "bill_length_mm"] = "long"
    frame.to_csv(tmp_path / "in.csv", index=False)
    result = batch(str(tmp_path / "in.csv"), str(tmp_path / "out.csv"), "--url",
                   multiclass_server.url, "--dry-run")
    assert result.returncode == 3
    report = json.loads(result.stdout)
    assert report["rows"] == 30 and report["problems"] == 1
    assert report["first_problems"][0]["row"] == 7
    assert not (tmp_path / "out.csv").exists()


def test_server_killed_and_restarted_mid_run(tiny_models: TinyModels, tmp_path: Path) -> None:
    frame = penguin_file(tmp_path / "in.parquet", 60_000, seed=1)
    out = tmp_path / "out.parquet"
    port = free_port()
    tag = tiny_models.multiclass.tag
    with start_server(ROOT, tag, port=port) as server:
        client = batch(str(tmp_path / "in.parquet"), str(out), "--url", server.url,
                       "--id-column", "penguin_id", "--chunk-rows", "500",
                       "--concurrency", "2", wait=False)
        wait_for_parts(tmp_path / "out.parquet.parts", 5)
    assert client.poll() is None  # the client waits and retries while the server is down
    with start_server(ROOT, tag, port=port):
        stdout, stderr = client.communicate(timeout=600)
    assert client.returncode == 0, stderr[-2000:]
    assert summary(stderr)["retries"] > 0
    scored = pd.read_parquet(out)
    assert scored["penguin_id"].tolist() == frame["penguin_id"].tolist()  # exactly once
    card = tiny_models.multiclass
    assert scored["prediction"].tolist() == expected(
        card.predictor_path, frame, card.schema).tolist()


def test_connections_broken_under_requests_are_retried(
    multiclass_server: BentoServer, tiny_models: TinyModels, tmp_path: Path
) -> None:
    """A worker killed with a request in flight breaks its connection: closed without an
    answer, or reset. Every request the client sends is idempotent, so it sends it again
    (the model's info first, then the chunks) and scores every row exactly once."""
    frame = penguin_file(tmp_path / "in.parquet", 3000, seed=3)
    out = tmp_path / "out.parquet"
    breaks = [(b"GET /model/info", "reset"), (b"POST /predict", "close"),
              (b"POST /predict", "reset")]
    with BreakingProxy(multiclass_server.url, breaks) as proxy:
        result = batch(str(tmp_path / "in.parquet"), str(out), "--url", proxy.url,
                       "--id-column", "penguin_id", "--chunk-rows", "500")
    assert result.returncode == 0, result.stderr[-2000:]
    assert proxy.pending == []  # every break happened
    assert summary(result.stderr)["retries"] >= len(breaks)
    scored = pd.read_parquet(out)
    assert scored["penguin_id"].tolist() == frame["penguin_id"].tolist()  # exactly once
    card = tiny_models.multiclass
    assert scored["prediction"].tolist() == expected(
        card.predictor_path, frame, card.schema).tolist()


def test_interrupted_run_resumes_without_rescoring(
    multiclass_server: BentoServer, tmp_path: Path
) -> None:
    frame = penguin_file(tmp_path / "in.parquet", 60_000, seed=2)
    out = tmp_path / "out.parquet"
    args = [str(tmp_path / "in.parquet"), str(out), "--url", multiclass_server.url,
            "--id-column", "penguin_id", "--chunk-rows", "500", "--concurrency", "1"]
    done, facts = interrupt_and_resume(args, out)
    assert facts["chunks_resumed"] == done >= 10
    assert facts["scored_now"] == 60_000 - 500 * done
    scored = pd.read_parquet(out)
    assert scored["penguin_id"].tolist() == frame["penguin_id"].tolist()  # exactly once
