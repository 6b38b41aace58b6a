"""How the batch client scores one chunk: over HTTP as a table, or in-process.

Both scorers take a chunk as a DataFrame and give back a `ChunkResult`: the output
columns (`prediction`, then `proba_<class>` for a classifier) one row per chunk row, the
refused rows as a small table, and the model that answered. No per-row objects on the way,
except for the refused rows themselves. With `Outputs(explain=True)` they explain instead:
the chunk goes to `POST /explain` (in-process: the same `ExplanationRunner` the service
uses) and the columns are /explain's table answer's (`prediction`, `explained_class`,
`base_value`, `method`, `contrib_<feature>`, with `top` also `others`).

The wire format (`RemoteScorer`): a chunk goes to `POST /predict?on_error=skip` as one
Arrow IPC stream or Parquet body (Content-Type `application/vnd.apache.arrow.stream` or
`application/vnd.apache.parquet`) with `Accept: application/vnd.apache.arrow.stream`. The
answer is one table, one row per request row in request order, with the columns above and
`error` (null when the row was scored); headers `x-agbento-model` (the model's tag, or its
JSON reference) and `x-request-id`. A server that answers JSON instead (older versions
ignore `Accept`) is read through its `predictions`/`probabilities`/`errors`/`model`
fields, and one that refuses Arrow bodies (415) is sent Parquet.

BentoML's `AsyncHTTPClient` carries this as is: its endpoint methods (`client.predict(...)`)
only build JSON from the endpoint's declared inputs and parse the declared output model,
but its `request()` passes any keyword (`content=` bytes, `headers=`, `params=`) straight
to its httpx session, with the client's base URL, Bearer token and timeout, and returns
the raw `httpx.Response`. So the bytes go out without a copy or a re-encoding, and the
answer's bytes are read by pyarrow.
"""

from __future__ import annotations

import asyncio
import io
import json
import random
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from agbento.core.wire import ARROW_STREAM, PARQUET, PARQUET_TYPES
from agbento.rows.columns import encode_table
from agbento.rows.schema import is_classification, json_value, nulls_as_none

if TYPE_CHECKING:
    import httpx
    import pyarrow as pa

    from agbento.rows.schema import FeatureSchema

TABLE_TYPES = frozenset({ARROW_STREAM, *PARQUET_TYPES})
MODEL_HEADER = "x-agbento-model"
# Scoring is idempotent, so any transient server-side failure is worth another try;
# 500 included: a server shutting down can fail requests in flight.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
REJECT_COLUMNS = ["row", "id", "field", "problem"]


@dataclass(frozen=True)
class Outputs:
    """What a run writes beside the ids: predictions, or explanations (`top`: each row's k
    largest contributions; `explained_class`: the class explained for every row)."""

    explain: bool = False
    top: int | None = None
    explained_class: str | None = None

    @property
    def path(self) -> str:
        return "/explain" if self.explain else "/predict"

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"on_error": "skip"}
        if self.top is not None:
            params["top"] = self.top
        if self.explained_class is not None:
            params["class"] = self.explained_class
        return params

    def names(self, info: dict[str, Any]) -> list[str]:
        """The answer's columns for the model `info` (/model/info) describes."""
        classes = [str(c) for c in info.get("classes") or []]
        if not self.explain:
            return output_names(classes)
        from agbento.runtime.explaining import explanation_names

        features = [f["name"] for f in info["schema"]["features"]]
        return explanation_names(features, is_classification(info["problem_type"]), self.top)


class BatchError(Exception):
    """A problem the user must fix; the run stops (finished chunks are kept for a resume)."""


@dataclass
class Stats:
    rows: int = 0
    rejected: int = 0
    retries: int = 0
    chunks_resumed: int = 0
    started: float = field(default_factory=time.monotonic)


@dataclass
class ChunkResult:
    """One chunk's answer: `columns` row i answers chunk row i; `rejects` has one line per
    problem (`row` counts from the chunk's first row, `field` may be None)."""

    columns: pd.DataFrame
    rejects: pd.DataFrame
    model_tag: str  # the model that answered: a run never mixes two


def output_names(classes: list[str] | None) -> list[str]:
    """The answer columns: `prediction`, and one `proba_<class>` per class of a classifier."""
    return ["prediction", *(f"proba_{c}" for c in classes or ())]


def no_rejects() -> pd.DataFrame:
    return pd.DataFrame({"row": pd.Series(dtype="int64"), "field": pd.Series(dtype=object),
                         "problem": pd.Series(dtype=object)})


