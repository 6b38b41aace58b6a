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

from agbento.ops.bootstrap import fail_fast, log, settings  # first: the process before numpy

# isort: split
import asyncio
from pathlib import Path
from typing import Annotated, Any

import bentoml
from bentoml.validators import ContentType
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agbento.core.wire import json_response, request_id_from
from agbento.http.access import AccessGate
from agbento.http.balance import ConnectionAge
from agbento.http.docs import CurrentSchemaDocs, RowsDoc, labelled_examples, rows_doc
from agbento.http.endpoints import PredictionEndpoints
from agbento.http.guard import ErrorGuard
from agbento.http.intake import PredictionIntake
from agbento.http.overload import InflightLimit
from agbento.http.ratelimit import RateLimitConfig
from agbento.http.request_log import RequestLog
from agbento.http.unrouted import UnroutedErrors
from agbento.models.stages import bento_labels, bento_pin, resolve_tag
from agbento.models.store import ModelCard, find_card, load_card
from agbento.ops.shutdown import bound_after_sigterm
from agbento.ops.supervision import watch_supervision
from agbento.protocols.endpoints import ProtocolErrors, protocol_routes
from agbento.rows.response_models import (
    LABELLED_ROWS_DESCRIPTION,
    ExplanationResponse,
    FeedbackResponse,
    PredictionResponse,
    ProbabilityResponse,
    request_rows_type,
)
from agbento.rows.schema import OnError
from agbento.runtime.cache import CacheConfig, open_backend
from agbento.runtime.contract import AnswerShape
from agbento.runtime.follow import StageFollower
from agbento.runtime.inference import TabularRuntime
from agbento.runtime.live import LiveModel
from agbento.runtime.scoring import InProcessModel, ModelScorer, ModelServiceClient
from agbento.runtime.served import ServedModel
from agbento.runtime.shadow import ShadowIncompatible, ShadowScorer, open_shadow
from agbento.runtime.versions import RuntimeVersions

# NAME@STAGE is the version promoted there (the stage registry); inside a built Bento, the
# version the Bento was built with (its bento.yaml: docs/lifecycle.md)
with fail_fast():  # a model that is not there: one line, exit 2
    pin = bento_pin(Path(__file__))
    model_tag = resolve_tag(settings.model, pinned=pin)
    stored_model = bentoml.models.BentoModel(model_tag)
    card = load_card(stored_model)
# what each worker follows: the stage while serving from the project, the version in a Bento
followed = settings.model if pin is None else model_tag
Rows = request_rows_type(card.schema.row_json_schema(settings.extra_fields), card.examples)
LabelledRows = request_rows_type(card.schema.labelled_row_json_schema(settings.extra_fields),
                                 labelled_examples(card), LABELLED_ROWS_DESCRIPTION)
# Where the fused topology "finds" the model service it never calls (see AgBento).
NOT_STARTED_URL = "http://127.0.0.1:9"
# A declared media type spares BentoML a JSON-schema build on every response.
ScoredRequests = Annotated[list[dict[str, Any]], ContentType("application/json")]
ExplainedAnswer = Annotated[dict[str, Any], ContentType("application/json")]


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
        self.versions = RuntimeVersions(open_runtime(card.tag), open_runtime,
                                        settings.max_explain_rows)
        self.follower = StageFollower(followed, self.versions.tag, self.versions.swap,
                                      settings.model_poll_s)
        watch_supervision()  # a sibling nobody replaces, or no arbiter: stop

    @bentoml.on_startup
    async def follow_stage(self) -> None:
        self.follower.start()

    def __is_ready__(self) -> bool:
        return self.versions.ready

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
        return [answer.to_dict() for answer in await self.versions.score_requests(requests)]

    @bentoml.api
    async def prepare(self, tag: str) -> str:
        """Load `tag` (verified, warmed up) before an API worker sends it requests."""
        await self.versions.ensure(tag)
        return tag

    @bentoml.api
    async def explain(self, rows: str, explained_class: str | None = None) -> ExplainedAnswer:
        """One request's validated rows (`encode_for`: its version, its rows) -> their
        explanations (`ExplainedRows.to_dict`). Not batchable here: concurrent calls are
        merged by that version's runner, on its own thread, so score batches go on."""
        return (await self.versions.explain(rows, explained_class)).to_dict()

    @bentoml.on_shutdown
    async def close_versions(self) -> None:
        await self.follower.stop()
        await self.versions.close()


