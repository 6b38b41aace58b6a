"""The batch client's edges, run in-process: inputs without rows, one model per run."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from agbento.offline.batch import (
    EXIT_FATAL,
    EXIT_OK,
    BatchOptions,
    Parts,
    main,
    parse_args,
    run_fingerprint,
)
from tests.helpers import penguin_file
from tests.servers import BentoServer
from tests.tiny_models import TinyModels

pytestmark = pytest.mark.integration


def write_input(path: Path, frame: pd.DataFrame) -> None:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path, index=False)


def read_output(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)


@pytest.mark.parametrize("where", ["server", "local"])
@pytest.mark.parametrize("kind", ["csv", "parquet", "jsonl"])
@pytest.mark.parametrize("out_kind", ["csv", "parquet"])
def test_an_input_without_rows_gives_an_empty_output_with_the_columns(
    multiclass_server: BentoServer, tiny_models: TinyModels, tmp_path: Path,
    where: str, kind: str, out_kind: str,
) -> None:
    frame = penguin_file(tmp_path / "some.parquet", 5)
    target = (["--url", multiclass_server.url] if where == "server"
              else ["--local", tiny_models.multiclass.tag])
    some, none = tmp_path / f"some.{kind}", tmp_path / f"none.{kind}"
    write_input(some, frame)
    write_input(none, frame.iloc[:0])  # a header-only CSV, a 0-row Parquet, an empty file
    scored = tmp_path / f"scored.{out_kind}"
    empty = tmp_path / f"empty.{out_kind}"
    flags = ["--id-column", "penguin_id", "--quiet", *target]
    assert main([str(some), str(scored), *flags]) == EXIT_OK
    assert main([str(none), str(empty), *flags]) == EXIT_OK
    got, want = read_output(empty), read_output(scored)
    assert len(got) == 0 and len(want) == 5
    assert list(got.columns) == list(want.columns) == [
        "penguin_id", "prediction", "proba_Adelie", "proba_Chinstrap", "proba_Gentoo"]
    if out_kind == "parquet":
        assert pq.read_schema(empty).types == pq.read_schema(scored).types
    assert pd.read_csv(tmp_path / f"empty.{out_kind}.rejects.csv").empty


def test_an_empty_regression_input_without_id_column(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    source = tmp_path / "none.csv"
    source.write_text("")  # not even a header line
    out = tmp_path / "out.parquet"
    assert main([str(source), str(out), "--local", tiny_models.regression.tag, "--quiet"]) == 0
    schema = pq.read_schema(out)
    assert schema.names == ["row", "prediction"] and str(schema.field("prediction").type) \
        == "double"


def test_resume_across_models_is_refused_unless_restart(
    multiclass_server: BentoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    penguin_file(tmp_path / "in.parquet", 40)
    out = tmp_path / "out.parquet"
    argv = [str(tmp_path / "in.parquet"), str(out), "--url", multiclass_server.url,
            "--id-column", "penguin_id", "--chunk-rows", "10", "--quiet"]
    # what an interrupted run against the model served before a rollout leaves behind
    options = BatchOptions.from_args(parse_args(argv))
    Parts(out, run_fingerprint(options), "tiny-species:before", restart=False)
    assert main(argv) == EXIT_FATAL
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "tiny-species:before" in error and "--restart" in error
    assert not out.exists()
    assert main([*argv, "--restart"]) == EXIT_OK
    assert len(pd.read_parquet(out)) == 40


def test_replicas_serving_two_models_stop_the_run(
    multiclass_server: BentoServer, binary_server: BentoServer, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    penguin_file(tmp_path / "in.parquet", 40)
    out = tmp_path / "out.parquet"
    code = main([str(tmp_path / "in.parquet"), str(out), "--url", multiclass_server.url,
                 "--url", binary_server.url, "--chunk-rows", "10", "--concurrency", "1",
                 "--quiet"])
    assert code == EXIT_FATAL
    error = capsys.readouterr().err
    assert "tiny-sex" in error and "--restart" in error
    assert not out.exists()
    manifest = json.loads((tmp_path / "out.parquet.parts" / "manifest.json").read_text())
    assert manifest["model"].startswith("tiny-species:")


def test_options_hold_the_command_line_with_the_same_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AGBENTO_API_KEY", raising=False)
    given = BatchOptions.from_args(parse_args(
        ["in.csv", "out.parquet", "--url", "http://a", "--url", "http://b", "--timeout", "5",
         "--id-column", "id", "--restart"]))
    assert (given.urls, given.local, given.timeout_s, given.id_column, given.restart) == (
        ("http://a", "http://b"), None, 5.0, "id", True)
    local = BatchOptions.from_args(parse_args(["in.csv", "out.csv", "--local", "m:1"]))
    assert local == BatchOptions(Path("in.csv"), Path("out.csv"), local="m:1")
