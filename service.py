"""agbento's Bento: a batched model service behind the API that validates and answers.

    bentoml serve .          # serves `AgBento` (named in bentofile.yaml) on :3000

`TabularModel` holds the predictor and merges concurrent rows into one model call
(BentoML adaptive batching over a list of rows: see ../shared/BENTOML-NOTES.md).
`AgBento` is the public face: it checks every row against the model's feature schema
*before* anything is batched, so one client's bad row cannot fail another's request.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Annotated, Any

import aiohttp
import bentoml
from bentoml.validators import ContentType
from pydantic import Field, WithJsonSchema
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agbento.access import AccessGate
from agbento.cache import CacheConfig, PredictionCache, open_backend
from agbento.contract import (
    OnError,
    PredictionContract,
    PredictionResponse,
    ProbabilityResponse,
    json_response,
    request_id_from,
)
from agbento.errors import ApiError
from agbento.inference import ScoredRequest, TabularRuntime, encode_rows
from agbento.intake import PredictionIntake
from agbento.logs import configure_logging
from agbento.metrics import (
    MODEL_INFO,
    MODEL_READY,
    observe_classes,
    observe_inputs,
    observe_values,
    regression_value_histogram,
)
from agbento.overload import InflightLimit, overloaded
from agbento.prediction_log import PredictionSampler
from agbento.request_log import RequestLog
from agbento.schema import ValidatedRows
from agbento.settings import get_settings
from agbento.shutdown import bound_after_sigterm
from agbento.store import load_card
from agbento.v2 import ProtocolModel
from agbento.v2_http import ProtocolErrors, protocol_routes

settings = get_settings()
# Before any model library loads: OpenMP threads spin while idle and steal the CPU the
# API process needs; batches are small, so one thread per model worker is the default.
os.environ.setdefault("OMP_NUM_THREADS", str(settings.model_threads))
configure_logging(settings.log_level)
log = logging.getLogger("agbento.service")
if not settings.api_keys_file:
    if settings.require_api_keys:
        raise SystemExit("AGBENTO_REQUIRE_API_KEYS is set but AGBENTO_API_KEYS_FILE is not: "
                         "refusing to serve without keys (python -m agbento.keys create ...)")
    log.warning("NO API KEYS: every endpoint is open to anyone who can reach it. Fine on a "
                "laptop; set AGBENTO_API_KEYS_FILE anywhere else.")
stored_model = bentoml.models.BentoModel(settings.model)
card = load_card(stored_model)
cache_config = CacheConfig(
    url=settings.cache_url,
    ttl_s=settings.cache_ttl_s,
    timeout_ms=settings.cache_timeout_ms,
    memory_bytes=settings.cache_memory_mb * 1024 * 1024,
)
PREDICTION_PATHS = ("/predict", "/predict_proba")
# Open Inference Protocol V2 and KServe V1: codecs in front of the same contract
protocol = ProtocolModel.of(card, settings.served_model_name)
# A declared media type spares BentoML a JSON-schema build on every response.
ScoredRequests = Annotated[list[dict[str, Any]], ContentType("application/json")]

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
    tracing={"excluded_urls": [".*"]},  # no exporter is configured: skip the span work
    # The caller's client otherwise recycles its session every 100 requests while requests
    # are in flight ("Server disconnected" under load); see BENTOML-NOTES.md.
    runner_connection={"max_requests": 10**9, "max_age": 1e9},
)
class TabularModel:
    model = stored_model

    def __init__(self) -> None:
        self.runtime = TabularRuntime.load(card, settings.allow_version_mismatch)
        self.runtime.warm_up()
        MODEL_READY.set(1)
        bound_after_sigterm(settings.shutdown_timeout_s)

    def __is_ready__(self) -> bool:
        return self.runtime.ready

    @bentoml.api(
        batchable=True,
        max_batch_size=settings.max_batch_size,
        max_latency_ms=settings.max_latency_ms,
    )
    async def score(self, requests: list[str]) -> ScoredRequests:
        """Merged requests, each its rows encoded by `encode_rows` -> one answer each.

        `async` on purpose: one batch runs at a time anyway, and a sync method would pass
        each batch through a thread pool (BENTOML-NOTES.md).
        """
        return [answer.to_dict() for answer in self.runtime.score_requests(requests)]


async def health(request: Request) -> JSONResponse:
    body = await bentoml.get_current_service().health()
    return JSONResponse(body, status_code=200 if body["status"] == "healthy" else 503)


async def model_info(request: Request) -> JSONResponse:
    return JSONResponse(bentoml.get_current_service().card.info())


async def clear_cache(request: Request) -> JSONResponse:
    """POST /admin/cache/clear: drop the served model's cached answers (admin permission)."""
    request_id = request_id_from(request.headers)
    removed = await bentoml.get_current_service().cache.clear()
    log.info("cache cleared request_id=%s removed=%d", request_id, removed)
    return json_response({"cleared": removed, "request_id": request_id}, 200, request_id)


info_routes = Starlette(
    routes=[
        Route("/health", health),
        Route("/model/info", model_info),
        Route("/admin/cache/clear", clear_cache, methods=["POST"]),
        *protocol_routes(),
    ]
)


