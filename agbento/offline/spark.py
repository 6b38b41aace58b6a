"""Score Spark DataFrames with a stored model, in-process on every executor.

    from agbento.offline.spark import score
    scored = score(spark.read.parquet("s3a://lake/customers/"), "agbento-demo:latest",
                   id_columns=["customer_id"])

    python -m agbento.spark customers.parquet scores.parquet --model agbento-demo:latest \\
        --id-column customer_id

The model's directory from the BentoML store (or from a Bento) is packed once into an
archive that Spark ships to every executor (`SparkContext.addArchive`). Each Python worker
verifies it (file digests, library versions: `verify_model`, as the service does), loads
and persists the predictor once and keeps it for every later partition and task. Each
Arrow batch is checked with the service's own row rules (`FeatureSchema.validate_rows`)
and scored through `TabularRuntime`, which also isolates rows only the model rejects.

Output: the id columns (all input columns when none are named), then `prediction`,
`proba_<class>` per class for classifiers, and `agbento_error`: null for a scored row,
else "field: problem" for each problem. A bad row never fails the job unless
`on_error="fail"`.
"""

from __future__ import annotations

import argparse
import atexit
import gzip
import hashlib
import json
import logging
import os
import shutil
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from agbento.core.args import ArgumentParser
from agbento.models.store import ModelCard, ModelNotFoundError
from agbento.rows.schema import json_value

if TYPE_CHECKING:
    import bentoml
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import DataType, StructType

    from agbento.runtime.inference import TabularRuntime

logger = logging.getLogger(__name__)

PREDICTION_COLUMN = "prediction"
PROBA_PREFIX = "proba_"
ERROR_COLUMN = "agbento_error"
OnError = Literal["column", "fail"]
ON_ERROR_CHOICES: tuple[str, ...] = ("column", "fail")
# When the model rejects a batch, TabularRuntime bisects it by request, then scores the
# failing request row by row: requests of this many rows keep that slow path short.
ISOLATION_ROWS = 64
EXIT_OK, EXIT_FATAL, EXIT_USAGE, EXIT_REJECTED = 0, 1, 2, 3


class SparkScoringError(Exception):
    """A problem the caller must fix before anything runs (model, columns, arguments)."""


class RowRejectedError(ValueError):
    """on_error="fail": a row could not be scored; the task (and so the job) fails."""


# -- the driver: which model, and its archive ---------------------------------------------


def resolve_model(tag: str) -> bentoml.Model:
    """A model tag (NAME@STAGE: the version promoted there), or a Bento tag whose one model
    is used, from the local stores."""
    import bentoml
    from bentoml.exceptions import NotFound

    if "@" in tag:
        from agbento.models.stages import StageError, resolve_tag

        try:
            return bentoml.models.get(resolve_tag(tag))
        except (StageError, NotFound) as exc:
            raise ModelNotFoundError(str(exc)) from None
    try:
        return bentoml.models.get(tag)
    except NotFound:
        pass
    except ValueError as exc:  # not a valid tag at all
        raise ModelNotFoundError(str(exc)) from None
    try:
        bento = bentoml.bentos.get(tag)
    except NotFound:
        raise ModelNotFoundError(
            f"{tag!r} is neither a model nor a Bento in the local BentoML store "
            f"({bentoml_home()}); `bentoml models list` shows the models there"
        ) from None
    models = [info.tag for info in bento.info.all_models]
    if len(models) != 1:
        raise ModelNotFoundError(
            f"Bento {tag} holds {len(models)} models ({', '.join(map(str, models))}); "
            "pass one model's tag instead"
        )
    try:
        return bentoml.models.get(models[0])
    except NotFound:  # not in the model store: the Bento carries its own copy
        from bentoml._internal.models.model import ModelStore

        return ModelStore(Path(bento.path) / "models").get(models[0])


def bentoml_home() -> str:
    return os.environ.get("BENTOML_HOME", "~/bentoml")


_ARCHIVE_DIR: Path | None = None