def served_rows() -> RowsDoc:
    """The rows of the version answering now, as /docs.json shows them."""
    return rows_doc(bentoml.get_current_service().served.card, settings.extra_fields)


def open_runtime(tag: str) -> TabularRuntime:
    return TabularRuntime.ready_to_serve(find_card(tag), settings.allow_version_mismatch)



async def health(request: Request) -> JSONResponse:
    body = await bentoml.get_current_service().health()
    return JSONResponse(body, status_code=200 if body["status"] == "healthy" else 503)


async def model_info(request: Request) -> JSONResponse:
    return JSONResponse(bentoml.get_current_service().served.card.info())


async def reload_model(request: Request) -> Response:
    """POST /admin/model/reload: check the stage now, in the worker that takes this request
    (the others check within AGBENTO_MODEL_POLL_S), and say what happened (admin)."""
    request_id = request_id_from(request.headers)
    outcome = await bentoml.get_current_service().follower.check(force=True)
    return json_response({**outcome.to_dict(), "request_id": request_id},
                         500 if outcome.result == "failed" else 200, request_id)


async def clear_cache(request: Request) -> Response:
    """POST /admin/cache/clear: drop the served model's cached answers (admin permission)."""
    request_id = request_id_from(request.headers)
    removed = await bentoml.get_current_service().served.cache.clear()
    return json_response({"cleared": removed, "request_id": request_id}, 200, request_id)


