"""agbento's Bento: the API that validates and answers, and the model it asks.

    bentoml serve .          # serves `AgBento` (named in bentofile.yaml) on :3000

`AgBento` is the public face: its ASGI layers refuse, bound and read bodies, then its
endpoints check every row against the model's feature schema *before* anything is
batched, so one client's bad row cannot fail another's request. Where the model lives is
the topology (AGBENTO_TOPOLOGY):
- fused (default): every API worker holds the predictor and merges its concurrent requests
  in-process (agbento/runtime/batching.py); no second service, no hop.
- split: `TabularModel` holds the predictor once and merges requests from every API worker
  (BentoML adaptive batching over a list of encoded requests: ../shared/BENTOML-NOTES.md).
ARCHITECTURE.md draws both.
"""

from __future__ import annotations

from agbento.ops.bootstrap import settings  # first: the process environment before numpy loads

# isort: split
from pathlib import Path
from typing import Annotated, Any

import bentoml
from bentoml.validators import ContentType
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agbento.core.errors import ApiError, ErrorCode
from agbento.core.wire import (
    MODEL_HEADER,
    REQUEST_ID_HEADER,
    error_response,
    json_response,
    request_id_from,
)
from agbento.http.access import AccessGate
from agbento.http.balance import ConnectionAge
from agbento.http.guard import ErrorGuard, internal_error, report_internal_error
from agbento.http.intake import PredictionIntake
from agbento.http.overload import InflightLimit
from agbento.http.ratelimit import RateLimitConfig
from agbento.http.request_log import RequestLog
from agbento.models.stages import bento_labels, bento_pin, resolve_tag
from agbento.models.store import load_card
from agbento.monitoring.metrics import MODEL_INFO, PredictionObserver, observe_inputs
from agbento.monitoring.prediction_log import PredictionSampler
from agbento.ops.shutdown import bound_after_sigterm
from agbento.ops.supervision import watch_supervision
from agbento.protocols.endpoints import ProtocolErrors, protocol_routes
from agbento.protocols.v2 import ProtocolModel
from agbento.rows.columns import STATE_KEY, RequestTable
from agbento.rows.response_models import PredictionResponse, ProbabilityResponse, request_rows_type
from agbento.rows.schema import OnError, ValidatedRows, ValidatedTable
from agbento.runtime.cache import CacheConfig, PredictionCache, open_backend
from agbento.runtime.contract import AnswerShape, PredictionContract, answer_media, render_table
from agbento.runtime.inference import ScoredRequest, TabularRuntime, log_rejected_rows
from agbento.runtime.scoring import CachedScorer, InProcessModel, ModelScorer, ModelServiceClient

# NAME@STAGE is the version promoted there (the stage registry); inside a built Bento, the
# version the Bento was built with (its bento.yaml: docs/lifecycle.md)
model_tag = resolve_tag(settings.model, pinned=bento_pin(Path(__file__)))
stored_model = bentoml.models.BentoModel(model_tag)
card = load_card(stored_model)
# Open Inference Protocol V2 and KServe V1: codecs in front of the same contract
protocol = ProtocolModel.of(card, settings.served_model_name)
Rows = request_rows_type(card.schema.row_json_schema(settings.extra_fields), card.examples)
# Where the fused topology "finds" the model service it never calls (see AgBento).
NOT_STARTED_URL = "http://127.0.0.1:9"
# A declared media type spares BentoML a JSON-schema build on every response.
ScoredRequests = Annotated[list[dict[str, Any]], ContentType("application/json")]


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
        # first: a SIGTERM during the model's load must bound the stop too
        bound_after_sigterm(settings.shutdown_timeout_s)
        self.runtime = TabularRuntime.load(card, settings.allow_version_mismatch)
        self.runtime.warm_up()
        watch_supervision()  # a sibling nobody replaces, or no arbiter: stop

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