def _archive_dir() -> Path:
    """Archives live as long as this process: Spark serves them from here to executors."""
    global _ARCHIVE_DIR
    if _ARCHIVE_DIR is None:
        _ARCHIVE_DIR = Path(tempfile.mkdtemp(prefix="agbento-spark-"))
        atexit.register(shutil.rmtree, _ARCHIVE_DIR, True)
    return _ARCHIVE_DIR


def model_archive(model: bentoml.Model, directory: Path) -> Path:
    """The model's directory (model.yaml, predictor/) as a .tar.gz named by its content.

    Same files, same name: shipping the same model again in one Spark application reuses
    the registered archive, and a changed file makes a new name (Spark does not replace a
    file it has registered under a name).
    """
    partial = directory / f".partial-{os.getpid()}.tar.gz"
    digest = hashlib.sha256()
    with open(partial, "wb") as raw:
        # mtime=0: the gzip header must not make equal content differ
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as packed:
            with tarfile.open(fileobj=packed, mode="w") as tar:
                tar.add(model.path, arcname=".")
    with open(partial, "rb") as written:
        for block in iter(lambda: written.read(1 << 20), b""):
            digest.update(block)
    name = f"agbento-{model.tag.name}-{model.tag.version}-{digest.hexdigest()[:16]}.tar.gz"
    final = directory / name
    os.replace(partial, final)
    return final


@dataclass(frozen=True)
class ShippedModel:
    """What a task needs besides the archive: small, pickled with every task."""

    card: ModelCard  # its path is the driver's; an executor reads the unpacked archive
    archive_name: str
    allow_version_mismatch: bool

    @property
    def tag(self) -> str:
        return self.card.tag

    def card_at(self, path: Path) -> ModelCard:
        return ModelCard(tag=self.card.tag, labels=self.card.labels,
                         metadata=self.card.metadata, path=path)


# -- the executors: one runtime per Python worker, Arrow batches in and out ----------------

# archive name -> runtime. Spark reuses Python workers (spark.python.worker.reuse, on by
# default), so this outlives a task: later partitions of this and later jobs find it here.
_RUNTIMES: dict[str, TabularRuntime] = {}


def worker_runtime(shipped: ShippedModel, loads: Any = None) -> TabularRuntime:
    runtime = _RUNTIMES.get(shipped.archive_name)
    if runtime is None:
        from pyspark import SparkFiles

        from agbento.runtime.inference import TabularRuntime

        card = shipped.card_at(Path(SparkFiles.get(shipped.archive_name)))
        # verifies digests and versions before anything is unpickled
        runtime = TabularRuntime.load(card, shipped.allow_version_mismatch)
        _RUNTIMES[shipped.archive_name] = runtime
        logger.info("agbento.offline.spark: loaded model %s in Python worker %d", shipped.tag,
                    os.getpid())
        if loads is not None:
            loads.add(1)
    return runtime


@dataclass(frozen=True)
class OutputPlan:
    """Which columns go out, in order, and what type the prediction has."""

    passthrough: tuple[str, ...]
    classes: tuple[Any, ...] | None
    prediction_type: str  # "double", "string", "long" or "boolean"
    probabilities: bool

    @property
    def proba_columns(self) -> list[str]:
        if not self.probabilities or self.classes is None:
            return []
        return [f"{PROBA_PREFIX}{c}" for c in self.classes]


def prediction_type(card: ModelCard) -> str:
    """The Spark type of `prediction`, from the model card's label."""
    if not card.is_classification:
        return "double"
    classes = card.schema.label.classes or ()
    if classes and all(isinstance(c, bool) for c in classes):
        return "boolean"
    if classes and all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return "long"
    return "string"


@dataclass
class ScoringCounters:
    """Accumulators the executors add to: predictor loads and Arrow batches scored."""

    loads: Any
    batches: Any

    @classmethod
    def create(cls, spark: SparkSession) -> ScoringCounters:
        return cls(spark.sparkContext.accumulator(0), spark.sparkContext.accumulator(0))