def rejects_of(rows: list[int], fields: list[str | None], problems: list[str]) -> pd.DataFrame:
    if not rows:
        return no_rejects()
    return pd.DataFrame({"row": np.asarray(rows, dtype=np.int64),
                         "field": pd.Series(fields, dtype=object),
                         "problem": pd.Series(problems, dtype=object)})


# -- the wire ------------------------------------------------------------------------------


def chunk_table(chunk: pd.DataFrame) -> pa.Table:
    """The chunk as Arrow columns, the types it has.

    A column Arrow cannot type (JSON Lines mixing numbers and text) goes as text, each
    value as JSON would write it, which the service parses as it parses a CSV cell."""
    import pyarrow as pa

    try:
        return pa.Table.from_pandas(chunk, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    arrays = []
    for name in chunk.columns:
        try:
            arrays.append(pa.array(chunk[name], from_pandas=True))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arrays.append(pa.array([_as_text(v) for v in chunk[name]], pa.string()))
    return pa.Table.from_arrays(arrays, names=[str(n) for n in chunk.columns])


def _as_text(value: Any) -> str | None:
    value = json_value(value)
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


# lz4: cheaper than snappy to write and read on loopback, where bytes cost little
BODY_PARQUET_COMPRESSION = "lz4"


def check_model(answered: str, expected: str | None) -> None:
    """A run scores with one model: an answer from another (a rollout?) stops it."""
    if expected is not None and answered != expected:
        raise BatchError(
            f"the service answered with model {answered} while this run scores with "
            f"{expected} (a rollout?); finished chunks are kept: rerun with --restart to "
            "score every row with one model")


def answer_model(headers: httpx.Headers) -> str:
    """The model tag an answer names: `x-agbento-model` is the tag or its JSON reference."""
    value = headers.get(MODEL_HEADER, "").strip()
    if value.startswith("{"):
        try:
            return str(json.loads(value)["tag"])
        except (ValueError, KeyError, TypeError):
            pass
    if not value:
        raise BatchError(f"the service's table answer has no {MODEL_HEADER} header")
    return value


def read_answer(response: httpx.Response, rows: int, classes: list[str] | None,
                model: str | None = None, names: list[str] | None = None) -> ChunkResult:
    """A 200 answer (a table, or JSON from a service that ignores Accept) as columns
    (`names`, by default a prediction's). An answer from another model than `model` is
    refused before its columns are looked at."""
    kind = (response.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if kind not in TABLE_TYPES:
        answer = response.json()
        check_model(str(answer["model"]["tag"]), model)
        if names is not None and "explanations" in answer:  # /explain answers a table
            raise BatchError("the service answered /explain with JSON, not the table asked")
        return read_json_answer(answer, rows, classes)
    import pyarrow as pa

    answered = answer_model(response.headers)
    check_model(answered, model)

    if kind == ARROW_STREAM:
        table = pa.ipc.open_stream(response.content).read_all()
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(response.content))
    names = names if names is not None else output_names(classes)
    missing = [n for n in [*names, "error"] if n not in table.column_names]
    if missing or table.num_rows != rows:
        raise BatchError(f"the service's table answer has {table.num_rows} rows for {rows} "
                         f"sent{'; it lacks columns ' + ', '.join(missing) if missing else ''}")
    return ChunkResult(table.select(names).to_pandas(),
                       table_rejects(table.column("error")), answered)


def table_rejects(errors: pa.ChunkedArray) -> pd.DataFrame:
    """The `error` column's refused rows, one line per problem: a cell is a JSON list of
    `{"field", "problem"}` objects (field null for a problem of the whole row)."""
    import pyarrow.compute as pc

    refused = np.flatnonzero(pc.is_valid(errors).to_numpy(zero_copy_only=False))
    rows: list[int] = []
    fields: list[str | None] = []
    problems: list[str] = []
    for row, text in zip(refused.tolist(), errors.take(refused).to_pylist(), strict=True):
        for where, problem in _problems(text):
            rows.append(row)
            fields.append(where)
            problems.append(problem)
    return rejects_of(rows, fields, problems)


def _problems(text: str) -> list[tuple[str | None, str]]:
    """An `error` cell: the JSON list of `{"field", "problem"}` the service writes."""
    try:
        items = json.loads(text)
    except ValueError:
        items = None
    if not (isinstance(items, list) and items
            and all(isinstance(i, dict) and "problem" in i for i in items)):
        raise BatchError(f"the answer's error column holds {text[:80]!r}, not a list of "
                         "{field, problem} objects: is the service a compatible agbento?")
    return [(i.get("field"), str(i["problem"])) for i in items]


def read_json_answer(answer: dict[str, Any], rows: int, classes: list[str] | None) -> ChunkResult:
    """The JSON answer (`predictions`, `probabilities`, `errors`, `model`) as columns."""
    predictions = answer["predictions"]
    if len(predictions) != rows:
        raise BatchError(f"the service answered {len(predictions)} predictions for {rows} rows")
    columns = pd.DataFrame({"prediction": pd.Series(predictions, dtype=None)})
    probabilities = answer.get("probabilities")
    for cls in classes or ():
        columns[f"proba_{cls}"] = np.array(
            [p[cls] if p else np.nan for p in probabilities], dtype=np.float64)
    errors = answer["errors"]
    return ChunkResult(columns, rejects_of([e["row"] for e in errors],
                                           [e.get("field") for e in errors],
                                           [e["problem"] for e in errors]),
                       str(answer["model"]["tag"]))


# -- over HTTP -----------------------------------------------------------------------------


def backoff_s(attempt: int) -> float:
    """Exponential, capped at 30 s, with jitter so clients do not retry in step."""
    return min(30.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.0)


class RemoteScorer:
    """Chunks to one or more running services (round-robin), through BentoML's async HTTP
    client; each chunk is one table body and the answer one table (see the module doc).

    Every request is retried (with backoff) on a connection error, including a connection
    that breaks under it, and on 429 and 5xx answers (scoring is idempotent), where a
    Retry-After header wins (`_request`)."""

    def __init__(self, urls: list[str], api_key: str | None, max_retries: int,
                 timeout_s: float, stats: Stats, body_type: str = ARROW_STREAM,
                 outputs: Outputs | None = None) -> None:
        self.urls, self.api_key, self.max_retries = urls, api_key, max_retries
        self.timeout_s, self.stats = timeout_s, stats
        self.body_type = body_type
        self.outputs = outputs or Outputs()
        self.clients: list[Any] = []
        self.classes: list[str] | None = None
        self.names: list[str] | None = None  # the answer's columns
        self.model_tag: str | None = None  # the model this run scores with
        self._next = 0

    async def __aenter__(self) -> RemoteScorer:
        for url in self.urls:
            self.clients.append(await self._connect(url))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for client in self.clients:
            await client.__aexit__(None, None, None)

    async def model_info(self) -> dict[str, Any]:
        response = await self._request(self.clients[0], "GET", "/model/info")
        if response.status_code != 200:
            raise BatchError(f"GET /model/info answered {response.status_code}: "
                             f"{response.text[:300]}")
        info = response.json()
        self.classes = [str(c) for c in info.get("classes") or []]
        self.names = self.outputs.names(info)
        self.model_tag = str(info["tag"])
        return info

    async def score(self, chunk: pd.DataFrame) -> ChunkResult:
        client = self.clients[self._next % len(self.clients)]
        self._next += 1
        table = await asyncio.to_thread(chunk_table, chunk)
        response = await self._post(client, table)
        # decoding holds the GIL little: a thread lets the next chunk's bytes go out
        return await asyncio.to_thread(read_answer, response, len(chunk), self.classes,
                                       self.model_tag, self.names)

    async def _connect(self, url: str) -> Any:
        """A connected client; the server may be starting, so connection errors are retried."""
        import bentoml
        import httpx

        for attempt in range(self.max_retries + 1):
            client = bentoml.AsyncHTTPClient(url, token=self.api_key, timeout=self.timeout_s,
                                             server_ready_timeout=0)
            try:
                return await client.__aenter__()
            except (httpx.TransportError, OSError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            await self._pause(attempt, url, problem, backoff_s(attempt))
        raise AssertionError("unreachable")

    async def _post(self, client: Any, table: pa.Table) -> httpx.Response:
        """POST /predict (or /explain) until it answers 200; a status not worth retrying is
        a BatchError."""
        body_type = self.body_type
        body = await asyncio.to_thread(encode_table, table, body_type,
                                       BODY_PARQUET_COMPRESSION)
        while True:
            response = await self._request(
                client, "POST", self.outputs.path, content=body, params=self.outputs.params(),
                headers={"content-type": body_type, "accept": ARROW_STREAM})
            status = response.status_code
            if status == 200:
                return response
            if status == 415 and body_type != PARQUET:  # a service before Arrow bodies
                self.body_type = body_type = PARQUET
                body = await asyncio.to_thread(encode_table, table, body_type,
                                               BODY_PARQUET_COMPRESSION)
                continue
            hint = "; send fewer rows per request (--chunk-rows)" if status == 413 else ""
            raise BatchError(f"{client.url} answered {status}: {response.text[:300]}{hint}")

    async def _request(self, client: Any, method: str, path: str,
                       **kwargs: Any) -> httpx.Response:
        """The first answer whose status is not worth retrying. Every request the client
        sends is idempotent (scoring too), so a connection that breaks under a request (a
        worker killed with it in flight: reset, or closed without an answer) and a transient
        status (RETRY_STATUSES) are retried, with backoff; a Retry-After header wins."""
        import httpx

        attempt = 0
        while True:
            delay = backoff_s(attempt)
            try:
                response = await client.request(method, path, **kwargs)
            except (httpx.TransportError, OSError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code not in RETRY_STATUSES:
                    return response
                problem = f"HTTP {response.status_code}"
                retry_after = response.headers.get("retry-after", "")
                if retry_after.isdigit():
                    delay = float(retry_after) + random.uniform(0, 0.5)
            await self._pause(attempt, f"{method} {client.url}{path}", problem, delay)
            attempt += 1

    async def _pause(self, attempt: int, where: str, problem: str, delay: float) -> None:
        """Wait before the next attempt, or give up after the last one."""
        if attempt >= self.max_retries:
            raise BatchError(f"{where}: giving up after {attempt + 1} attempts ({problem})")
        self.stats.retries += 1
        await asyncio.sleep(delay)


# -- in-process ----------------------------------------------------------------------------


@dataclass
class _Validated:
    frame: pd.DataFrame  # model input, accepted rows only
    indices: np.ndarray  # the chunk row of each accepted row
    rejects: pd.DataFrame


def validate_chunk(schema: FeatureSchema, chunk: pd.DataFrame) -> _Validated:
    """The chunk's accepted rows as model input, by column (`FeatureSchema.validate_table`)."""
    validated = schema.validate_table(nulls_as_none(chunk))
    problems = validated.problems
    return _Validated(validated.frame, np.asarray(validated.indices, dtype=np.int64),
                      rejects_of([p.row for p in problems], [p.field for p in problems],
                                 [p.problem for p in problems]))


class LocalScorer:
    """The same contract in-process, without a server: the chunk is validated by column and
    the model's arrays become the output columns (explanations: the service's own
    `ExplanationRunner`, called on this thread)."""

    def __init__(self, tag: str, outputs: Outputs | None = None) -> None:
        import bentoml

        from agbento.models.stages import StageError, resolve_tag
        from agbento.models.store import ModelCard
        from agbento.runtime.inference import TabularRuntime

        try:  # NAME@STAGE too: the version promoted there now
            card = ModelCard.of(bentoml.models.get(resolve_tag(tag)))
        except (bentoml.exceptions.NotFound, LookupError) as exc:  # StageError, not found
            raise BatchError(str(exc) if isinstance(exc, StageError) else
                             f"model {tag!r} is not in the local model store") from None
        self.card = card
        self.runtime = TabularRuntime.load(card)
        self.classes = [str(c) for c in card.info().get("classes") or []]
        self.outputs = outputs or Outputs()
        wanted = self.outputs.explained_class
        if wanted is not None and wanted not in self.classes:
            raise BatchError(f"--class {wanted!r} is not one of the model's classes "
                             f"({', '.join(self.classes) or 'a regression has none'})")
        # the predictor is called from one thread at a time; validation and writing overlap
        self._model_lock = threading.Lock()

    async def __aenter__(self) -> LocalScorer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def model_info(self) -> dict[str, Any]:
        return self.card.info()

    async def score(self, chunk: pd.DataFrame) -> ChunkResult:
        return await asyncio.to_thread(self.score_now, chunk)

    def score_now(self, chunk: pd.DataFrame) -> ChunkResult:
        validated = validate_chunk(self.card.schema, chunk)
        if self.outputs.explain:
            return self._explain_now(validated, len(chunk))
        with self._model_lock:
            labels, proba, failed = self._predict(validated.frame)
        accepted, rejects = validated.indices, validated.rejects
        if failed:  # the service's words for a row only the model refuses (inference.py)
            positions = [position for position, _ in failed]
            accepted = np.delete(validated.indices, positions)
            problems = [f"the model could not score this row ({kind})" for _, kind in failed]
            rejects = pd.concat([rejects, rejects_of(
                validated.indices[positions].tolist(), [None] * len(failed), problems)],
                ignore_index=True).sort_values("row", kind="stable")
        return ChunkResult(self._place(labels, proba, accepted, len(chunk)),
                           rejects.reset_index(drop=True), self.card.tag)

    def _explain_now(self, validated: _Validated, rows: int) -> ChunkResult:
        """The accepted rows explained (rows the model cannot explain are rejects, in the
        service's words), each at its chunk row; the columns /explain's table answer has."""
        from agbento.core.errors import ApiError
        from agbento.runtime.explaining import (
            ExplainedRows,
            ExplainRequest,
            empty_table,
            explanation_columns,
        )

        features = self.card.schema.names
        if len(validated.frame):
            request = ExplainRequest(validated.frame, self.outputs.explained_class)
            with self._model_lock:
                (explained,) = self._explanations.explain_requests([request])
            try:
                explained.unless_model_broken()
            except ApiError as exc:
                raise BatchError(exc.message) from None
        else:
            explained = ExplainedRows(empty_table(features, self.card.is_classification))
        rejects = validated.rejects
        if explained.failed:
            rows_failed = validated.indices[[f["row"] for f in explained.failed]]
            rejects = pd.concat([rejects, rejects_of(
                rows_failed.tolist(), [None] * len(rows_failed),
                [f["problem"] for f in explained.failed])],
                ignore_index=True).sort_values("row", kind="stable")
        placed = explained.placed(validated.indices.tolist(), rows).table
        import pyarrow as pa

        columns = pa.table(explanation_columns(placed, features, self.outputs.top))
        # to pandas as the service's table answer is read (`read_answer`)
        return ChunkResult(columns.to_pandas(), rejects.reset_index(drop=True), self.card.tag)

    @cached_property
    def _explanations(self) -> Any:
        """The service's explanation runner (built on the first explained chunk); its own
        thread is not used: chunks are explained on the caller's thread."""
        from agbento.runtime.explaining import ExplanationRunner

        return ExplanationRunner(self.runtime, max_batch_rows=1)

    def _predict(self, frame: pd.DataFrame
                 ) -> tuple[pd.Series, pd.DataFrame | None, list[tuple[int, str]]]:
        """Labels and probabilities of the rows the model scores, and the (position, error
        type) of those it cannot, found by halving a failing chunk (a chunk is large)."""
        if frame.empty:
            return pd.Series([], dtype=object), None, []
        try:
            labels, proba = self.runtime.predict_frame(frame)
            return labels, proba, []
        except Exception as exc:  # noqa: BLE001 - isolate the rows the model rejects
            whole = exc
        failed = self._failing_rows(frame, 0, len(frame))
        if not failed:  # fails as a whole but in no part: nothing to isolate
            raise BatchError(f"the model fails on a chunk ({whole!r})") from None
        if len(failed) == len(frame):
            try:
                self.runtime.warm_up()
            except Exception as exc:  # noqa: BLE001 - the model itself is broken
                raise BatchError(f"the model fails on its own example rows ({exc!r})") from None
            return pd.Series([], dtype=object), None, failed
        kept = np.delete(np.arange(len(frame)), [position for position, _ in failed])
        labels, proba = self.runtime.predict_frame(frame.iloc[kept].reset_index(drop=True))
        return labels, proba, failed

    def _failing_rows(self, frame: pd.DataFrame, start: int, stop: int
                      ) -> list[tuple[int, str]]:
        try:
            self.runtime.predict_frame(frame.iloc[start:stop])
            return []
        except Exception as exc:  # noqa: BLE001 - the row's own failure, reported
            if stop - start == 1:
                return [(start, type(exc).__name__)]
        middle = (start + stop) // 2
        return (self._failing_rows(frame, start, middle)
                + self._failing_rows(frame, middle, stop))

    def _place(self, labels: pd.Series, proba: pd.DataFrame | None, indices: np.ndarray,
               rows: int) -> pd.DataFrame:
        """Each scored row at its chunk row; the refused rows stay empty (null)."""
        columns: dict[str, np.ndarray] = {"prediction": labels.to_numpy()}
        for cls in self.classes:
            columns[f"proba_{cls}"] = (np.empty(0) if proba is None
                                       else proba[cls].to_numpy(dtype=np.float64))
        if len(indices) == rows:  # the common case: the model's arrays as they are
            return pd.DataFrame(columns)
        placed = {}
        for name, values in columns.items():
            empty = np.full(rows, np.nan) if values.dtype.kind == "f" else np.full(
                rows, None, dtype=object)
            empty[indices] = values
            placed[name] = empty
        return pd.DataFrame(placed)
