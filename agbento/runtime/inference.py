"""Scoring: a loaded predictor that answers merged batches of requests.

The model service's batched endpoint merges *requests*, not rows: each item is one
request's validated rows, encoded as a compact JSON array of value lists, and each answer
is one request's results as ready-made JSON fragments. Strings cross the service boundary
and BentoML's (de)serialisation, so no per-row Python objects are built on either side of
the hop; the model sees one DataFrame per merged batch. In the fused topology no hop needs
strings: an answer keeps the model's arrays and writes JSON only for a JSON answer
(`ScoredRequest`).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
from pandas._libs.json import ujson_dumps  # the encoder of DataFrame.to_json

from agbento.core.errors import ApiError, ErrorCode
from agbento.core.wire import ARROW_STREAM
from agbento.models.store import ModelCard, verify_model
from agbento.monitoring.metrics import BATCH_REQUESTS, BATCH_ROWS, INFERENCE_DURATION, MODEL_READY
from agbento.rows.columns import encode_table
from agbento.rows.schema import FeatureSchema

logger = logging.getLogger(__name__)

# 15 digits after the point: the most pandas' JSON writer allows (for every answer path).
JSON_DOUBLE_PRECISION = 15
# A request of at most this many rows in a merged batch writes its JSON with pandas' encoder
# on Python values (a few us); larger ones through a pandas slice (whose fixed cost is
# tens of us, but its per-row cost lower). Both make the same bytes.
FEW_JSON_ROWS = 16
# While the model is broken, how often the model service tries its warm-up rows again
# (and what a 503 model_error tells clients to wait).
MODEL_RETRY_S = 5
# Rows whose model error message one log line carries.
MAX_LOGGED_ROW_ERRORS = 20


# One request's validated rows: value lists in schema order (the row path), or the typed
# frame `to_frame` / `validate_table` make (the columnar path).
Group = list[list[Any]] | pd.DataFrame
# An encoded group that is an Arrow IPC stream (base64), not a JSON array.
ARROW_PREFIX = "arrow:"


def encode_rows(rows: list[list[Any]]) -> str:
    """One request's validated rows for the batched endpoint (values in schema order)."""
    return json.dumps(rows, separators=(",", ":"), allow_nan=False)


def encode_frame(frame: pd.DataFrame) -> str:
    """One request's model frame for the batched endpoint, as Arrow IPC: its columns cross
    the hop in C, and the model side needs no `to_frame`."""
    import pyarrow as pa

    # typed by dtype, not inferred cell by cell: float64, timestamps, else text
    arrays = [pa.array(frame[name].to_numpy(), from_pandas=True,
                       type=None if frame[name].dtype != object else pa.string())
              for name in frame.columns]
    table = pa.Table.from_arrays(arrays, names=[str(name) for name in frame.columns])
    return ARROW_PREFIX + base64.b64encode(encode_table(table, ARROW_STREAM)).decode("ascii")


def encode_group(group: Group) -> str:
    return encode_frame(group) if isinstance(group, pd.DataFrame) else encode_rows(group)


def encode_for(tag: str, group: Group) -> str:
    """One request for the split model service: the version that must score it (the one its
    rows were validated against), then its rows (`encode_group`)."""
    return f"{tag}\n{encode_group(group)}"


def decode_for(encoded: str) -> tuple[str | None, str]:
    """The inverse of `encode_for`: (tag, encoded rows); tag None for an untagged request."""
    head, newline, rest = encoded.partition("\n")
    if newline and not head.startswith(("[", ARROW_PREFIX)):
        return head, rest
    return None, encoded


def decode_group(encoded: str) -> Group:
    """The inverse of `encode_rows` and `encode_frame`, on the model service's side."""
    if encoded.startswith(ARROW_PREFIX):
        import pyarrow as pa

        raw = base64.b64decode(encoded[len(ARROW_PREFIX):])
        return pa.ipc.open_stream(raw).read_all().to_pandas()
    return json.loads(encoded)