class BatchScorer:
    """The function `mapInArrow` runs on executors (pickled with its plan, not its runtime)."""

    def __init__(self, shipped: ShippedModel, plan: OutputPlan, on_error: OnError,
                 id_columns: Sequence[str], counters: ScoringCounters | None) -> None:
        self.shipped, self.plan, self.on_error = shipped, plan, on_error
        self.id_columns = tuple(id_columns)
        self.counters = counters

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        runtime = worker_runtime(self.shipped, self.counters and self.counters.loads)
        for batch in batches:
            yield self.score_batch(runtime, batch)
            if self.counters is not None:
                self.counters.batches.add(1)

    def score_batch(self, runtime: TabularRuntime, batch: pa.RecordBatch) -> pa.RecordBatch:
        import numpy as np
        import pyarrow as pa

        size = batch.num_rows
        validated = runtime.schema.validate_rows(feature_records(batch, runtime.schema.names))
        errors: dict[int, list[str]] = {}
        for problem in validated.problems:
            errors.setdefault(problem.row, []).append(
                f"{problem.field}: {problem.problem}" if problem.field else problem.problem)
        predictions: list[Any] = [None] * size
        probabilities = np.full((size, len(self.plan.proba_columns)), np.nan)
        if validated.rows:
            scored = predict_isolating(runtime, validated.rows)
            if len(validated.rows) == size:  # the common case: nothing to place
                predictions = scored.predictions
                if self.plan.proba_columns:
                    probabilities = scored.probabilities
            else:
                for k, index in enumerate(validated.indices):
                    predictions[index] = scored.predictions[k]
                if self.plan.proba_columns:
                    probabilities[validated.indices] = scored.probabilities
            for k, problem in scored.failed.items():
                errors.setdefault(validated.indices[k], []).append(problem)
        messages: list[str | None] = [None] * size
        for index, problems in errors.items():
            messages[index] = "; ".join(problems)
        if self.on_error == "fail":
            self._fail_on_first(batch, messages)
        arrays = [batch.column(name) for name in self.plan.passthrough]
        arrays.append(prediction_array(predictions, self.plan.prediction_type))
        # NaN marks "not scored" here: null in the output
        arrays += [pa.array(probabilities[:, j], type=pa.float64(), from_pandas=True)
                   for j in range(len(self.plan.proba_columns))]
        arrays.append(pa.array(messages, type=pa.string()))
        names = [*self.plan.passthrough, PREDICTION_COLUMN, *self.plan.proba_columns,
                 ERROR_COLUMN]
        return pa.RecordBatch.from_arrays(arrays, names=names)

    def _fail_on_first(self, batch: pa.RecordBatch, messages: list[str | None]) -> None:
        bad = [i for i, m in enumerate(messages) if m is not None]
        if not bad:
            return
        first = bad[0]
        where = ", ".join(f"{name}={batch.column(name)[first].as_py()!r}"
                          for name in self.id_columns) or "no id column given"
        raise RowRejectedError(
            f"agbento: {len(bad)} of {batch.num_rows} row(s) in this batch cannot be scored; "
            f"first ({where}): {messages[first]} (on_error='fail' stops the job; "
            "on_error='column' reports rows in the agbento_error column instead)"
        )


def feature_records(batch: pa.RecordBatch, features: Sequence[str]) -> list[dict[str, Any]]:
    """The batch's feature cells as JSON-like rows, exactly as the service's Parquet body
    becomes rows (NaN -> null, timestamps -> ISO text, infinities -> text it rejects)."""
    present = [name for name in features if name in batch.schema.names]
    if not present:
        return [{} for _ in range(batch.num_rows)]
    columns = [column_values(batch.column(name)) for name in present]
    return [dict(zip(present, row, strict=True)) for row in zip(*columns, strict=True)]


def column_values(column: pa.Array) -> list[Any]:
    """One column's cells as `json_value` makes them, without a call per cell where the
    Arrow type says what they are (most of the time per batch goes here otherwise)."""
    import numpy as np
    import pyarrow.types as pat

    kind = column.type
    if (pat.is_string(kind) or pat.is_large_string(kind) or pat.is_integer(kind)
            or pat.is_boolean(kind)):
        return column.to_pylist()
    if pat.is_floating(kind):
        numbers = column.to_numpy(zero_copy_only=False)  # nulls come out as NaN
        values = numbers.tolist()
        for index in np.flatnonzero(~np.isfinite(numbers)).tolist():
            values[index] = json_value(values[index])  # NaN -> None, inf -> "Infinity"
        return values
    return [json_value(v) for v in column.to_pylist()]


