"""agbento.offline.spark on a real local[2] Spark (Java 17): the service's answers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from agbento.models.store import ModelCard, save_model
from agbento.training.pipeline import demo_table
from tests.tiny_models import TinyModels, loose_schema_model

if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("java not found: the Spark tests need Java 17+ (apt-get install "
                "openjdk-17-jre-headless)", allow_module_level=True)
pytest.importorskip("pyspark", reason="pyspark not installed: pip install -e '.[dev,spark]'")

from pyspark.sql import DataFrame, SparkSession  # noqa: E402

from agbento.offline import spark as agspark  # noqa: E402

TABLE_ROWS = 100_000
WORKERS = 2


@pytest.fixture(scope="session")
def spark() -> SparkSession:
    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = (SparkSession.builder.master(f"local[{WORKERS}]").appName("agbento-tests")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.log.level", "ERROR")
               .config("spark.driver.host", "127.0.0.1")
               .config("spark.driver.bindAddress", "127.0.0.1")
               .config("spark.sql.shuffle.partitions", "4")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .getOrCreate())
    yield session
    session.stop()


@pytest.fixture(scope="session")
def big_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """100k penguins (resampled, missing values included) with an id, as Parquet."""
    table = demo_table().sample(TABLE_ROWS, replace=True, random_state=7).reset_index(drop=True)
    table.insert(0, "penguin_id", np.arange(TABLE_ROWS, dtype="int64") * 3 + 11)
    path = tmp_path_factory.mktemp("spark") / "penguins.parquet"
    table.to_parquet(path, index=False, row_group_size=TABLE_ROWS // 4)
    return path


def in_process(card: ModelCard, table: pd.DataFrame
               ) -> tuple[list[Any], list[Any], list[str | None]]:
    """The service's path: schema validation, then the runtime's JSON answer per row.
    Per table row: prediction, class probabilities, and its problems as "field: problem"."""
    from agbento.rows.schema import json_value
    from agbento.runtime.inference import TabularRuntime, encode_rows

    runtime = TabularRuntime.load(card)
    records = [{k: json_value(v) for k, v in row.items()} for row in table.to_dict("records")]
    validated = card.schema.validate_rows(records)
    (answer,) = runtime.score_requests([encode_rows(validated.rows)])
    assert not answer.failed
    predictions: list[Any] = [None] * len(table)
    probabilities: list[Any] = [None] * len(table)
    for index, p, q in zip(validated.indices, answer.prediction_values,
                           answer.probability_values, strict=True):
        predictions[index], probabilities[index] = p, q
    problems: list[list[str]] = [[] for _ in range(len(table))]
    for problem in validated.problems:
        problems[problem.row].append(f"{problem.field}: {problem.problem}")
    return predictions, probabilities, ["; ".join(p) or None for p in problems]


@pytest.mark.parametrize("kind", ["multiclass", "regression"])
def test_spark_equals_in_process_row_for_row(spark: SparkSession, big_table: Path,
                                             tiny_models: TinyModels, kind: str) -> None:
    card: ModelCard = getattr(tiny_models, kind)
    df = spark.read.parquet(str(big_table)).repartition(4)
    scored = agspark.score(df, card.tag, id_columns=["penguin_id"]).toPandas()

    classes = [str(c) for c in card.schema.label.classes or ()]
    proba_columns = [f"proba_{c}" for c in classes]
    assert list(scored.columns) == ["penguin_id", "prediction", *proba_columns,
                                    "agbento_error"]
    assert len(scored) == TABLE_ROWS

    table = pd.read_parquet(big_table)
    expected, expected_proba, problems = in_process(card, table)
    got = scored.set_index("penguin_id").loc[table["penguin_id"]]  # matched by id
    # rows the schema rejects (the regression label's missing rows lack features too)
    rejected = np.array([p is not None for p in problems])
    assert got["agbento_error"].tolist() == problems
    assert got["prediction"][rejected].isna().all()
    ok = ~rejected
    assert ok.sum() > TABLE_ROWS * 0.9
    want = [p for p, good in zip(expected, ok, strict=True) if good]
    if kind == "regression":
        np.testing.assert_allclose(got["prediction"][ok].to_numpy(dtype=float), want,
                                   rtol=1e-9)
    else:
        assert got["prediction"][ok].tolist() == want
        assert set(want) <= set(classes)
        want_proba = [[q[c] for c in classes]
                      for q, good in zip(expected_proba, ok, strict=True) if good]
        np.testing.assert_allclose(got[proba_columns][ok].to_numpy(), want_proba,
                                   rtol=1e-9, atol=1e-12)


def bad_rows_frame(spark: SparkSession, card: ModelCard) -> DataFrame:
    """Good rows and rows the service would reject, as one Spark table (text columns)."""
    good = card.examples[0]
    rows = [{**good, "row_id": i} for i in range(6)]
    rows[1]["bill_length_mm"] = "long"           # not a number
    rows[2]["island"] = None                      # required feature
    rows[3]["flipper_length_mm"] = "Infinity"     # not finite
    rows[4]["bill_depth_mm"] = "x"                # two problems in one row
    rows[4]["year"] = "soon"
    frame = pd.DataFrame(rows).astype({c: "string" for c in card.schema.names})
    return spark.createDataFrame(frame).coalesce(1)  # one batch: a stable "first" row


def test_bad_rows_are_reported_and_the_job_succeeds(spark: SparkSession,
                                                    tiny_models: TinyModels) -> None:
    card = tiny_models.multiclass
    out = agspark.score(bad_rows_frame(spark, card), card.tag, id_columns=["row_id"])
    got = out.toPandas().set_index("row_id").sort_index()
    errors = got["agbento_error"]
    assert errors[0] is None and errors[5] is None
    assert got.loc[[0, 5], "prediction"].notna().all()
    assert errors[1] == "bill_length_mm: expected a number, got the string 'long'"
    assert errors[2].startswith("island: null is not allowed")
    assert errors[3] == "flipper_length_mm: number must be finite"
    assert errors[4].startswith("bill_depth_mm: expected a number") and "; year: " in errors[4]
    assert got.loc[[1, 2, 3, 4], "prediction"].isna().all()
    assert got.loc[[1, 2, 3, 4], "proba_Adelie"].isna().all()



def test_a_row_only_the_model_rejects_is_isolated(spark: SparkSession,
                                                  tiny_models: TinyModels) -> None:
    # the schema wrongly says categorical, so text passes validation and fails in the model
    card = loose_schema_model(tiny_models.multiclass, "bill_length_mm")
    rows = [{**card.examples[0], "row_id": i} for i in range(200)]
    rows[130]["bill_length_mm"] = "not a length"
    rows[5]["year"] = "soon"  # rejected by the schema: the model's failures shift by one
    df = spark.createDataFrame(pd.DataFrame(rows).astype({"year": str})).coalesce(1)
    got = agspark.score(df, card.tag, id_columns=["row_id"]).toPandas().set_index("row_id")
    assert got["agbento_error"][130].startswith("the model could not score this row")
    assert got["agbento_error"][5].startswith("year: expected a number")
    assert got["agbento_error"].drop([5, 130]).isna().all()
    assert got["prediction"].drop([5, 130]).notna().all()
    assert got.loc[[5, 130], ["prediction", "proba_Adelie"]].isna().all().all()


def test_the_predictor_loads_once_per_python_worker(spark: SparkSession,
                                                    tiny_models: TinyModels) -> None:
    card = tiny_models.binary
    fresh = save_model("tiny-spark-once", card.predictor_path, card.labels, card.metadata)
    partitions = 8
    rows = [{**fresh.examples[i % len(fresh.examples)], "row_id": i} for i in range(4000)]
    df = spark.createDataFrame(pd.DataFrame(rows)).repartition(partitions)
    counters = agspark.ScoringCounters.create(spark)
    scored = agspark.score(df, fresh.tag, id_columns=["row_id"], counters=counters)
    assert scored.count() == 4000
    assert scored.filter("agbento_error IS NULL").count() == 4000  # a second job, same workers
    assert counters.batches.value >= 2 * partitions
    assert 1 <= counters.loads.value <= WORKERS



def test_score_refuses_what_it_cannot_do(spark: SparkSession, tiny_models: TinyModels) -> None:
    card = tiny_models.multiclass
    df = spark.createDataFrame(pd.DataFrame(card.examples))
    with pytest.raises(agspark.SparkScoringError, match=r"id column\(s\) \['nope'\]"):
        agspark.score(df, card.tag, id_columns=["nope"])
    with pytest.raises(agspark.SparkScoringError, match=r"lacks feature column\(s\) \['island'\]"):
        agspark.score(df.drop("island"), card.tag)
    with pytest.raises(agspark.SparkScoringError, match="clash"):
        agspark.score(df.withColumn("prediction", df["year"]), card.tag)
    with pytest.raises(agspark.ModelNotFoundError, match="neither a model nor a Bento"):
        agspark.score(df, "no-such-model:latest")
    # nullable features may be absent: their values are missing, as in a request
    regression = tiny_models.regression
    out = agspark.score(spark.createDataFrame(pd.DataFrame(regression.examples)).drop("sex"),
                        regression.tag, probabilities=False)
    assert out.columns[-2:] == ["prediction", "agbento_error"]
    assert out.filter("prediction IS NOT NULL").count() == len(regression.examples)


# -- the command line ---------------------------------------------------------------------


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ")
    return err[0]


def test_cli_errors_are_one_line(tiny_models: TinyModels, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    good = ["in.parquet", str(tmp_path / "out"), "--model", tiny_models.multiclass.tag]
    with pytest.raises(SystemExit) as exited:
        agspark.main([*good, "--partitions", "0"])
    assert exited.value.code == agspark.EXIT_USAGE
    assert "--partitions must be positive" in one_error_line(capsys)
    with pytest.raises(SystemExit):
        agspark.main(["in.parquet", "out"])
    assert "--model" in one_error_line(capsys)

    assert agspark.main([*good[:3], "nope:latest"]) == agspark.EXIT_FATAL
    assert "neither a model nor a Bento" in one_error_line(capsys)

    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert agspark.main(good) == agspark.EXIT_FATAL
    assert "java not found" in one_error_line(capsys)


def test_cli_run_reads_csv_and_writes_parquet(spark: SparkSession, tiny_models: TinyModels,
                                              tmp_path: Path) -> None:
    card = tiny_models.multiclass
    rows = [{**card.examples[i % len(card.examples)], "row_id": i} for i in range(500)]
    rows[7]["year"] = "soon"
    source = tmp_path / "in.csv"
    pd.DataFrame(rows).to_csv(source, index=False)
    output = tmp_path / "out.parquet"
    args = agspark.parse_args([str(source), str(output), "--model", card.tag,
                               "--id-column", "row_id", "--partitions", "3"])
    summary = agspark.run(spark, args)
    assert summary["rows"] == 500 and summary["rejected_rows"] == 1
    assert summary["rows_per_s"] > 0
    written = pd.read_parquet(output)
    assert sorted(written["row_id"].astype(int)) == list(range(500))
    assert written.loc[written["row_id"].astype(int) == 7, "agbento_error"].item() \
        .startswith("year: expected a number")
    with pytest.raises(Exception, match="already exists"):
        agspark.run(spark, args)  # never overwrites without --overwrite
    json.dumps(summary)  # the CLI prints it as one JSON line


def test_cli_end_to_end_in_its_own_process(tiny_models: TinyModels, tmp_path: Path) -> None:
    """As a user runs it: its own JVM, Spark's progress on stderr, the summary line, exit 3
    when rows were rejected."""
    card = tiny_models.regression
    rows = [{**card.examples[i % len(card.examples)], "row_id": i} for i in range(300)]
    rows[3]["island"] = None
    source = tmp_path / "in.parquet"
    pd.DataFrame(rows).to_parquet(source, index=False)
    output = tmp_path / "scores"
    done = subprocess.run(
        [sys.executable, "-m", "agbento.spark", str(source), str(output), "--model", card.tag,
         "--master", "local[2]", "--id-column", "row_id"],
        capture_output=True, text=True, timeout=300,
        # the CLI picks the executors' Python itself (this one) for a local master
        env={k: v for k, v in os.environ.items() if k != "PYSPARK_PYTHON"})
    assert done.returncode == agspark.EXIT_REJECTED, done.stderr[-3000:]
    summary = json.loads(done.stderr.replace("\r", "\n").strip().splitlines()[-1])
    assert summary["rows"] == 300 and summary["rejected_rows"] == 1
    assert summary["master"] == "local[2]" and summary["rows_per_s"] > 0
    assert "[Stage " in done.stderr  # Spark's console progress bar
    written = pd.read_parquet(output)
    assert list(written.columns) == ["row_id", "prediction", "agbento_error"]
    assert written.loc[written["row_id"] == 3, "agbento_error"].item().startswith("island: ")


# -- failing jobs last: a Python worker whose task raised is not reused (a new one pays
# the imports again) --------------------------------------------------------------------


def test_on_error_fail_stops_the_job_with_our_message(spark: SparkSession,
                                                     tiny_models: TinyModels) -> None:
    card = tiny_models.multiclass
    out = agspark.score(bad_rows_frame(spark, card), card.tag, id_columns=["row_id"],
                        on_error="fail")
    with pytest.raises(Exception, match=r"agbento: 4 of 6 row\(s\) in this batch cannot be "
                                        r"scored; first \(row_id=1\): bill_length_mm: "):
        out.collect()


@pytest.mark.parametrize("tamper", ["file", "versions"])
def test_a_tampered_model_is_refused_on_the_executor(spark: SparkSession,
                                                     tiny_models: TinyModels,
                                                     tamper: str) -> None:
    card = tiny_models.regression
    metadata = card.metadata
    if tamper == "versions":
        metadata = {**metadata, "versions": {**metadata["versions"],
                                             "autogluon.tabular": "0.8.2"}}
    copy = save_model(f"tiny-spark-{tamper}", card.predictor_path, card.labels, metadata)
    if tamper == "file":
        victim = next(copy.predictor_path.rglob("*.pkl"))
        victim.write_bytes(victim.read_bytes() + b"\x00")
    df = spark.createDataFrame(pd.DataFrame(copy.examples))
    scored = agspark.score(df, copy.tag)  # the driver unpickles nothing: no refusal here
    message = ("differ from what train.py stored" if tamper == "file"
               else "was saved by other versions")
    with pytest.raises(Exception, match=message) as caught:
        scored.collect()
    assert agspark.failure_line(caught.value).startswith(f"model {copy.tag}")
