"""The HTTP contract: how a request's rows become an answer, and how errors look.

`PredictionContract` is everything between the JSON body and the model call: limits,
validation, and the answer shape of PRODUCT.md. It holds no model; the service passes it
the per-row answers of the batched model service.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from agbento.core.errors import ApiError, ErrorCode
from agbento.core.wire import ARROW_STREAM, PARQUET
from agbento.models.store import ModelCard
from agbento.rows.bounds import RowLimit
from agbento.rows.columns import RequestTable, encode_table
from agbento.rows.schema import ExtraFieldsPolicy, OnError, ValidatedRows, ValidatedTable
from agbento.runtime.explaining import (
    ExplainedRows,
    empty_table,
    explanation_columns,
    explanation_records,
)
from agbento.runtime.inference import ScoredRequest


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# What an answer body holds: predictions (and probabilities), or probabilities only.
AnswerShape = Literal["predictions", "probabilities"]


@dataclass(frozen=True)
class PlacedAnswer:
    """Request row i at position i (rows not answered null, and listed in `errors`)."""

    answer: ScoredRequest
    errors: list[dict[str, Any]]
    classification: bool = True

    @property
    def predictions(self) -> str:
        return self.answer.predictions

    @property
    def probabilities(self) -> str:
        return self.answer.probabilities if self.classification else "null"


@dataclass(frozen=True)
class PlacedExplanations:
    """Request row i's explanation at row i of `answer` (null for rows not explained, which
    `errors` lists)."""

    answer: ExplainedRows
    errors: list[dict[str, Any]]


class PredictionContract:
    def __init__(
        self, card: ModelCard, max_rows: int, extra_fields: ExtraFieldsPolicy = "ignore",
        max_explain_rows: int | None = None,
    ) -> None:
        self.card = card
        self.schema = card.schema
        self.max_rows = max_rows
        self.row_limit = RowLimit(max_rows)
        self.explain_limit = RowLimit.for_explanations(max_rows, max_explain_rows or max_rows)
        self.extra_fields = extra_fields
        self.reference = card.reference()
        self.classes = self.schema.label.classes if card.is_classification else None

    def accept(self, data: Any, on_error: OnError = "fail",
               limit: RowLimit | None = None) -> ValidatedRows:
        """Limits (`limit`: the row limit, AGBENTO_MAX_ROWS unless given) and per-row
        validation.

        With on_error="fail" any bad row makes an ApiError naming every bad row and field;
        with "skip" the problems travel on with the good rows and are answered in place.
        """
        if not isinstance(data, list):
            raise ApiError(ErrorCode.BAD_REQUEST, "`data` must be a list of row objects")
        (limit or self.row_limit).check(len(data))
        validated = self.schema.validate_rows(data, self.extra_fields)
        self._refuse_bad_rows(validated, len(data), on_error)
        return validated

    def accept_table(self, table: RequestTable, on_error: OnError = "fail",
                     limit: RowLimit | None = None) -> ValidatedTable:
        """`accept` for a request decoded into columns: the same limits, checks and errors."""
        (limit or self.row_limit).check(table.total)
        validated = table.validate(self.schema, self.extra_fields)
        self._refuse_bad_rows(validated, table.total, on_error)
        return validated

    @staticmethod
    def _refuse_bad_rows(validated: ValidatedRows | ValidatedTable, total: int,
                         on_error: OnError) -> None:
        if not validated.ok and on_error == "fail":
            bad_rows = len({p.row for p in validated.problems})
            raise ApiError(
                ErrorCode.INVALID_ROWS,
                f"{len(validated.problems)} problem(s) in {bad_rows} of {total} row(s)",
                [p.to_dict() for p in validated.problems],
            )

    def require_shape(self, shape: AnswerShape) -> None:
        """Probabilities only exist for a classifier."""
        if shape == "probabilities" and not self.card.is_classification:
            raise ApiError(
                ErrorCode.NOT_A_CLASSIFIER,
                f"model {self.card.tag} is a {self.card.problem_type} model: it has no class "
                "probabilities; use /predict",
            )

    def require_class(self, explained_class: str | None) -> None:
        """A class to explain must be one of a classifier's classes (compared as text)."""
        if explained_class is None:
            return
        if self.classes is None:
            raise ApiError(
                ErrorCode.NOT_A_CLASSIFIER,
                f"model {self.card.tag} is a {self.card.problem_type} model: it has no class "
                "to explain; leave out `class`",
            )
        names = [str(c) for c in self.classes]
        if explained_class not in names:
            raise ApiError(
                ErrorCode.UNKNOWN_CLASS,
                f"class {explained_class!r} is not one of the model's classes "
                f"({', '.join(names)})",
            )

    @staticmethod
    def model_failures(rows: ValidatedRows | ValidatedTable,
                       scored: ScoredRequest | ExplainedRows | None,
                       on_error: OnError = "fail") -> list[dict[str, Any]]:
        """Rows the model itself could not score (or explain), by request row; an ApiError
        in fail mode."""
        failures = [] if scored is None else [
            {"row": int(rows.indices[f["row"]]), "field": None, "problem": f["problem"]}
            for f in scored.failed
        ]
        if failures and on_error == "fail":
            verb = "explain" if isinstance(scored, ExplainedRows) else "score"
            raise ApiError(
                ErrorCode.MODEL_REJECTED_ROWS,
                f"the model could not {verb} {len(failures)} row(s)",
                failures,
            )
        return failures

    def place(self, rows: ValidatedRows | ValidatedTable, total: int, scored: ScoredRequest | None,
              on_error: OnError = "fail") -> PlacedAnswer:
        """Each scored row at its request index, null for the rows not answered.

        The common case (every row scored) keeps the model's answer as it is (its arrays, or
        the JSON fragments that crossed the hop). A row the model could not score fails the
        request, unless on_error="skip" (then it is listed in `errors` with the rows the
        schema refused).
        """
        failures = self.model_failures(rows, scored, on_error)
        answer = (scored if scored is not None else ScoredRequest("[]", "[]")).placed(
            rows.indices, total)
        return PlacedAnswer(answer, self._errors(rows, failures), self.card.is_classification)

    def place_explanations(self, rows: ValidatedRows | ValidatedTable, total: int,
                           explained: ExplainedRows | None,
                           on_error: OnError = "fail") -> PlacedExplanations:
        """`place` for /explain: each explained row at its request index, null for the rest."""
        failures = self.model_failures(rows, explained, on_error)
        if explained is None:
            explained = ExplainedRows(empty_table(self.schema.names, self.classes is not None))
        return PlacedExplanations(explained.placed(rows.indices, total),
                                  self._errors(rows, failures))

    @staticmethod
    def _errors(rows: ValidatedRows | ValidatedTable,
                failures: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows not answered: refused by the schema, or by the model; by request row."""
        return sorted([p.to_dict() for p in rows.problems] + failures, key=lambda e: e["row"])

    def _rest(self, errors: list[dict[str, Any]], rows: ValidatedRows | ValidatedTable,
              request_id: str) -> dict[str, Any]:
        """What every JSON answer holds besides the rows' answers."""
        return {
            "model": self.reference,
            "timestamp": now_iso(),
            "request_id": request_id,
            "ignored_fields": rows.ignored_fields,
            "errors": errors,
            "input_drift": rows.drift(),
        }

    def render(self, placed: PlacedAnswer, rows: ValidatedRows | ValidatedTable, request_id: str,
               shape: AnswerShape = "predictions") -> bytes:
        """The answer body as JSON bytes (PRODUCT.md; `response_models` describes it)."""
        rest = self._rest(placed.errors, rows, request_id)
        if shape == "probabilities":
            rest = {"classes": list(self.schema.label.classes or ()), **rest}
            head = f'{{"probabilities":{placed.probabilities}'
        else:
            head = f'{{"predictions":{placed.predictions},"probabilities":{placed.probabilities}'
        return (head + "," + json.dumps(rest, separators=(",", ":"))[1:]).encode()

    def render_explanations(self, placed: PlacedExplanations,
                            rows: ValidatedRows | ValidatedTable, request_id: str,
                            top: int | None = None) -> bytes:
        """/explain's JSON answer (`response_models.ExplanationResponse` describes it)."""
        import orjson

        records = explanation_records(placed.answer.table, self.schema.names, top)
        return orjson.dumps({"explanations": records,
                             **self._rest(placed.errors, rows, request_id)})

    def render_explanation_table(self, placed: PlacedExplanations, total: int, media: str,
                                 top: int | None = None) -> bytes:
        """/explain's answer as one table: `explanation_columns`, then `error`."""
        import pyarrow as pa

        columns = explanation_columns(placed.answer.table, self.schema.names, top)
        columns["error"] = error_column(placed.errors, total)
        return encode_table(pa.table(columns), media)


# Answer media types besides JSON (the Accept header picks one; JSON stays the default).
TABLE_MEDIA = (ARROW_STREAM, PARQUET)


def answer_media(accept: str | None) -> str | None:
    """The table format an Accept header asks for, or None for JSON (the default: JSON when
    it is acceptable at all, so `*/*` and browsers get JSON)."""
    if not accept:
        return None
    ranges = [part.split(";", 1)[0].strip().lower() for part in accept.split(",")]
    for media in ranges:
        if media in TABLE_MEDIA:
            return media
        if media in ("application/json", "*/*", "application/*"):
            return None
    return None


def render_table(placed: PlacedAnswer, total: int, classes: Sequence[Any] | None,
                 media: str) -> bytes:
    """The answer as one table, a row per request row in order: `prediction`, a float64
    `proba_<class>` per class (classifiers), then `error` (null for a scored row, else a
    JSON list of `{"field", "problem"}`)."""
    import pyarrow as pa

    answer = placed.answer.columns  # the model's arrays when it answered in this process
    columns: dict[str, Any] = {"prediction": answer.predictions}
    if classes is not None:
        probabilities = answer.probabilities or {}
        for cls in classes:
            columns[f"proba_{cls}"] = probabilities.get(str(cls), pa.nulls(total, pa.float64()))
    columns["error"] = error_column(placed.errors, total)
    return encode_table(pa.table(columns), media)


def error_column(errors: list[dict[str, Any]], total: int) -> Any:
    """A table answer's `error` column: null for a row answered, else its problems as the
    JSON error's details, `[{"field", "problem"}]` (field null for the whole row; a problem
    may quote the client's text: no separator is safe to split on)."""
    import orjson
    import pyarrow as pa

    if not errors:
        return pa.nulls(total, pa.string())  # no per-row loop
    problems: dict[int, list[dict[str, Any]]] = {}
    for error in errors:
        problems.setdefault(error["row"], []).append(
            {"field": error.get("field"), "problem": error["problem"]})
    return pa.array(
        [(orjson.dumps(problems[i]).decode() if i in problems else None) for i in range(total)],
        pa.string())