@dataclass
class ScoredRows:
    """Per validated row: prediction, class probabilities (rows x classes, NaN where not
    scored) and {row: problem} for rows the model itself rejected."""

    predictions: list[Any]
    probabilities: Any  # numpy array, or None for regression
    failed: dict[int, str]


def predict_isolating(runtime: TabularRuntime, rows: list[list[Any]]) -> ScoredRows:
    """One model call for the batch; only when it fails is the batch handed to
    TabularRuntime's isolation (by request of ISOLATION_ROWS rows, then row by row)."""
    import numpy as np

    from agbento.runtime.inference import encode_rows

    classes = [str(c) for c in runtime.schema.label.classes or ()]
    try:
        # the runtime's own model call: same dtypes, same proba -> label rule as the service
        labels, proba = runtime._predict(rows)
    except Exception:  # noqa: BLE001 - some row only the model rejects: isolate it
        pass
    else:
        # in the model card's class order (the output schema's), whatever the predictor's
        return ScoredRows(labels.tolist(), None if proba is None else
                          proba.reindex(columns=classes).to_numpy(dtype="float64"), {})
    groups = [rows[i:i + ISOLATION_ROWS] for i in range(0, len(rows), ISOLATION_ROWS)]
    answers = runtime.score_requests([encode_rows(g) for g in groups])
    predictions: list[Any] = []
    probabilities: list[list[float]] = []
    failed: dict[int, str] = {}
    for group_index, answer in enumerate(answers):
        problems = {f["row"]: f["problem"] for f in answer.failed}
        for k, row_answer in enumerate(answer.per_row()):
            if row_answer is None:
                failed[group_index * ISOLATION_ROWS + k] = problems.get(
                    k, "the model could not score this row")
                predictions.append(None)
                probabilities.append([float("nan")] * len(classes))
            else:
                q = row_answer["q"] or {}
                predictions.append(row_answer["p"])
                probabilities.append([q.get(c, float("nan")) for c in classes])
    return ScoredRows(predictions, np.array(probabilities, dtype="float64")
                      if runtime.classification else None, failed)


def prediction_array(values: list[Any], kind: str) -> pa.Array:
    import pyarrow as pa

    arrow_type = {"double": pa.float64(), "long": pa.int64(), "boolean": pa.bool_(),
                  "string": pa.string()}[kind]
    try:
        return pa.array(values, type=arrow_type)  # labels usually have the type already
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        convert = {"double": float, "long": int, "boolean": bool, "string": str}[kind]
        return pa.array([None if v is None else convert(v) for v in values], type=arrow_type)


# -- the public function ------------------------------------------------------------------


def output_schema(df: DataFrame, plan: OutputPlan) -> StructType:
    from pyspark.sql.types import (
        BooleanType,
        DoubleType,
        LongType,
        StringType,
        StructField,
        StructType,
    )

    types: dict[str, DataType] = {"double": DoubleType(), "long": LongType(),
                                  "boolean": BooleanType(), "string": StringType()}
    fields = [df.schema[name] for name in plan.passthrough]
    fields.append(StructField(PREDICTION_COLUMN, types[plan.prediction_type], True))
    fields += [StructField(name, DoubleType(), True) for name in plan.proba_columns]
    fields.append(StructField(ERROR_COLUMN, StringType(), True))
    return StructType(fields)


