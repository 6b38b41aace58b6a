"""HTTP wiring of the Open Inference Protocol V2 and KServe V1: thin, the codecs are in v2.py.

The handlers run in the API service's mounted ASGI app (BentoML's `@bentoml.api` routes are
POST-only with fixed paths) and score through the service's own `score_rows`, the path
`/predict` takes: same validation, cache, batching, model service, metrics. Keys, the
in-flight limit and the request log are the service's ASGI layers, as for every route.
`ProtocolErrors` gives every error on these paths, whichever layer answered it, the
protocols' shape `{"error": "message"}`.
"""

from __future__ import annotations

import json
from typing import Any

import bentoml
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agbento.core.errors import ApiError
from agbento.core.settings import get_settings
from agbento.core.wire import (
    MODEL_HEADER,
    REQUEST_ID_HEADER,
    error_response,
    json_response,
    request_id_from,
)
from agbento.http.intake import read_body
from agbento.http.request_log import error_of
from agbento.http.routes import route_for
from agbento.models.store import ModelCard
from agbento.protocols.v2 import (
    HEADER_LENGTH,
    ProtocolModel,
    decode_request,
    decode_v1_request,
    encode_response,
    encode_v1_explanations,
    encode_v1_response,
    error_message,
    server_metadata,
)
from agbento.runtime.explaining import explanation_records
from agbento.runtime.served import ServedModel

# Longest error body we rewrite (ours are a few KB at most: details are capped).
MAX_ERROR_BODY = 256 * 1024


async def server_meta(request: Request) -> JSONResponse:
    return JSONResponse(server_metadata())


async def server_live(request: Request) -> JSONResponse:
    return JSONResponse({"live": True})


async def _model_loaded() -> bool:
    return bool((await bentoml.get_current_service().health())["model_loaded"])


async def server_ready(request: Request) -> JSONResponse:
    ready = await _model_loaded()
    return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


async def model_metadata(request: Request) -> Response:
    return await _answer(request, _metadata)


async def _metadata(request: Request, request_id: str) -> Response:
    protocol = _target(request)
    return json_response(protocol.metadata(), 200, request_id)


async def model_ready(request: Request) -> Response:
    return await _answer(request, _ready)


async def _ready(request: Request, request_id: str) -> Response:
    protocol = _target(request)
    ready = await _model_loaded()
    return json_response({"name": protocol.name, "ready": ready}, 200 if ready else 503,
                         request_id)


async def infer(request: Request) -> Response:
    return await _answer(request, _infer)


async def _infer(request: Request, request_id: str) -> Response:
    served = _served(request)  # once: this request's version from here to its answer
    protocol = _target(request, served)
    settings = get_settings()
    body = await read_body(request.headers, request.receive, settings.max_body_bytes,
                           decompress=True)
    decoded = decode_request(body, request.headers.get(HEADER_LENGTH), protocol,
                             served.contract.max_rows)
    request.state.rows = len(decoded.records)
    scored = await served.score_rows(decoded.records, request_id)
    columns = scored.columns  # the model's arrays, no JSON, when it answered in this process
    probabilities = ({key: column.to_pylist() for key, column in
                      (columns.probabilities or {}).items()}
                     if protocol.classification else None)
    encoded = encode_response(protocol, decoded, request_id, columns.predictions.to_pylist(),
                              probabilities)
    return Response(encoded.body, headers={**encoded.headers, REQUEST_ID_HEADER: request_id,
                                           MODEL_HEADER: served.tag},
                    media_type=encoded.media_type)


async def v1_predict(request: Request) -> Response:
    return await _answer(request, _v1_predict)


async def _v1_predict(request: Request, request_id: str) -> Response:
    served = _served(request)
    protocol = _target(request, served)
    body = await read_body(request.headers, request.receive, get_settings().max_body_bytes,
                           decompress=True)
    records = decode_v1_request(body, protocol, served.contract.max_rows)
    request.state.rows = len(records)
    scored = await served.score_rows(records, request_id)
    response = json_response(encode_v1_response(scored.prediction_values), 200, request_id)
    response.headers[MODEL_HEADER] = served.tag
    return response


async def v1_explain(request: Request) -> Response:
    return await _answer(request, _v1_explain)


