"""agbento's Bento: a batched model service behind the API that validates and answers.

    bentoml serve .          # serves `AgBento` (named in bentofile.yaml) on :3000

`TabularModel` holds the predictor and merges concurrent rows into one model call
(BentoML adaptive batching over a list of rows: see ../shared/BENTOML-NOTES.md).
`AgBento` is the public face: it checks every row against the model's feature schema
*before* anything is batched, so one client's bad row cannot fail another's request.
"""

from __future__ import annotations

from typing import Any

import bentoml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agbento.contract import (
    PredictionContract,
    PredictionResponse,
    ProbabilityResponse,
    json_response,
    request_id_from,
)
from agbento.errors import ApiError
from agbento.inference import TabularRuntime
from agbento.settings import get_settings
from agbento.store import load_card

settings = get_settings()
stored_model = bentoml.models.BentoModel(settings.model)


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
        self.card = load_card(stored_model)
        self.contract = PredictionContract(self.card, max_rows=settings.max_rows)

    @bentoml.api(route="/predict")
    async def predict(self, data: list[Any], ctx: bentoml.Context) -> PredictionResponse:
        """Predictions (and class probabilities) for `data`, a list of row objects."""
        return await self._respond(data, ctx, probabilities_only=False)

    @bentoml.api(route="/predict_proba")
    async def predict_proba(self, data: list[Any], ctx: bentoml.Context) -> ProbabilityResponse:
        """Class probabilities for `data` (classification models only)."""
        return await self._respond(data, ctx, probabilities_only=True)

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

    async def _respond(self, data: Any, ctx: bentoml.Context, probabilities_only: bool) -> Any:
        request_id = request_id_from(ctx.request.headers)
        try:
            if probabilities_only:
                self.contract.require_classifier()
            rows = self.contract.accept(data)
            scored = await self.scorer.to_async.score(rows.rows)
            body = self.contract.answer(rows, scored, request_id, probabilities_only)
            status = 200
        except ApiError as error:
            body, status = error.body(request_id), error.status
        ctx.response.status_code = status
        return json_response(body, status, request_id)