async def clear_cache(request: Request) -> Response:
    """POST /admin/cache/clear: drop the served model's cached answers (admin permission)."""
    request_id = request_id_from(request.headers)
    removed = await bentoml.get_current_service().cache.clear()
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
    # BentoML's own probe of the model in /readyz raises when the model does not answer
    # in 5 s, and that request then holds shutdown for the request timeout: __is_ready__
    # (below) asks instead (agbento/ops/shutdown.py has the story)
    runner_probe={"enabled": False},
    # `bentoml build` writes these into the Bento: what AGBENTO_MODEL named, what it was
    labels=bento_labels(settings.model, model_tag),
)
class AgBento:
    model = stored_model
    # Split: BentoML starts the model service beside us. Fused: a dependency with a URL,
    # which BentoML never starts and nothing here calls; declared anyway so that a Bento
    # records both services and serves either topology, whichever it was built with
    # (BentoML 1.4.39 refuses to serve a service its Bento did not record).
    model_service = bentoml.depends(
        TabularModel, url=None if settings.topology == "split" else NOT_STARTED_URL)

    def __init__(self) -> None:
        # first: a SIGTERM during the model's load (fused) must bound the stop too
        bound_after_sigterm(settings.shutdown_timeout_s)
        self.card = card
        self.protocol = protocol
        self.contract = PredictionContract(card, settings.max_rows, settings.extra_fields)
        cache_config = CacheConfig.from_settings(settings)
        self.cache = PredictionCache(open_backend(cache_config), card.tag, cache_config)
        self.model_scorer = self._model_scorer()
        self.scoring = CachedScorer(self.model_scorer.score, self.cache,
                                    card.is_classification, settings.cache_max_rows)
        self.observer = PredictionObserver(
            card.is_classification, card.metadata.get("label_range"),
            PredictionSampler(card.schema, card.is_classification,
                              settings.prediction_log_sample, settings.prediction_log_dir))
        MODEL_INFO.labels(tag=card.tag, problem_type=card.problem_type).set(1)
        watch_supervision()  # a sibling nobody replaces, or no arbiter: stop

    def _model_scorer(self) -> ModelScorer:
        """The one place the topology shows: the model here, or the model service's client."""
        if settings.topology == "fused":
            return InProcessModel.load(card, settings.allow_version_mismatch,
                                       settings.max_batch_size)
        # looked up per call: the dependency's client has its endpoints only once serving
        return ModelServiceClient(lambda requests: self.model_service.to_async.score(requests),
                                  lambda timeout: self.model_service.is_ready(timeout),
                                  settings.model_wait_s)

    @bentoml.on_shutdown
    async def close_model(self) -> None:
        await self.model_scorer.close()

    @bentoml.api(route="/predict")
    async def predict(
        self, data: Rows, ctx: bentoml.Context, on_error: OnError = "fail"
    ) -> PredictionResponse:
        """Predictions (and class probabilities) for `data`, a list of row objects.

        Also accepts MLflow's `dataframe_split` / `dataframe_records` bodies, and CSV or
        Parquet bodies by content type. `on_error="skip"` predicts the good rows and answers
        the bad ones in place (null, listed in `errors`).
        """
        return await self._respond(data, ctx, on_error, "predictions")

    @bentoml.api(route="/predict_proba")
    async def predict_proba(
        self, data: Rows, ctx: bentoml.Context, on_error: OnError = "fail"
    ) -> ProbabilityResponse:
        """Class probabilities for `data` (classification models only)."""
        return await self._respond(data, ctx, on_error, "probabilities")

    async def __is_ready__(self) -> bool:
        """/readyz: the model is warmed up and not broken (fused: this worker's own; split:
        the model service answers its /readyz within 5 s)."""
        return await self.model_scorer.is_ready()

    async def health(self) -> dict[str, Any]:
        loaded = await self.__is_ready__()
        return {
            "status": "healthy" if loaded else "unhealthy",
            "model_loaded": loaded,
            "model": self.card.reference(),
            "cache": self.cache.describe(),
        }

    async def _respond(
        self, data: Any, ctx: bentoml.Context, on_error: OnError, shape: AnswerShape
    ) -> Response:
        request_id = request_id_from(ctx.request.headers)
        # a large request comes decoded into columns by the intake (never one the cache
        # answers: see PredictionIntake below); `data` is then empty
        table: RequestTable | None = getattr(ctx.request.state, STATE_KEY, None)
        total = table.total if table is not None else len(data) if isinstance(data, list) else 0
        ctx.request.state.rows = total
        media = answer_media(ctx.request.headers.get("accept"))
        try:
            self.contract.require_shape(shape)
            rows, scored = await self._accept_and_score(data, on_error, request_id, table)
            placed = self.contract.place(rows, total, scored, on_error)
            if media is None:
                body = self.contract.render(placed, rows, request_id, shape)
            else:
                body = render_table(placed, total, self.contract.classes, media)
            self.observer.observe(rows.rows, scored)
        except ApiError as error:
            response = error_response(error, request_id)
        except Exception as exc:  # noqa: BLE001 - ours, not the client's: our shape, logged
            report_internal_error(request_id, "POST", ctx.request.scope.get("path", "?"), exc)
            response = error_response(internal_error(), request_id)
        else:
            response = json_response(body, 200, request_id) if media is None else Response(
                body, 200, media_type=media,
                headers={REQUEST_ID_HEADER: request_id, MODEL_HEADER: self.card.tag})
        ctx.response.status_code = response.status_code
        return response

    async def score_rows(self, data: list[Any], request_id: str) -> ScoredRequest:
        """/predict's path for the other protocols' codecs (V2, KServe V1): validated,
        scored from the cache or the batched model, observed; any bad row is an ApiError."""
        rows, scored = await self._accept_and_score(data, "fail", request_id)
        self.contract.model_failures(rows, scored)
        if scored is None:  # cannot happen: "fail" refuses a request without good rows
            raise ApiError(ErrorCode.EMPTY_DATA, "the request has no rows")
        self.observer.observe(rows.rows, scored)
        return scored

    async def _accept_and_score(
        self, data: Any, on_error: OnError, request_id: str, table: RequestTable | None = None
    ) -> tuple[ValidatedRows | ValidatedTable, ScoredRequest | None]:
        if table is not None:
            rows: ValidatedRows | ValidatedTable = self.contract.accept_table(table, on_error)
        else:
            rows = self.contract.accept(data, on_error)
        observe_inputs(rows.missing, rows.unseen_categories, rows.out_of_range)
        scored = await self.scoring.score(
            rows.frame if isinstance(rows, ValidatedTable) else rows.rows)
        log_rejected_rows(scored, rows.indices, request_id)
        return rows, scored