def json_floats(values: Any) -> np.ndarray:
    """Floats as the JSON answer writes them and a client reads them back: pandas' writer
    keeps 15 digits after the point (JSON_DOUBLE_PRECISION), so an answer built from the
    model's arrays (a table, the v2 protocol, metrics, the cache) says what the JSON answer
    of either topology says. Where numpy's rounding is exactly the writer's, |x| < 1 and
    not below 1e-15 (every probability), it is used; the rest (a regression's values, tiny
    numbers the writer puts in exponent form) goes through the writer itself.
    tests/test_inference.py fuzzes this against the writer."""
    array = np.asarray(values, dtype=np.float64)
    magnitude = np.abs(array)
    numpy_rounds = (magnitude < 1) & ((magnitude >= 1e-15) | (array == 0))
    if numpy_rounds.all():  # the common case (probabilities): no masks to apply
        return np.round(array, JSON_DOUBLE_PRECISION)
    rounded = array.copy()
    rounded[numpy_rounds] = np.round(array[numpy_rounds], JSON_DOUBLE_PRECISION)
    rest = ~numpy_rounds & ~np.isnan(array)
    if rest.any():
        written = orjson.loads(pd.Series(array[rest]).to_json(
            orient="values", double_precision=JSON_DOUBLE_PRECISION))
        rounded[rest] = [np.nan if v is None else v for v in written]
    return rounded


def label_array(labels: Any) -> pa.Array:
    """The model's labels as the Arrow column a JSON answer's values would make: integers
    int64, floats as `json_floats`, strings and booleans as they are; NaN/None null."""
    array = pa.array(np.asarray(labels), from_pandas=True)
    if pa.types.is_floating(array.type):
        return pa.array(json_floats(array.to_numpy(zero_copy_only=False)), pa.float64(),
                        from_pandas=True)
    if pa.types.is_integer(array.type):
        return array.cast(pa.int64())
    return array


@dataclass(frozen=True)
class AnswerColumns:
    """One request's answer as columns, a value per row in order: `predictions` (Arrow), and
    for a classifier `matrix`, its probabilities (float64, a column per class key in `keys`:
    `str(class)`, the model's order). A row not answered (`answered` False) is null in
    `predictions` and NaN in `matrix`."""

    predictions: pa.Array
    keys: list[str] | None
    matrix: np.ndarray | None
    answered: np.ndarray

    @cached_property
    def probabilities(self) -> dict[str, pa.Array] | None:
        """Per class key its float64 Arrow column (null where not answered)."""
        if self.keys is None or self.matrix is None:
            return None
        return {key: pa.array(self.matrix[:, j], pa.float64(), from_pandas=True)
                for j, key in enumerate(self.keys)}

    def sliced(self, rows: slice) -> AnswerColumns:
        """Rows `rows` of these; the Arrow column copied out (a zero-copy slice would write
        its batch's offsets into an Arrow or Parquet answer: other bytes, same values)."""
        return AnswerColumns(
            pa.concat_arrays([self.predictions.slice(rows.start, rows.stop - rows.start)]),
            self.keys,
            None if self.matrix is None else self.matrix[rows], self.answered[rows])

    def taken(self, placement: np.ndarray) -> AnswerColumns:
        """Row i of the result is row placement[i] of these, null where it is negative."""
        missing = placement < 0
        rows = np.maximum(placement, 0)
        matrix = None
        if self.matrix is not None:
            matrix = (self.matrix[rows] if len(self.matrix)
                      else np.empty((len(placement), self.matrix.shape[1])))
            matrix[missing] = np.nan
        return AnswerColumns(
            self.predictions.take(pa.array(placement, pa.int64(), mask=missing)), self.keys,
            matrix, ~missing & self.answered[rows] if len(self.answered) else ~missing)


