"""The HTTP contract: how a request's rows become an answer, and how errors look.

`PredictionContract` is everything between the JSON body and the model call: limits,
validation, and the answer shape of PRODUCT.md. It holds no model; the service passes it
the per-row answers of the batched model service.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from starlette.responses import JSONResponse, Response

from agbento.errors import ApiError
from agbento.inference import ScoredRequest
from agbento.schema import ExtraFieldsPolicy, ValidatedRows
from agbento.store import ModelCard

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class ModelReference(BaseModel):
    tag: str
    problem_type: str
    eval_metric: str | None = None


class RowError(BaseModel):
    row: int
    field: str | None
    problem: str


class InputDrift(BaseModel):
    unseen_categories: dict[str, int] = Field(
        default_factory=dict, description="feature -> accepted values never seen in training"
    )
    out_of_range: dict[str, int] = Field(
        default_factory=dict, description="feature -> accepted numbers outside training range"
    )


class PredictionResponse(BaseModel):
    """Row i of `predictions` (and `probabilities`) answers row i of the request."""

    predictions: list[Any] = Field(description="null for a row listed in `errors` (skip mode)")
    probabilities: list[dict[str, float] | None] | None = Field(
        None, description="class -> probability per row; null for regression"
    )
    model: ModelReference
    timestamp: str = Field(description="ISO-8601, UTC")
    request_id: str
    ignored_fields: list[str] = Field(
        default_factory=list, description="request fields the model does not use"
    )
    errors: list[RowError] = Field(
        default_factory=list, description='rows not predicted (only with on_error="skip")'
    )
    input_drift: InputDrift = Field(default_factory=InputDrift)


class ProbabilityResponse(BaseModel):
    probabilities: list[dict[str, float] | None]
    classes: list[Any]
    model: ModelReference
    timestamp: str
    request_id: str
    ignored_fields: list[str] = Field(default_factory=list)
    errors: list[RowError] = Field(default_factory=list)
    input_drift: InputDrift = Field(default_factory=InputDrift)


def request_id_from(headers: Any) -> str:
    """The caller's X-Request-ID when it is sane, else a fresh one."""
    given = headers.get(REQUEST_ID_HEADER) if headers is not None else None
    if given and _REQUEST_ID_OK.match(given):
        return given
    return uuid.uuid4().hex


def json_response(
    body: dict[str, Any] | bytes, status: int, request_id: str, retry_after_s: int | None = None
) -> Response:
    """A JSON answer (a dict, or bytes already rendered) with the request id header."""
    headers = {REQUEST_ID_HEADER: request_id}
    if retry_after_s is not None:
        headers["Retry-After"] = str(retry_after_s)
    if isinstance(body, bytes):
        return Response(body, status_code=status, headers=headers,
                        media_type="application/json")
    return JSONResponse(body, status_code=status, headers=headers)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


OnError = Literal["fail", "skip"]
ON_ERROR_CHOICES: tuple[str, ...] = ("fail", "skip")


def too_many_rows(count: int, limit: int) -> ApiError:
    return ApiError(
        413,
        "too_many_rows",
        f"{count} rows exceed the limit of {limit} per request (AGBENTO_MAX_ROWS); "
        "split the request or use the batch client",
    )


class PredictionContract:
    def __init__(
        self, card: ModelCard, max_rows: int, extra_fields: ExtraFieldsPolicy = "ignore"
    ) -> None:
        self.card = card
        self.schema = card.schema
        self.max_rows = max_rows
        self.extra_fields = extra_fields
        self.reference = card.reference()

    def accept(self, data: Any, on_error: OnError = "fail") -> ValidatedRows:
        """Limits and per-row validation.

        With on_error="fail" any bad row makes an ApiError naming every bad row and field;
        with "skip" the problems travel on with the good rows and are answered in place.
        """
        if not isinstance(data, list):
            raise ApiError(400, "bad_request", "`data` must be a list of row objects")
        if not data:
            raise ApiError(400, "empty_data", "`data` has no rows")
        if len(data) > self.max_rows:
            raise too_many_rows(len(data), self.max_rows)
        validated = self.schema.validate_rows(data, self.extra_fields)
        if not validated.ok and on_error == "fail":
            bad_rows = len({p.row for p in validated.problems})
            raise ApiError(
                422,
                "invalid_rows",
                f"{len(validated.problems)} problem(s) in {bad_rows} of {len(data)} row(s)",
                [p.to_dict() for p in validated.problems],
            )
        return validated

    def require_classifier(self) -> None:
        if not self.card.is_classification:
            raise ApiError(
                400,
                "not_a_classifier",
                f"model {self.card.tag} is a {self.card.problem_type} model: it has no class "
                "probabilities; use /predict",
            )

    @staticmethod
    def model_failures(
        rows: ValidatedRows, scored: ScoredRequest | None, on_error: OnError = "fail"
    ) -> list[dict[str, Any]]:
        """Rows the model itself could not score, by request row; an ApiError in fail mode."""
        failures = [] if scored is None else [
            {"row": rows.indices[f["row"]], "field": None, "problem": f["problem"]}
            for f in scored.failed
        ]
        if failures and on_error == "fail":
            raise ApiError(
                422,
                "model_rejected_rows",
                f"the model could not score {len(failures)} row(s)",
                failures,
            )
        return failures

    def answer(
        self,
        rows: ValidatedRows,
        total: int,
        scored: ScoredRequest | None,
        request_id: str,
        probabilities_only: bool = False,
        on_error: OnError = "fail",
    ) -> bytes:
        """The answer body as JSON bytes: request row i at position i.

        The common case (every row scored) splices the model's JSON fragments into the body
        without parsing them; otherwise failed rows become null and are listed in `errors`.
        """
        failures = self.model_failures(rows, scored, on_error)
        rest = {
            "model": self.reference,
            "timestamp": now_iso(),
            "request_id": request_id,
            "ignored_fields": rows.ignored_fields,
            "errors": sorted([p.to_dict() for p in rows.problems] + failures,
                             key=lambda e: e["row"]),
            "input_drift": rows.drift(),
        }
        if probabilities_only:
            rest = {"classes": list(self.schema.label.classes or ()), **rest}
        if scored is not None and len(rows.rows) == total:
            predictions, probabilities = scored.predictions, scored.probabilities
        else:  # place what was scored at its request index, null elsewhere
            placed_predictions: list[Any] = [None] * total
            placed_probabilities: list[Any] = [None] * total
            if scored is not None:
                for index, prediction, proba in zip(
                    rows.indices,
                    scored.prediction_values,
                    scored.probability_values,
                    strict=True,
                ):
                    placed_predictions[index], placed_probabilities[index] = prediction, proba
            predictions = json.dumps(placed_predictions)
            probabilities = json.dumps(placed_probabilities)
        if not self.card.is_classification:
            probabilities = "null"
        head = (f'{{"probabilities":{probabilities}' if probabilities_only
                else f'{{"predictions":{predictions},"probabilities":{probabilities}')
        return (head + "," + json.dumps(rest, separators=(",", ":"))[1:]).encode()