info_routes = Starlette(
    routes=[
        Route("/health", health),
        Route("/model/info", model_info),
        Route("/admin/cache/clear", clear_cache, methods=["POST"]),
        Route("/admin/model/reload", reload_model, methods=["POST"]),
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
        self.cache_backend = open_backend(CacheConfig.from_settings(settings))
        self.shadow = open_shadow(settings)  # AGBENTO_SHADOW_MODEL, or None
        first = ServedModel.open(card, self._model_scorer(card), settings, self.cache_backend,
                                 self._shadow_for(card))
        self.live = LiveModel(first, self._open_version, drain_s=settings.request_timeout_s)
        self.follower = StageFollower(followed, self.live.tag, self.live.swap,
                                      settings.model_poll_s)
        self.endpoints = PredictionEndpoints(lambda: self.live.current)
        watch_supervision()  # a sibling nobody replaces, or no arbiter: stop

    @property
    def served(self) -> ServedModel:
        """The version answering now (a request takes it once)."""
        return self.live.current

    def _model_scorer(self, version: ModelCard) -> ModelScorer:
        """The one place the topology shows: the model here, or the model service's client."""
        if settings.topology == "fused":
            return InProcessModel.load(version, settings.allow_version_mismatch,
                                       settings.max_batch_size, settings.max_explain_rows)
        # looked up per call: the dependency's client has its endpoints only once serving
        return ModelServiceClient(
            version.tag,
            lambda requests: self.model_service.to_async.score(requests),
            lambda timeout: self.model_service.is_ready(timeout),
            settings.model_wait_s,
            lambda rows, cls: self.model_service.to_async.explain(rows=rows,
                                                                  explained_class=cls),
            settings.request_timeout_s)

    async def _open_version(self, tag: str) -> ServedModel:
        """A version ready to answer: fused, loaded and warmed here (off the event loop);
        split, loaded by the model service before any request names it."""
        version = find_card(tag)
        if settings.topology == "split":
            await self.model_service.to_async.prepare(tag)
        scorer = await asyncio.to_thread(self._model_scorer, version)
        return ServedModel.open(version, scorer, settings, self.cache_backend,
                                self._shadow_for(version))

    def _shadow_for(self, version: ModelCard) -> ShadowScorer | None:
        """The shadow, if it can score this version's rows (else one ERROR line, none)."""
        if self.shadow is None:
            return None
        try:
            self.shadow.check_compatible(version.schema)
        except ShadowIncompatible as exc:
            log.error("no shadow scoring beside %s: %s", version.tag, exc)
            return None
        return self.shadow

    @bentoml.on_startup
    async def follow_stage(self) -> None:
        self.follower.start()

    @bentoml.on_shutdown
    async def close_model(self) -> None:
        await self.follower.stop()
        await self.live.close()

    @bentoml.api(route="/predict")
    async def predict(
        self, data: Rows, ctx: bentoml.Context, on_error: OnError = "fail"
    ) -> PredictionResponse:
        """Predictions (and class probabilities) for `data`, a list of row objects.

        Also accepts MLflow's `dataframe_split` / `dataframe_records` bodies, and CSV or
        Parquet bodies by content type. `on_error="skip"` predicts the good rows and answers
        the bad ones in place (null, listed in `errors`).
        """
        return await self._answer(ctx, data, on_error, "predictions")

    @bentoml.api(route="/predict_proba")
    async def predict_proba(
        self, data: Rows, ctx: bentoml.Context, on_error: OnError = "fail"
    ) -> ProbabilityResponse:
        """Class probabilities for `data` (classification models only)."""
        return await self._answer(ctx, data, on_error, "probabilities")

    @bentoml.api(route="/feedback")
    async def feedback(
        self, data: LabelledRows, ctx: bentoml.Context, on_error: OnError = "fail"
    ) -> FeedbackResponse:
        """Rows with their true label (the column the model was trained on): scored by the
        served model, measured, and counted for the live-quality alert."""
        response = await self.endpoints.feedback(ctx.request, data, on_error)
        ctx.response.status_code = response.status_code
        return response

    @bentoml.api(route="/explain")
    async def explain(
        self, data: Rows, ctx: bentoml.Context, on_error: OnError = "fail"
    ) -> ExplanationResponse:
        """Why the model answered what it answered: per row the prediction, the explained
        class, `base_value` and `contributions` {feature: value} that add up to the model's
        output (the explained class's probability, or the regression value).

        The /predict bodies (JSON, MLflow forms, CSV, Parquet, Arrow), at most
        AGBENTO_MAX_EXPLAIN_ROWS rows, plus optional `"top": k` (each row's k largest
        contributions, the rest summed as `others`) and `"class": "<class>"` (explained for
        every row; default: each row's predicted class), in the JSON body or the query
        (`?top=3&class=Gentoo`, for file bodies). Needs a key with the `explain` permission.
        """
        response = await self.endpoints.explain(ctx.request, data, on_error)
        ctx.response.status_code = response.status_code
        return response

    async def _answer(self, ctx: bentoml.Context, data: Any, on_error: OnError,
                      shape: AnswerShape) -> Response:
        response = await self.endpoints.respond(ctx.request, data, on_error, shape)
        ctx.response.status_code = response.status_code
        return response

    async def __is_ready__(self) -> bool:
        """/readyz: the model is warmed up and not broken (fused: this worker's own; split:
        the model service answers its /readyz within 5 s)."""
        return await self.served.is_ready()

    async def health(self) -> dict[str, Any]:
        loaded = await self.__is_ready__()
        return {
            "status": "healthy" if loaded else "unhealthy",
            "model_loaded": loaded,
            "model": self.served.card.reference(),
            "cache": self.served.cache.describe(),
        }


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
    max_explain_rows=settings.max_explain_rows,
)
AgBento.add_asgi_middleware(UnroutedErrors)  # the router's plain-text 404/405: our shape
AgBento.add_asgi_middleware(CurrentSchemaDocs, first_tag=card.tag, current=served_rows)