def score(df: DataFrame, model: str, *, id_columns: Sequence[str] = (),
          probabilities: bool = True, on_error: OnError = "column",
          counters: ScoringCounters | None = None) -> DataFrame:
    """`df` with predictions, scored on the executors by the stored model `model`.

    `model` is a model or Bento tag from the local BentoML store. Output columns:
    `id_columns` (every input column when empty), `prediction`, `proba_<class>` for a
    classifier (unless `probabilities=False`) and `agbento_error`. `counters`, when given,
    counts predictor loads and batches on the executors.
    """
    from agbento.core.settings import get_settings

    if on_error not in ON_ERROR_CHOICES:
        raise SparkScoringError(f"on_error={on_error!r}: use one of {ON_ERROR_CHOICES}")
    if isinstance(id_columns, str):
        id_columns = (id_columns,)
    stored = resolve_model(model)
    card = ModelCard.of(stored)
    schema = card.schema
    columns = list(df.columns)
    missing_ids = [c for c in id_columns if c not in columns]
    if missing_ids:
        raise SparkScoringError(f"id column(s) {missing_ids} not in the DataFrame "
                                f"(it has {columns})")
    required = [f.name for f in schema.features if not f.nullable and f.name not in columns]
    if required:
        raise SparkScoringError(
            f"the DataFrame lacks feature column(s) {required} that model {card.tag} "
            "requires (they had no missing values in training)")
    plan = OutputPlan(
        passthrough=tuple(id_columns) if id_columns else tuple(columns),
        classes=tuple(schema.label.classes) if card.is_classification else None,
        prediction_type=prediction_type(card),
        probabilities=probabilities,
    )
    clash = {PREDICTION_COLUMN, ERROR_COLUMN, *plan.proba_columns} & set(plan.passthrough)
    if clash:
        raise SparkScoringError(
            f"input column(s) {sorted(clash)} would clash with the output's; rename them or "
            "pass id_columns")
    spark = df.sparkSession
    if not hasattr(spark, "sparkContext"):
        raise SparkScoringError("Spark Connect sessions are not supported: agbento.offline.spark "
                                "ships the model with SparkContext.addArchive")
    archive = model_archive(stored, _archive_dir())
    spark.sparkContext.addArchive(str(archive))
    shipped = ShippedModel(card, archive.name,
                           get_settings().allow_version_mismatch)
    scorer = BatchScorer(shipped, plan, on_error, id_columns, counters)
    return df.mapInArrow(scorer, output_schema(df, plan))


# -- the command line ---------------------------------------------------------------------


def parse_args(argv: list[str] | None = None, prog: str = "agbento spark") -> argparse.Namespace:
    parser = ArgumentParser(prog=prog,
                     description="Score a table with Spark and a stored model; writes Parquet.")
    parser.add_argument("input", help="Parquet or CSV: a file, a directory or any URI Spark "
                        "reads (s3a://, hdfs://, ...)")
    parser.add_argument("output", help="Parquet directory to write")
    parser.add_argument("--model", required=True,
                        help="model tag, NAME@STAGE or Bento tag in the local store")
    parser.add_argument("--master", help="Spark master (default: spark-submit's, else "
                        "local[*])")
    parser.add_argument("--id-column", action="append", default=[], dest="id_columns",
                        help="column passed through to the output (repeatable); default: all")
    parser.add_argument("--partitions", type=int,
                        help="repartition to N before scoring (default: at least the "
                        "cluster's default parallelism)")
    parser.add_argument("--format", choices=("parquet", "csv"),
                        help="input format (default: from the name; parquet otherwise)")
    parser.add_argument("--on-error", choices=ON_ERROR_CHOICES, default="column",
                        help="bad rows: report in agbento_error (column) or stop (fail)")
    parser.add_argument("--no-probabilities", action="store_true",
                        help="no proba_<class> columns")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    args = parser.parse_args(argv)
    if args.partitions is not None and args.partitions < 1:
        parser.error("--partitions must be positive")
    if args.format is None:
        name = args.input.rstrip("/").lower()
        args.format = "csv" if name.endswith((".csv", ".csv.gz")) else "parquet"
    return args