class ScoredRequest:
    """One request's answer: a value (and for a classifier class->p) per row in order.

    It holds either the model's arrays (`labels`, and `proba` with a column per
    `str(class)`), as the model answered in this process, or JSON fragments, as they cross
    the split topology's hop (`predictions` a JSON array, `probabilities` a JSON array of
    class->p objects or "null" for regression). It renders each form from what it holds,
    when asked:
    - `predictions`/`probabilities`: the JSON fragments (pandas' writer, in C) for a JSON
      answer or the hop; from arrays only then;
    - `columns`: Arrow columns (table answers, the protocols, metrics), from arrays without
      JSON, from fragments by parsing them;
    - `prediction_values`/`probability_values`/`per_row`: Python values (the cache).
    `failed` lists rows the model could not score, as {"row": i, "problem": ...}; they are
    null in every form (only the fragments form carries failed rows).
    """

    def __init__(self, predictions: str | None = None, probabilities: str | None = None,
                 failed: list[dict[str, Any]] | None = None, model_error: str | None = None,
                 *, labels: pd.Series | None = None, proba: pd.DataFrame | None = None,
                 source: ScoredRequest | None = None,
                 placement: np.ndarray | slice | None = None) -> None:
        self.failed = failed if failed is not None else []
        # The exception type when the model failed on its known-good warm-up rows too.
        self.model_error = model_error
        self.labels, self.proba = labels, proba
        # Row i is row placement[i] of `source` (null where negative): a placed answer; or
        # a slice of it: a request's rows in its merged batch (whose probabilities are
        # rounded once for all its requests).
        self.source, self.placement = source, placement
        if predictions is not None:  # the fragments form: these are what it holds
            self.__dict__["predictions"] = predictions
            self.__dict__["probabilities"] = probabilities or "null"
        elif labels is None and source is None:
            raise ValueError("a ScoredRequest holds JSON fragments, the model's arrays, "
                             "or a placement of another answer")

    def __repr__(self) -> str:
        form = ("arrays" if self.labels is not None else
                "placed" if self.source is not None else "fragments")
        return f"ScoredRequest({form}, rows={len(self)}, failed={len(self.failed)})"

    def __len__(self) -> int:
        if self.labels is not None:
            return len(self.labels)
        if isinstance(self.placement, np.ndarray):
            return len(self.placement)
        if isinstance(self.placement, slice):
            return self.placement.stop - self.placement.start
        return len(self.columns.predictions)

    def to_dict(self) -> dict[str, Any]:
        return {"predictions": self.predictions, "probabilities": self.probabilities,
                "failed": self.failed, "model_error": self.model_error}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoredRequest:
        return cls(data["predictions"], data["probabilities"], list(data.get("failed", [])),
                   data.get("model_error"))

    @classmethod
    def broken(cls, exception_type: str) -> ScoredRequest:
        return cls("null", "null", [], exception_type)

    def unless_model_broken(self) -> ScoredRequest:
        """This answer, or a 503 model_error when the model itself is broken."""
        if self.model_error is not None:
            raise ApiError(
                ErrorCode.MODEL_ERROR,
                f"the model is failing ({self.model_error}), also on its known-good warm-up "
                "rows: the service is not ready; retry later", retry_after_s=MODEL_RETRY_S)
        return self

    def placed(self, indices: Sequence[int], total: int) -> ScoredRequest:
        """This answer's row k at request row indices[k], null for the other rows of
        `total`; this answer itself when it covers every row."""
        if len(indices) == total:
            return self
        placement = np.full(total, -1, dtype=np.int64)
        placement[np.asarray(indices, dtype=np.int64)] = np.arange(len(indices))
        return ScoredRequest(source=self, placement=placement)

    @cached_property
    def predictions(self) -> str:  # noqa: D102 - the class says
        if self.labels is not None:
            # pandas writes JSON in C: no per-row Python objects for large requests
            return self.labels.to_json(orient="values", double_precision=JSON_DOUBLE_PRECISION)
        if isinstance(self.placement, slice) and self.source is not None:
            return self.source.labels_json(self.placement)
        return json.dumps(self.prediction_values)  # placed: few rows (the skip path)

    @cached_property
    def probabilities(self) -> str:  # noqa: D102 - the class says
        if self.labels is not None:
            return "null" if self.proba is None else self.proba.to_json(
                orient="records", double_precision=JSON_DOUBLE_PRECISION)
        if isinstance(self.placement, slice) and self.source is not None:
            return self.source.proba_json(self.placement)
        if self.columns.probabilities is None:
            return "null"
        return json.dumps(self.probability_values)

    def labels_json(self, rows: slice) -> str:
        """`predictions` of these rows of a batch: what pandas' writer makes of their slice,
        byte for byte (its own encoder on the values when they are few: no slice, no
        pandas call)."""
        assert self.labels is not None
        if rows.stop - rows.start > FEW_JSON_ROWS:
            return self.labels.iloc[rows].to_json(orient="values",
                                                  double_precision=JSON_DOUBLE_PRECISION)
        return ujson_dumps(self._label_values[rows].tolist(),
                           double_precision=JSON_DOUBLE_PRECISION)

    def proba_json(self, rows: slice) -> str:
        """`probabilities` of these rows of a batch, as `labels_json` makes `predictions`."""
        if self.proba is None:
            return "null"
        if rows.stop - rows.start > FEW_JSON_ROWS:
            return self.proba.iloc[rows].to_json(orient="records",
                                                 double_precision=JSON_DOUBLE_PRECISION)
        keys = self._proba_keys
        return ujson_dumps([dict(zip(keys, row, strict=True))
                            for row in self._proba_values[rows].tolist()],
                           double_precision=JSON_DOUBLE_PRECISION)

    @cached_property
    def _label_values(self) -> np.ndarray:
        assert self.labels is not None
        return self.labels.to_numpy()

    @cached_property
    def _proba_values(self) -> np.ndarray:
        assert self.proba is not None
        return self.proba.to_numpy(dtype=np.float64)

    @cached_property
    def _proba_keys(self) -> list[str]:
        assert self.proba is not None
        return [str(key) for key in self.proba.columns]

    @cached_property
    def columns(self) -> AnswerColumns:
        if isinstance(self.placement, slice) and self.source is not None:
            return self.source.columns.sliced(self.placement)  # a request of a merged batch
        if self.labels is not None:
            # the arrays `labels_json`/`proba_json` read too: taken from pandas once
            matrix = None if self.proba is None else json_floats(self._proba_values)
            return AnswerColumns(
                label_array(self._label_values),
                None if self.proba is None else self._proba_keys,
                matrix, np.ones(len(self.labels), dtype=bool))
        if self.source is not None and isinstance(self.placement, np.ndarray):
            return self.source.columns.taken(self.placement)
        predictions = orjson.loads(self.predictions) or []
        answered = np.ones(len(predictions), dtype=bool)
        answered[[f["row"] for f in self.failed]] = False
        rows = orjson.loads(self.probabilities)
        keys, matrix = None, None
        if rows is not None:
            keys = next((list(row) for row in rows if row), [])
            nothing = [np.nan] * len(keys)
            matrix = np.array([[row[key] for key in keys] if row else nothing for row in rows],
                              dtype=np.float64).reshape(len(rows), len(keys))
        return AnswerColumns(pa.array(predictions), keys, matrix, answered)

    @cached_property
    def prediction_values(self) -> list[Any]:
        return self.columns.predictions.to_pylist()

    @cached_property
    def probability_values(self) -> list[Any]:
        """Per row class->p (None for a row not answered, and for regression)."""
        columns = self.columns
        if not columns.keys or columns.matrix is None:
            return [None] * len(columns.answered)
        keys = columns.keys
        return [dict(zip(keys, row, strict=True)) if answered else None
                for answered, row in zip(columns.answered.tolist(), columns.matrix.tolist(),
                                         strict=True)]

    def per_row(self) -> list[dict[str, Any] | None]:
        """{"p": prediction, "q": probabilities} per row; None where the model failed."""
        answered = self.columns.answered.tolist()
        return [{"p": p, "q": q} if ok else None for ok, p, q in zip(
            answered, self.prediction_values, self.probability_values, strict=True)]

    @classmethod
    def from_rows(cls, answers: list[dict[str, Any] | None], failed: list[dict[str, Any]],
                  classification: bool) -> ScoredRequest:
        """The inverse of `per_row` (rows answered from the cache and the model, merged)."""
        return cls(
            json.dumps([a["p"] if a else None for a in answers]),
            json.dumps([a["q"] if a else None for a in answers]) if classification else "null",
            failed,
        )


