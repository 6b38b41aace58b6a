"""Explanations as the endpoints answer them: one request's validated rows explained by the
served version's model, then placed at their request rows and rendered (JSON or a table).

Both topologies explain with an `ExplanationRunner` beside the predictor (in fused, each API
worker's; in split, the model service's, reached through its `explain` endpoint). It builds
the `agbento.explain.Explainer` the first time it is asked, once per loaded version (its load
checks itself on the card's background rows: 0.05-1 s, paid only by services that explain),
and merges concurrent requests into one explainer call on a thread of its own (an
`InProcessBatcher`), not the model thread: an explanation of 1,000 rows of a text model
holds its thread for seconds, and on the model thread every prediction of that worker would
wait behind it. The predictor is shared by the two threads (each call only reads it).

A request's answer is `ExplainedRows`: one Arrow table, a row per explained row; across
split's hop one Arrow IPC stream. A failing merged call is split by request, then by row,
as predictions are (`TabularRuntime`): a row the model cannot explain fails only its request.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from agbento.core.errors import ApiError, ErrorCode
from agbento.core.wire import ARROW_STREAM
from agbento.explain import Explainer, Explanations
from agbento.monitoring.metrics import EXPLAIN_DURATION, EXPLAINED_ROWS
from agbento.rows.columns import encode_table
from agbento.runtime.batching import InProcessBatcher
from agbento.runtime.inference import MODEL_RETRY_S, Group, TabularRuntime, label_array

logger = logging.getLogger(__name__)

# A feature's contribution column in table answers (and the batch client's output).
CONTRIB_PREFIX = "contrib_"
# With `top`: the sum of the contributions left out (JSON key and table column).
OTHERS = "others"


def contribution_column(feature: str) -> str:
    return CONTRIB_PREFIX + feature


def explanation_names(features: Sequence[str], classification: bool,
                      top: int | None = None) -> list[str]:
    """A table answer's columns (before `error`), in order: what the server writes and the
    batch client expects."""
    return ["prediction", *(["explained_class"] if classification else []), "base_value",
            "method", *(contribution_column(f) for f in features),
            *([OTHERS] if top is not None else [])]


@dataclass(frozen=True)
class ExplainRequest:
    """One request's validated rows (value lists or a typed frame), and the class explained
    for all of them (None: each row's predicted class)."""

    rows: Group
    explained_class: str | None = None

    def __len__(self) -> int:
        return len(self.rows)


class ExplainedRows:
    """One request's explanations. `table` holds a row per row of the request, in order:
    `prediction` (as /predict answers it), `explained_class` (classifiers), `base_value`,
    `method`, and a float64 `contrib_<feature>` per raw feature of the schema; a row the
    model could not explain is null throughout and listed in `failed` ({"row", "problem",
    "message"}). `model_error`: the exception type when the model itself is broken;
    `unavailable`: why this model cannot be explained at all."""

    def __init__(self, table: pa.Table, failed: list[dict[str, Any]] | None = None,
                 model_error: str | None = None, unavailable: str | None = None) -> None:
        self.table = table
        self.failed = failed if failed is not None else []
        self.model_error = model_error
        self.unavailable = unavailable

    def __len__(self) -> int:
        return self.table.num_rows

    def __repr__(self) -> str:
        return f"ExplainedRows(rows={len(self)}, failed={len(self.failed)})"

    @classmethod
    def broken(cls, exception_type: str) -> ExplainedRows:
        return cls(pa.table({}), model_error=exception_type)

    @classmethod
    def not_possible(cls, reason: str) -> ExplainedRows:
        return cls(pa.table({}), unavailable=reason)

    def unless_model_broken(self) -> ExplainedRows:
        """This answer, or the error the model's state makes it: 503 `model_error` (the
        model fails on its known-good rows), 501 `explanations_unavailable`."""
        if self.model_error is not None:
            raise ApiError(
                ErrorCode.MODEL_ERROR,
                f"the model is failing ({self.model_error}), also on its known-good warm-up "
                "rows: the service is not ready; retry later", retry_after_s=MODEL_RETRY_S)
        if self.unavailable is not None:
            raise ApiError(ErrorCode.EXPLANATIONS_UNAVAILABLE,
                           f"this model cannot be explained: {self.unavailable}")
        return self

    # -- across split's hop ---------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        encoded = base64.b64encode(encode_table(self.table, ARROW_STREAM)).decode("ascii")
        return {"table": encoded, "failed": self.failed, "model_error": self.model_error,
                "unavailable": self.unavailable}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExplainedRows:
        raw = base64.b64decode(data["table"])
        return cls(pa.ipc.open_stream(raw).read_all(), list(data.get("failed") or []),
                   data.get("model_error"), data.get("unavailable"))

    # -- placing ----------------------------------------------------------------------------

    def placed(self, indices: Sequence[int], total: int) -> ExplainedRows:
        """Row k of this answer at row indices[k] of `total`, null for the others; this
        answer itself when it covers every row."""
        if len(indices) == total and len(self) == total:
            return self
        placement = np.full(total, -1, dtype=np.int64)
        placement[np.asarray(indices, dtype=np.int64)] = np.arange(len(indices))
        taken = pa.array(placement, pa.int64(), mask=placement < 0)
        return ExplainedRows(self.table.take(taken), self.failed, self.model_error,
                             self.unavailable)


def explanations_table(explanations: Explanations, classification: bool) -> pa.Table:
    """The engine's arrays as an `ExplainedRows` table (the columns its doc lists)."""
    rows = len(explanations)
    columns: dict[str, Any] = {"prediction": label_array(explanations.prediction)}
    if classification:
        columns["explained_class"] = pa.array(explanations.explained_class, pa.string())
    columns["base_value"] = pa.array(explanations.base_value, pa.float64())
    columns["method"] = pa.array([explanations.method] * rows, pa.string())
    for j, feature in enumerate(explanations.features):
        columns[contribution_column(feature)] = pa.array(explanations.contributions[:, j],
                                                         pa.float64())
    return pa.table(columns)


def empty_table(features: Sequence[str], classification: bool) -> pa.Table:
    """An `ExplainedRows` table without rows (every row of a request failed)."""
    fields = [pa.field("prediction", pa.null())]
    if classification:
        fields.append(pa.field("explained_class", pa.string()))
    fields += [pa.field("base_value", pa.float64()), pa.field("method", pa.string())]
    fields += [pa.field(contribution_column(f), pa.float64()) for f in features]
    return pa.schema(fields).empty_table()


# -- rendering ------------------------------------------------------------------------------


class TopContributions:
    """Each row's `top` largest contributions by magnitude (all with None), and the rest."""

    def __init__(self, table: pa.Table, features: Sequence[str], top: int | None) -> None:
        self.features = list(features)
        self.matrix = np.column_stack(
            [table.column(contribution_column(f)).to_numpy(zero_copy_only=False)
             .astype(np.float64) for f in self.features]
        ) if self.features else np.zeros((table.num_rows, 0))
        self.top = top
        self.order: np.ndarray | None = None
        self.others: np.ndarray | None = None
        if top is not None:
            k = min(top, len(self.features))
            # largest first; ties keep the schema's order
            self.order = np.argsort(-np.abs(self.matrix), axis=1, kind="stable")[:, :k]
            kept = np.take_along_axis(self.matrix, self.order, axis=1)
            self.others = self.matrix.sum(axis=1) - kept.sum(axis=1)

    def per_row(self) -> list[dict[str, float]]:
        """feature -> contribution per row: every feature in schema order, or the top k,
        largest first."""
        values = self.matrix.tolist()
        if self.order is None:
            return [dict(zip(self.features, row, strict=True)) for row in values]
        names = self.features
        return [{names[j]: row[j] for j in picked}
                for row, picked in zip(values, self.order.tolist(), strict=True)]

    def columns(self) -> dict[str, pa.Array]:
        """The `contrib_<feature>` columns (with `top`, null outside each row's top k) and,
        with `top`, `others`."""
        if self.order is None:
            return {contribution_column(f): pa.array(self.matrix[:, j], pa.float64(),
                                                     from_pandas=True)
                    for j, f in enumerate(self.features)}
        kept = np.zeros(self.matrix.shape, dtype=bool)
        np.put_along_axis(kept, self.order, True, axis=1)
        columns = {contribution_column(f): pa.array(self.matrix[:, j], pa.float64(),
                                                    mask=~kept[:, j] | np.isnan(self.matrix[:, j]))
                   for j, f in enumerate(self.features)}
        assert self.others is not None
        columns[OTHERS] = pa.array(self.others, pa.float64(), from_pandas=True)
        return columns


def explanation_records(table: pa.Table, features: Sequence[str],
                        top: int | None = None) -> list[dict[str, Any] | None]:
    """The JSON answer's `explanations`: per row {"prediction", "explained_class"
    (classifiers), "base_value", "contributions": {feature: value}, "method"}, with `top`
    also "others"; None for a row not explained."""
    answered = pc.is_valid(table.column("base_value")).to_numpy(zero_copy_only=False)
    contributions = TopContributions(table, features, top)
    per_row = contributions.per_row()
    others = contributions.others.tolist() if contributions.others is not None else None
    predictions = table.column("prediction").to_pylist()
    classes = (table.column("explained_class").to_pylist()
               if "explained_class" in table.column_names else None)
    bases = table.column("base_value").to_pylist()
    methods = table.column("method").to_pylist()
    records: list[dict[str, Any] | None] = []
    for i, ok in enumerate(answered.tolist()):
        if not ok:
            records.append(None)
            continue
        record: dict[str, Any] = {"prediction": predictions[i]}
        if classes is not None:
            record["explained_class"] = classes[i]
        record["base_value"] = bases[i]
        record["contributions"] = per_row[i]
        if others is not None:
            record[OTHERS] = others[i]
        record["method"] = methods[i]
        records.append(record)
    return records


def explanation_columns(table: pa.Table, features: Sequence[str],
                        top: int | None = None) -> dict[str, pa.Array | pa.ChunkedArray]:
    """The table answer's columns, a row per request row: `prediction`, `explained_class`
    (classifiers), `base_value`, `method`, `contrib_<feature>` (with `top`: null outside
    each row's k largest, and `others`, the sum of the rest)."""
    columns: dict[str, Any] = {name: table.column(name) for name in
                               ("prediction", "explained_class", "base_value", "method")
                               if name in table.column_names}
    columns.update(TopContributions(table, features, top).columns())
    classification = "explained_class" in table.column_names
    return {name: columns[name] for name in explanation_names(features, classification, top)}


# -- beside the predictor ---------------------------------------------------------------------


class ExplanationRunner:
    """Explains merged requests with one loaded version's predictor (see the module doc)."""

    def __init__(self, runtime: TabularRuntime, max_batch_rows: int) -> None:
        self.runtime = runtime
        self.classification = runtime.classification
        self.features = runtime.schema.names
        self._explainer: Explainer | None = None
        self._unavailable: str | None = None
        # looked up per call, so a test may patch the method
        self.batcher: InProcessBatcher[ExplainRequest, ExplainedRows] = InProcessBatcher(
            lambda requests: self.explain_requests(requests), max_batch_rows,
            thread_name="agbento-explain")

    async def explain(self, request: ExplainRequest) -> ExplainedRows:
        """One request's rows -> their explanations, merged with concurrent requests' (the
        answer as it is: the caller decides what a broken model means)."""
        return await self.batcher.score(request)

    async def close(self) -> None:
        await self.batcher.close()

    def explainer(self) -> Explainer | None:
        """The version's explainer, built on first use; None when this model cannot be
        explained (the reason is kept, and logged once)."""
        if self._explainer is None and self._unavailable is None:
            start = time.perf_counter()
            try:
                self._explainer = Explainer.load(self.runtime.predictor, self.runtime.card)
            except ValueError as exc:  # the engine's words: no method applies to this model
                self._unavailable = str(exc)
                logger.error("the model cannot be explained: %s", exc)
                return None
            logger.info("explainer ready", extra={"fields": {
                "method": self._explainer.method, "fallback": self._explainer.fallback_reason,
                "load_s": round(time.perf_counter() - start, 3)}})
        return self._explainer

    def explain_requests(self, requests: list[ExplainRequest]) -> list[ExplainedRows]:
        """The batch unit of both topologies: merged requests -> one answer each, in order."""
        if self.runtime.fault is not None:  # broken: answer at once, as predictions do
            return [ExplainedRows.broken(self.runtime.fault) for _ in requests]
        explainer = self.explainer()
        if explainer is None:
            return [ExplainedRows.not_possible(self._unavailable or "") for _ in requests]
        start = time.perf_counter()
        answers = self._explain(explainer, requests)
        EXPLAIN_DURATION.observe(time.perf_counter() - start)
        EXPLAINED_ROWS.labels(method=explainer.method).inc(
            sum(len(a) - len(a.failed) for a in answers if a.model_error is None))
        return answers

    def _explain(self, explainer: Explainer,
                 requests: list[ExplainRequest]) -> list[ExplainedRows]:
        if not requests:
            return []
        try:
            table = self._table(explainer, requests)
        except Exception:  # noqa: BLE001 - isolate: by request, then by row
            if len(requests) > 1:
                middle = len(requests) // 2
                return (self._explain(explainer, requests[:middle])
                        + self._explain(explainer, requests[middle:]))
            answer = self._explain_rows_one_by_one(explainer, requests[0])
            if len(answer.failed) == len(requests[0]):
                if self.runtime.model_is_broken():
                    return [ExplainedRows.broken(self.runtime.fault or "unknown")]
                # the model scores its known-good rows: if the explainer fails on them too,
                # the fault is ours (raised: an internal error, logged with its traceback)
                explainer.explain(self.runtime.model_input([self.runtime.examples]))
            return [answer]
        answers, start = [], 0
        for request in requests:
            answers.append(ExplainedRows(table.slice(start, len(request))))
            start += len(request)
        return answers

    def _table(self, explainer: Explainer, requests: list[ExplainRequest]) -> pa.Table:
        frame = self.runtime.model_input([r.rows for r in requests])
        classes = None
        if any(r.explained_class is not None for r in requests):
            classes = [c for r in requests for c in [r.explained_class] * len(r)]
        return explanations_table(explainer.explain(frame, classes), self.classification)

    def _explain_rows_one_by_one(self, explainer: Explainer,
                                 request: ExplainRequest) -> ExplainedRows:
        """The slow path for a request holding a row the model cannot explain."""
        frame = self.runtime.model_input([request.rows])
        classes = None if request.explained_class is None else [request.explained_class]
        failed, good = [], []
        for index in range(len(frame)):
            try:
                explainer.explain(frame.iloc[[index]], classes)
            except Exception as exc:  # noqa: BLE001 - the row's own failure, reported
                # the type to the client; the message (it may quote data) to the API's log
                failed.append({"row": index, "problem": "the model could not explain this "
                               f"row ({type(exc).__name__})", "message": str(exc)[:300]})
            else:
                good.append(index)
        if good:
            rows = frame.iloc[good].reset_index(drop=True)
            table = explanations_table(
                explainer.explain(rows, None if classes is None else classes * len(good)),
                self.classification)
        else:
            table = empty_table(self.features, self.classification)
        return ExplainedRows(table, failed).placed(good, len(frame))
