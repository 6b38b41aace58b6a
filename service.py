"""agbento's Bento: a batched model service behind the API that validates and answers.

    bentoml serve .          # serves `AgBento` (named in bentofile.yaml) on :3000

`TabularModel` holds the predictor and merges concurrent rows into one model call
(BentoML adaptive batching over a list of rows: see ../shared/BENTOML-NOTES.md).
`AgBento` is the public face: it checks every row against the model's feature schema
*before* anything is batched, so one client's bad row cannot fail another's request.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import bentoml
from pydantic import Field, WithJsonSchema
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agbento.contract import (
    OnError,
    PredictionContract,
    PredictionResponse,
    ProbabilityResponse,
    json_response,
    request_id_from,
)
from agbento.errors import ApiError
from agbento.inference import TabularRuntime
from agbento.intake import PredictionIntake
from agbento.logs import configure_logging
from agbento.settings import get_settings
from agbento.store import load_card

settings = get_settings()
configure_logging(settings.log_level)
log = logging.getLogger("agbento.requests")
stored_model = bentoml.models.BentoModel(settings.model)
card = load_card(stored_model)

# What /docs.json shows for the request rows: this model's features, with real examples.
# Validation stays ours (422 naming row and field), so the type BentoML checks is loose.
Rows = Annotated[
    list[Any],
    WithJsonSchema({"type": "array", "items": card.schema.row_json_schema(settings.extra_fields)}),
    Field(examples=[card.examples[:2]], description="rows: feature name -> value"),
]


@bentoml.service(
    name="agbento-model",
    workers=settings.model_workers,
    traffic={"timeout": settings.request_timeout_s},
    logging={"access": {"enabled": settings.access_log}},
    # The caller's client otherwise recycles its session every 100 requests while requests
    # are in flight ("Server disconnected" under load); see BENTOML-NOTES.md.
    runner_connection={"max_requests": 10**9, "max_age": 1e9},
)
class TabularModel:
    model = stored_model

    def __init__(self) -> None:
        self.runtime = TabularRuntime.load(load_card(stored_model))
        self.runtime.warm_up()

    def __is_ready__(self) -> bool:
        return self.runtime.ready

    @bentoml.api(
        batchable=True,
        max_batch_size=settings.max_batch_size,
        max_latency_ms=settings.max_latency_ms,
    )
    def score(self, rows: list[list[Any]]) -> list[dict[str, Any]]:
        """Validated rows (values in schema order) -> one answer per row."""
        return self.runtime.score(rows)


async def health(request: Request) -> JSONResponse:
    body = await bentoml.get_current_service().health()
    return JSONResponse(body, status_code=200 if body["status"] == "healthy" else 503)


async def model_info(request: Request) -> JSONResponse:
    return JSONResponse(bentoml.get_current_service().card.info())


info_routes = Starlette(
    routes=[Route("/health", health), Route("/model/info", model_info)]
)


@bentoml.asgi_app(info_routes, path="/")
@bentoml.service(
    name="agbento",
    workers=settings.api_workers,
    traffic={"timeout": settings.request_timeout_s},
    logging={"access": {"enabled": settings.access_log}},
)
class AgBento:
    model = stored_model
    scorer = bentoml.depends(TabularModel)

    def __init__(self) -> None:
        self.card = card
        self.contract = PredictionContract(card, settings.max_rows, settings.extra_fields)

    @bentoml.api(route="/predict")
    async def predict(
        self, data: Rows, ctx: bentoml.Context, on_error: OnError = "fail"
    ) -> PredictionResponse:
        """Predictions (and class probabilities) for `data`, a list of row objects.

        Also accepts MLflow's `dataframe_split` / `dataframe_records` bodies, and CSV or
        Parquet bodies by content type. `on_error="skip"` predicts the good rows and answers
        the bad ones in place (null, listed in `errors`).
        """
        return await self._respond(data, ctx, on_error, probabilities_only=False)

    @bentoml.api(route="/predict_proba")
    async def predict_proba(
        self, data: Rows, ctx: bentoml.Context, on_error: OnError = "fail"
    ) -> ProbabilityResponse:
        """Class probabilities for `data` (classification models only)."""
        return await self._respond(data, ctx, on_error, probabilities_only=True)

    async def health(self) -> dict[str, Any]:
        try:
            loaded = await self.scorer.is_ready(5)
        except Exception:  # noqa: BLE001 - any failure to reach the model means not loaded
            loaded = False
        return {
            "status": "healthy" if loaded else "unhealthy",
            "model_loaded": loaded,
            "model": self.card.reference(),
        }

    async def _respond(
        self, data: Any, ctx: bentoml.Context, on_error: OnError, probabilities_only: bool
    ) -> Any:
        request_id = request_id_from(ctx.request.headers)
        try:
            if probabilities_only:
                self.contract.require_classifier()
            rows = self.contract.accept(data, on_error)
            scored = await self.scorer.to_async.score(rows.rows) if rows.rows else []
            body = self.contract.answer(
                rows, len(data), scored, request_id, probabilities_only, on_error
            )
            status = 200
        except ApiError as error:
            log.info(
                "rejected request_id=%s path=%s status=%d code=%s: %s",
                request_id, ctx.request.url.path, error.status, error.code, error.message,
            )
            body, status = error.body(request_id), error.status
        ctx.response.status_code = status
        return json_response(body, status, request_id)


AgBento.add_asgi_middleware(
    PredictionIntake,
    paths=("/predict", "/predict_proba"),
    max_body_bytes=settings.max_body_bytes,
    max_rows=settings.max_rows,
)