class TabularRuntime:
    """Holds one TabularPredictor in memory and scores merged batches of requests.

    A batch that fails is split: first by request, then by row inside the failing request,
    so a row only the model rejects never fails another request of the same batch. When
    every row of a request fails, the stored example rows (the warm-up) tell whose fault it
    is: if they fail too the model is broken, every request answers `model_error` at once
    and the runtime is not ready until a re-try of the warm-up succeeds.
    """

    def __init__(self, card: ModelCard, predictor: Any, retry_s: float = MODEL_RETRY_S) -> None:
        self.card = card
        self.predictor = predictor
        self.schema: FeatureSchema = card.schema
        self.classification = card.is_classification
        self.ready = False
        self.retry_s = retry_s
        self.fault: str | None = None  # the exception type while the model is broken
        self._fault_lock = threading.Lock()

    @classmethod
    def load(cls, card: ModelCard, allow_version_mismatch: bool = False) -> TabularRuntime:
        from autogluon.tabular import TabularPredictor  # heavy: import only where we load

        # the predictor is pickles: unpickling a tampered file runs its code
        verify_model(card, allow_version_mismatch)
        predictor = TabularPredictor.load(str(card.predictor_path), verbosity=0)
        # Without persist, AutoGluon reads every model from disk on each predict call.
        predictor.persist(models="all")
        return cls(card, predictor)

    @classmethod
    def ready_to_serve(cls, card: ModelCard,
                       allow_version_mismatch: bool = False) -> TabularRuntime:
        """Verified, loaded, persisted and warmed up: what a server holds, or raises."""
        runtime = cls.load(card, allow_version_mismatch)
        runtime.warm_up()
        return runtime

    @cached_property
    def examples(self) -> list[list[Any]]:
        """The stored example rows, validated: rows this model is known to score."""
        validated = self.schema.validate_rows(self.card.examples)
        if not validated.ok or not validated.rows:
            raise RuntimeError(f"stored example rows do not validate: {validated.problems[:3]}")
        return validated.rows

    def warm_up(self) -> None:
        """Score the stored example rows once; readiness (and its gauge) means this worked."""
        labels, proba = self._predict(self.examples)
        answer = ScoredRequest(labels=labels, proba=proba)
        answer.to_dict(), answer.columns  # noqa: B018 - each form's code, once before traffic
        self.ready = True
        MODEL_READY.set(1)

    def score_requests(self, requests: list[str]) -> list[ScoredRequest]:
        """The split topology's batch: each request's rows encoded by `encode_group`."""
        return self.score_groups([decode_group(r) for r in requests])

    def score_groups(self, groups: list[Group]) -> list[ScoredRequest]:
        """Merged requests, each its validated rows (value lists or a typed frame) -> one
        answer each, in order; the batch unit of both topologies (the model service's
        endpoint, the in-process batcher)."""
        if self.fault is not None:  # broken: answer at once, the re-try thread heals it
            return [ScoredRequest.broken(self.fault) for _ in groups]
        start = time.perf_counter()
        answers = self._score_groups(groups)
        INFERENCE_DURATION.observe(time.perf_counter() - start)
        BATCH_REQUESTS.observe(len(groups))
        BATCH_ROWS.observe(sum(len(g) for g in groups))
        return answers

    def _merged(self, groups: list[Group]) -> Group:
        """One model input for the whole batch: value lists join before `to_frame`, frames
        (and value lists among them, converted) are concatenated."""
        if not any(isinstance(g, pd.DataFrame) for g in groups):
            return [row for g in groups for row in g]
        frames = [g if isinstance(g, pd.DataFrame) else self.schema.to_frame(g) for g in groups]
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)

    def model_input(self, groups: list[Group]) -> pd.DataFrame:
        """Merged groups as one frame of model input (`FeatureSchema.to_frame`'s)."""
        merged = self._merged(groups)
        return merged if isinstance(merged, pd.DataFrame) else self.schema.to_frame(merged)

    def _score_groups(self, groups: list[Group]) -> list[ScoredRequest]:
        if not groups:
            return []
        if self.fault is not None:
            return [ScoredRequest.broken(self.fault) for _ in groups]
        try:
            predictions, probabilities = self._predict(self._merged(groups))
        except Exception:  # noqa: BLE001 - isolate: by request, then by row
            if len(groups) > 1:
                middle = len(groups) // 2
                return self._score_groups(groups[:middle]) + self._score_groups(groups[middle:])
            answer = self._score_rows_one_by_one(groups[0])
            if len(answer.failed) == len(groups[0]) and self.model_is_broken():
                return [ScoredRequest.broken(self.fault or "unknown")]
            return [answer]
        if len(groups) == 1:
            return [ScoredRequest(labels=predictions, proba=probabilities)]
        # Each request is a slice of the batch, whose columns (labels as Arrow, probabilities
        # rounded) are made once, here on the model's thread: numpy's, Arrow's and pandas'
        # fixed cost per call is most of a single row's, and the event loop pays none of it.
        batch = ScoredRequest(labels=predictions, proba=probabilities)
        batch.columns  # noqa: B018 - made now, on this thread
        answers, start = [], 0
        for group in groups:
            end = start + len(group)
            answers.append(ScoredRequest(source=batch, placement=slice(start, end)))
            start = end
        return answers

    def _score_rows_one_by_one(self, rows: Group) -> ScoredRequest:
        """The slow path for a request holding a row the model rejects."""
        # each row's JSON as its arrays write it: a row answers the same bytes alone or in
        # any batch (and that is what the cache may keep)
        predictions: list[str] = []
        probabilities: list[str] = []
        failed = []
        for index in range(len(rows)):
            row = rows.iloc[[index]] if isinstance(rows, pd.DataFrame) else [rows[index]]
            try:
                one, proba = self._predict(row)
            except Exception as exc:  # noqa: BLE001 - the row's own failure, reported
                # the client sees the type; the message may quote data, so it goes to the
                # API's log with the request id (log_rejected_rows), not into the answer
                failed.append({"row": index, "problem": "the model could not score this row "
                               f"({type(exc).__name__})", "message": str(exc)[:300]})
                predictions.append("null")
                probabilities.append("null")
                continue
            answer = ScoredRequest(labels=one, proba=proba)
            predictions.append(answer.predictions[1:-1])  # "[x]" -> "x"
            probabilities.append(answer.probabilities[1:-1] if proba is not None else "null")
        return ScoredRequest(
            f"[{','.join(predictions)}]",
            f"[{','.join(probabilities)}]" if self.classification else "null",
            failed,
        )

    def model_is_broken(self) -> bool:
        """Every row of a request failed: does the model still score its warm-up rows?"""
        try:
            self._predict(self.examples)
        except Exception as exc:  # noqa: BLE001 - the model itself fails: the server's fault
            self._turn_broken(exc)
            return True
        return False

    def _turn_broken(self, exc: Exception) -> None:
        with self._fault_lock:
            if self.fault is not None:
                return
            self.fault = type(exc).__name__
            self.ready = False
        MODEL_READY.set(0)
        # once per fault, not per row or request: every request now answers model_error
        logger.error("the model fails on its warm-up rows: not ready; trying again every "
                     "%s s", self.retry_s, exc_info=exc)
        threading.Thread(target=self._retry_warm_up, name="agbento-model-retry",
                         daemon=True).start()

    def _retry_warm_up(self) -> None:
        while True:
            time.sleep(self.retry_s)
            try:
                self._predict(self.examples)
            except Exception:  # noqa: BLE001, S112 - the same fault, logged when it began
                continue
            with self._fault_lock:
                fault, self.fault = self.fault, None
                self.ready = True
            MODEL_READY.set(1)
            logger.warning("the model scores its warm-up rows again (fault was %s): ready",
                           fault)
            return

    def _predict(self, rows: Group) -> tuple[pd.Series, pd.DataFrame | None]:
        frame = rows if isinstance(rows, pd.DataFrame) else self.schema.to_frame(rows)
        return self.predict_frame(frame)

    def predict_frame(self, frame: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame | None]:
        """Labels, and for a classifier the probabilities (one column per `str(class)`), of
        model input as `FeatureSchema.to_frame` builds it; raises what the model raises."""
        if not self.classification:
            return self.predictor.predict(frame), None
        proba = self.predictor.predict_proba(frame, as_multiclass=True)
        labels = self.predictor.predict_from_proba(proba)
        proba.columns = [str(c) for c in proba.columns]
        return labels, proba


def log_rejected_rows(scored: ScoredRequest | None, indices: Sequence[int],
                      request_id: str) -> None:
    """The model's messages for rows it could not score, with the request id (API side)."""
    if scored is None or not scored.failed:
        return
    rows = [{"row": int(indices[f["row"]]), "problem": f.get("problem"),
             "message": f.get("message")}
            for f in scored.failed[:MAX_LOGGED_ROW_ERRORS]]
    logger.warning("model rejected rows", extra={"fields": {
        "request_id": request_id, "failed_rows": len(scored.failed), "rows": rows}})