async def _v1_explain(request: Request, request_id: str) -> Response:
    """KServe V1's `:explain`: `{"instances": [...]}` -> `{"explanations": [...]}`, each
    /explain's row object (the predicted class explained, every feature)."""
    served = _served(request)
    protocol = _target(request, served)
    body = await read_body(request.headers, request.receive, get_settings().max_body_bytes,
                           decompress=True)
    limit = served.contract.explain_limit
    records = decode_v1_request(body, protocol, limit.rows, limit.variable)
    request.state.rows = len(records)
    explained = await served.explain_rows(records, request_id)
    answer = explanation_records(explained.table, served.card.schema.names)
    response = json_response(encode_v1_explanations(answer), 200, request_id)
    response.headers[MODEL_HEADER] = served.tag
    return response


async def v1_model(request: Request) -> Response:
    return await _answer(request, _ready)


def _served(request: Request) -> ServedModel:
    served: ServedModel = bentoml.get_current_service().served
    request.state.model = served.tag
    return served


def _target(request: Request, served: ServedModel | None = None) -> ProtocolModel:
    """The served version's protocol view, or 404 for another name or version."""
    protocol = protocol_of((served or _served(request)).card)
    protocol.check_target(request.path_params["name"], request.path_params.get("version"))
    return protocol


# V2's view of the versions served lately, by tag (a swap brings one more)
_PROTOCOLS: dict[str, ProtocolModel] = {}
_PROTOCOLS_KEPT = 4


def protocol_of(card: ModelCard) -> ProtocolModel:
    """V2's view of a stored model, built once per version."""
    protocol = _PROTOCOLS.get(card.tag)
    if protocol is None:
        protocol = ProtocolModel.of(card, get_settings().served_model_name)
        while len(_PROTOCOLS) >= _PROTOCOLS_KEPT:
            _PROTOCOLS.pop(next(iter(_PROTOCOLS)))
        _PROTOCOLS[card.tag] = protocol
    return protocol


async def _answer(request: Request, handler: Any) -> Response:
    request_id = request_id_from(request.headers)
    try:
        return await handler(request, request_id)
    except ApiError as error:
        return error_response(error, request_id)


def protocol_routes() -> list[Route]:
    """V2 (and KServe V1) routes, for the service's mounted Starlette app."""
    return [
        Route("/v2", server_meta),
        Route("/v2/health/live", server_live),
        Route("/v2/health/ready", server_ready),
        Route("/v2/models/{name}", model_metadata),
        Route("/v2/models/{name}/versions/{version}", model_metadata),
        Route("/v2/models/{name}/ready", model_ready),
        Route("/v2/models/{name}/versions/{version}/ready", model_ready),
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/infer", infer, methods=["POST"]),
        # before /v1/models/{name}, whose {name} would also match "x:predict"
        Route("/v1/models/{name}:predict", v1_predict, methods=["POST"]),
        Route("/v1/models/{name}:explain", v1_explain, methods=["POST"]),
        Route("/v1/models/{name}", v1_model),
    ]


class ProtocolErrors:
    """ASGI middleware: on V2 and V1 paths an error answer becomes `{"error": "message"}`.

    Our error body's code, message and row/field details become one message (clients such as
    tritonclient show only that string); a 422 becomes the protocols' 400. Placed inside the
    request log, which reads the original code from `state["error"]`.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not route_for(scope["path"]).protocol:
            await self.app(scope, receive, send)
            return
        noun = "input" if scope["path"].startswith("/v2") else "field"
        start: Message | None = None
        body = bytearray()

        async def rewrite(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                start = message
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            body.extend(message.get("body", b"")[: max(MAX_ERROR_BODY - len(body), 0)])
            if message.get("more_body", False):
                return
            original = bytes(body)
            scope.setdefault("state", {})["error"] = error_of(original)
            rendered = json.dumps({"error": error_message(original, noun)}).encode()
            headers = [(k, v) for k, v in start["headers"]
                       if k.lower() not in (b"content-length", b"content-type")]
            headers += [(b"content-type", b"application/json"),
                        (b"content-length", str(len(rendered)).encode())]
            status = 400 if start["status"] == 422 else start["status"]
            await send({**start, "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": rendered, "more_body": False})

        await self.app(scope, receive, rewrite)