# The smallest request the cache does not answer (CachedScorer.caches; its keys are the
# row path's values).
cache_enabled = CacheConfig.from_settings(settings).enabled
CACHED_ROWS_BOUND = settings.cache_max_rows + 1 if cache_enabled else 1

# Outermost first (BentoML keeps the order; its own layers sit outside all of ours):
# spread keep-alive connections over the workers, answer any exception at once, log and
# time everything, refuse callers without the right key, refuse excess load before reading
# bodies, then read and shape the bodies. Which path each layer acts on is in the route
# table (agbento/http/routes.py).
# one API worker: nothing to spread connections over
AgBento.add_asgi_middleware(
    ConnectionAge,
    max_age_s=settings.max_connection_age_s if settings.api_workers > 1 else 0)
AgBento.add_asgi_middleware(ErrorGuard)
AgBento.add_asgi_middleware(RequestLog, model_tag=card.tag)
AgBento.add_asgi_middleware(ProtocolErrors)  # V2/V1 paths: the protocols' error shape
AgBento.add_asgi_middleware(
    AccessGate,
    keys_file=settings.api_keys_file,
    rate_limit=RateLimitConfig.from_settings(settings),
    metrics_auth=settings.metrics_auth,
)
AgBento.add_asgi_middleware(InflightLimit, limit=settings.max_inflight)
AgBento.add_asgi_middleware(
    PredictionIntake,
    max_body_bytes=settings.max_body_bytes,
    max_rows=settings.max_rows,
    max_cells=settings.max_cells,
    feature_names=card.schema.names,
    # requests the cache answers stay rows (its keys are the row path's values)
    columnar_min_rows=max(settings.columnar_min_rows, CACHED_ROWS_BOUND),
)
