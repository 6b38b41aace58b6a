"""The HTTP contract: how a request's rows become an answer, and how errors look.

`PredictionContract` is everything between the JSON body and the model call: limits,
validation, and the answer shape of PRODUCT.md. It holds no model; the service passes it
the per-row answers of the batched model service.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from agbento.errors import ApiError
from agbento.schema import ValidatedRows
from agbento.store import ModelCard

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class ModelReference(BaseModel):
    tag: str
    problem_type: str
    eval_metric: str | None = None


class PredictionResponse(BaseModel):
    """Row i of `predictions` (and `probabilities`) answers row i of the request."""

    predictions: list[Any]
    probabilities: list[dict[str, float]] | None = Field(
        None, description="class -> probability per row; null for regression"
    )
    model: ModelReference
    timestamp: str = Field(description="ISO-8601, UTC")
    request_id: str
    ignored_fields: list[str] = Field(
        default_factory=list, description="request fields the model does not use"
    )


class ProbabilityResponse(BaseModel):
    probabilities: list[dict[str, float]]
    classes: list[Any]
    model: ModelReference
    timestamp: str
    request_id: str
    ignored_fields: list[str] = Field(default_factory=list)


def request_id_from(headers: Any) -> str:
    """The caller's X-Request-ID when it is sane, else a fresh one."""
    given = headers.get(REQUEST_ID_HEADER) if headers is not None else None
    if given and _REQUEST_ID_OK.match(given):
        return given
    return uuid.uuid4().hex


def json_response(body: dict[str, Any], status: int, request_id: str) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={REQUEST_ID_HEADER: request_id})


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class PredictionContract:
    def __init__(self, card: ModelCard, max_rows: int) -> None:
        self.card = card
        self.schema = card.schema
        self.max_rows = max_rows
        self.reference = card.reference()

    def accept(self, data: Any) -> ValidatedRows:
        """Limits and per-row validation; raises ApiError naming every bad row and field."""
        if not isinstance(data, list):
            raise ApiError(400, "bad_request", "`data` must be a list of row objects")
        if not data:
            raise ApiError(400, "empty_data", "`data` has no rows")
        if len(data) > self.max_rows:
            raise ApiError(
                413,
                "too_many_rows",
                f"{len(data)} rows exceed the limit of {self.max_rows} per request "
                "(AGBENTO_MAX_ROWS); split the request or use the batch client",
            )
        validated = self.schema.validate_rows(data)
        if not validated.ok:
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

    def answer(
        self,
        rows: ValidatedRows,
        scored: list[dict[str, Any]],
        request_id: str,
        probabilities_only: bool = False,
    ) -> dict[str, Any]:
        failed = [
            {"row": i, "field": None, "problem": s["error"]}
            for i, s in enumerate(scored)
            if "error" in s
        ]
        if failed:
            raise ApiError(
                422,
                "model_rejected_rows",
                f"the model could not score {len(failed)} row(s)",
                failed,
            )
        body: dict[str, Any] = {}
        probabilities = [s["probabilities"] for s in scored]
        if probabilities_only:
            body["probabilities"] = probabilities
            body["classes"] = list(self.schema.label.classes or ())
        else:
            body["predictions"] = [s["prediction"] for s in scored]
            body["probabilities"] = probabilities if self.card.is_classification else None
        body.update(
            model=self.reference,
            timestamp=now_iso(),
            request_id=request_id,
            ignored_fields=rows.ignored_fields,
        )
        return body