@bentoml.asgi_app(info_routes, path="/")
@bentoml.service(
    name="agbento",
    workers=settings.api_workers,
    traffic={"timeout": settings.request_timeout_s},
    logging={"access": {"enabled": settings.access_log}},
    tracing={"excluded_urls": [".*"]},
)
class AgBento:
    model = stored_model
    scorer = bentoml.depends(TabularModel)

    def __init__(self) -> None:
        self.card = card
        self.protocol = protocol
        self.contract = PredictionContract(card, settings.max_rows, settings.extra_fields)
        self.cache = PredictionCache(open_backend(cache_config), card.tag, cache_config)
        self.background: set[asyncio.Task[Any]] = set()
        bound_after_sigterm(settings.shutdown_timeout_s)
        MODEL_INFO.labels(tag=card.tag, problem_type=card.problem_type).set(1)
        self.sampler = PredictionSampler(card.schema, card.is_classification,
                                         settings.prediction_log_sample,
                                         settings.prediction_log_dir)
        label_range = card.metadata.get("label_range")
        self.values = (regression_value_histogram(*label_range)
                       if label_range and not card.is_classification else None)

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
            "cache": self.cache.describe(),
        }

    async def _respond(
        self, data: Any, ctx: bentoml.Context, on_error: OnError, probabilities_only: bool
    ) -> Any:
        request_id = request_id_from(ctx.request.headers)
        ctx.request.state.rows = len(data) if isinstance(data, list) else 0
        try:
            if probabilities_only:
                self.contract.require_classifier()
            rows, scored = await self._accept_and_score(data, on_error)
            body = self.contract.answer(
                rows, len(data), scored, request_id, probabilities_only, on_error
            )
            self._observe(rows, scored)
            status = 200
        except ApiError as error:
            body, status = error.body(request_id), error.status
            retry_after = error.retry_after_s
        else:
            retry_after = None
        ctx.response.status_code = status
        return json_response(body, status, request_id, retry_after)

    async def score_rows(self, data: list[Any]) -> ScoredRequest:
        """/predict's path for the other protocols' codecs (V2, KServe V1): validated,
        scored from the cache or the batched model, observed; any bad row is an ApiError."""
        rows, scored = await self._accept_and_score(data, "fail")
        self.contract.model_failures(rows, scored)
        if scored is None:  # cannot happen: "fail" refuses a request without good rows
            raise ApiError(400, "empty_data", "the request has no rows")
        self._observe(rows, scored)
        return scored

    async def _accept_and_score(
        self, data: Any, on_error: OnError
    ) -> tuple[ValidatedRows, ScoredRequest | None]:
        rows = self.contract.accept(data, on_error)
        observe_inputs(rows.missing, rows.unseen_categories, rows.out_of_range)
        return rows, await self._score(rows.rows)

    async def _score(self, rows: list[list[Any]]) -> ScoredRequest | None:
        """Rows answered from the cache where it can, from the model otherwise."""
        if not rows:
            return None
        # per-row cache work costs more than the model's one call for a big request
        if not self.cache.enabled or len(rows) > settings.cache_max_rows:
            return await self._call_model(rows)
        keys = self.cache.keys(rows)
        answers = await self.cache.lookup(keys)
        missing = [i for i, answer in enumerate(answers) if answer is None]
        failed = []
        if missing:
            fresh = await self._call_model([rows[i] for i in missing])
            failed = [{**f, "row": missing[f["row"]]} for f in fresh.failed]
            for i, answer in zip(missing, fresh.per_row(), strict=True):
                answers[i] = answer
            self._in_background(self.cache.store(
                {keys[i]: answers[i] for i in missing if answers[i] is not None}))
        return ScoredRequest.from_rows(answers, failed, self.card.is_classification)

    def _observe(self, rows: ValidatedRows, scored: ScoredRequest | None) -> None:
        """The prediction distribution for dashboards, and the sampled prediction log."""
        if scored is None:
            return
        predictions = scored.prediction_values
        self.sampler.maybe_log(rows.rows, predictions)
        if self.card.is_classification:
            observe_classes(predictions, scored.probability_values)
        elif self.values is not None:
            observe_values(predictions, self.values)

    def _in_background(self, work: Any) -> None:
        """A store must not delay the answer; keep a reference until it is done."""
        task = asyncio.create_task(work)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def _call_model(self, rows: list[list[Any]]) -> ScoredRequest:
        payload = [encode_rows(rows)]
        try:
            try:
                (answer,) = await self.scorer.to_async.score(payload)
            except aiohttp.ClientConnectionError:
                # BentoML's client may close a pooled connection under a request in flight
                # (BENTOML-NOTES.md); scoring is idempotent, so one retry is safe
                (answer,) = await self.scorer.to_async.score(payload)
        except aiohttp.ClientConnectionError as exc:
            # the model service is gone (restarting, shutting down): transient, say so
            raise ApiError(503, "model_unavailable",
                           f"the model service cannot be reached ({type(exc).__name__}); "
                           "retry later", retry_after_s=1) from None
        except bentoml.exceptions.ServiceUnavailable as exc:
            # the batcher could not meet max_latency_ms: the model is saturated
            raise overloaded(f"the model service is saturated ({exc}); retry later") from None
        return ScoredRequest.from_dict(answer)


# Outermost first: log and time everything, give V2/V1 paths their protocols' error shape,
# refuse callers without the right key, refuse excess load before reading bodies, then read
# and shape the bodies.
AgBento.add_asgi_middleware(RequestLog, model_tag=card.tag)
AgBento.add_asgi_middleware(ProtocolErrors)
AgBento.add_asgi_middleware(
    AccessGate,
    keys_file=settings.api_keys_file,
    rate_limit_rps=settings.rate_limit_rps,
    rate_limit_burst=settings.rate_limit_burst,
    metrics_auth=settings.metrics_auth,
)
AgBento.add_asgi_middleware(
    InflightLimit, paths=PREDICTION_PATHS + protocol.scoring_paths, limit=settings.max_inflight
)
AgBento.add_asgi_middleware(
    PredictionIntake,
    paths=PREDICTION_PATHS,
    max_body_bytes=settings.max_body_bytes,
    max_rows=settings.max_rows,
)