def java_problem() -> str | None:
    """Why Spark cannot start here, or None: it needs a JVM."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return None
    if shutil.which("java"):
        return None
    return ("java not found: Spark needs Java 17 or newer (e.g. apt-get install "
            "openjdk-17-jre-headless, or set JAVA_HOME)")


@contextmanager
def spark_session(master: str | None) -> Iterator[SparkSession]:
    """A session for the CLI, with Spark's console progress bar and quiet logs. Without a
    master, spark-submit's applies (and plain `python -m` gets Spark's local[*])."""
    from pyspark.sql import SparkSession

    builder = (SparkSession.builder.appName("agbento.offline.spark")
               .config("spark.ui.showConsoleProgress", "true")
               .config("spark.log.level", "ERROR"))
    if master is not None:
        builder = builder.master(master)
    launched_by_spark_submit = "PYSPARK_GATEWAY_PORT" in os.environ  # its JVM is up already
    if (master or "local").startswith("local") and not launched_by_spark_submit:
        # executors are this machine's Python: the one running us, not `python3` on PATH
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # loopback, not the LAN address
        builder = (builder.config("spark.driver.host", "127.0.0.1")
                   .config("spark.driver.bindAddress", "127.0.0.1"))
    spark = builder.getOrCreate()
    try:
        yield spark
    finally:
        spark.stop()


def read_table(spark: SparkSession, path: str, kind: str) -> DataFrame:
    if kind == "csv":
        # values as text: the schema parses numbers, dates and booleans, as for a CSV body
        return spark.read.csv(path, header=True, inferSchema=False)
    return spark.read.parquet(path)


def run(spark: SparkSession, args: argparse.Namespace) -> dict[str, Any]:
    """Read, score, write; the summary. Raises SparkScoringError for what the user fixes."""
    from pyspark.sql import functions as F

    df = read_table(spark, args.input, args.format)
    partitions = args.partitions
    if partitions is None and df.rdd.getNumPartitions() < spark.sparkContext.defaultParallelism:
        partitions = spark.sparkContext.defaultParallelism  # one small file is one partition
    if partitions is not None:
        df = df.repartition(partitions)
    started = time.monotonic()
    scored = score(df, args.model, id_columns=args.id_columns, on_error=args.on_error,
                   probabilities=not args.no_probabilities)
    scored.write.mode("overwrite" if args.overwrite else "errorifexists").parquet(args.output)
    seconds = time.monotonic() - started
    written = spark.read.parquet(args.output)
    counts = written.agg(F.count(F.lit(1)).alias("rows"),
                         F.count(ERROR_COLUMN).alias("rejected")).first()
    rows, rejected = int(counts["rows"]), int(counts["rejected"])
    return {"rows": rows, "rejected_rows": rejected, "seconds": round(seconds, 2),
            "rows_per_s": round(rows / seconds, 1) if seconds else None,
            "output": args.output, "model": args.model, "master": spark.sparkContext.master}


def failure_line(exc: BaseException) -> str:
    """One line for a failed Spark job: our own message when it is in there."""
    text = str(exc)
    for marker in ("RowRejectedError: ", "ModelIntegrityError: ", "SparkScoringError: "):
        if marker in text:
            return text.split(marker, 1)[1].splitlines()[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:500] if lines else type(exc).__name__


def main(argv: list[str] | None = None, prog: str = "agbento spark") -> int:
    args = parse_args(argv, prog)
    problem = java_problem()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_FATAL
    try:
        import pyspark  # noqa: F401
    except ImportError:
        print("error: pyspark is not installed: pip install 'agbento[spark]'", file=sys.stderr)
        return EXIT_FATAL
    try:
        resolve_model(args.model)  # before Spark starts: a wrong tag answers in a second
    except ModelNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    started = time.monotonic()
    try:
        with spark_session(args.master) as spark:
            summary = run(spark, args)
    except SparkScoringError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    except Exception as exc:  # noqa: BLE001 - Spark's (Py4J, analysis, task) errors: one line
        print(f"error: {failure_line(exc)}", file=sys.stderr)
        return EXIT_FATAL
    summary["total_seconds"] = round(time.monotonic() - started, 2)
    print(json.dumps(summary), file=sys.stderr)
    return EXIT_REJECTED if summary["rejected_rows"] else EXIT_OK


if __name__ == "__main__":
    # run as a file (spark-submit .../agbento/offline/spark.py): use the importable module, so that
    # executors unpickle agbento.offline.spark.BatchScorer, not a copy of __main__'s
    from agbento.offline.spark import main as module_main

    sys.exit(module_main())
