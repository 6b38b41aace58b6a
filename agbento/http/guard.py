"""The last line of defence: any exception inside the service becomes an answer at once.

`ErrorGuard` is a pure ASGI layer outside every one of ours (Starlette's
`ServerErrorMiddleware` is the model). Without it an exception escaping our layers got no
answer at all: BentoML 1.4.39's `TimeoutMiddleware` waits only for the first message the
app sends (or its timer), never for the app to fail, so the client waited for the traffic
timeout (60 s) and then got uvicorn's plain-text 500 (see docs/predict.md, "When something
breaks").

For an exception escaping the layers inside it, the guard
- answers 500 `internal_error` in our error shape, with the request id in the header and
  the body and a fixed message (never the exception's text: it may hold input or secrets),
  when the response has not started;
- re-raises when a response has started but not finished, so the server closes the
  connection and the client sees a broken answer instead of waiting;
- logs one ERROR line (request id, path, exception type, traceback) and counts it in
  `agbento_internal_errors_total`.
A bare 500 from a layer inside that is not in our shape (BentoML's own handler for an
exception in its app, or a mounted Starlette app's) is replaced by ours the same way.

Nothing before its `try` reads the request: the guard cannot fail on what it guards.
"""

from __future__ import annotations

import json
import logging
import traceback
import uuid
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agbento.core.errors import ApiError, ErrorCode
from agbento.core.wire import REQUEST_ID_HEADER, request_id_from
from agbento.monitoring.metrics import INTERNAL_ERRORS

logger = logging.getLogger("agbento.core.errors")

INTERNAL_ERROR_MESSAGE = "an internal error occurred; quote the request id"
_REQUEST_ID_KEY = REQUEST_ID_HEADER.lower().encode()


def internal_error() -> ApiError:
    return ApiError(ErrorCode.INTERNAL_ERROR, INTERNAL_ERROR_MESSAGE)


def report_internal_error(request_id: str, method: str, path: str,
                          exc: BaseException | None, **fields: Any) -> None:
    """One ERROR line and the counter; never raises (it runs while handling a failure)."""
    try:
        INTERNAL_ERRORS.inc()
        line = {"request_id": request_id, "method": method, "path": path,
                "exception_type": type(exc).__name__ if exc is not None else None,
                "traceback": "".join(traceback.format_exception(exc)) if exc else None,
                **fields}
        logger.error("internal error", extra={"fields": line})
    except Exception:  # noqa: BLE001, S110 - a failing log must not stop the answer
        pass


def _request_id(scope: Scope) -> str:
    try:
        return request_id_from(Headers(scope=scope))
    except Exception:  # noqa: BLE001 - a malformed scope still gets an answer
        return uuid.uuid4().hex


def _ours(message: Message) -> bool:
    """Our answers carry the request id header; BentoML's and Starlette's bare 500s do not."""
    return any(key.lower() == _REQUEST_ID_KEY for key, _ in message.get("headers", ()))


async def send_internal_error(send: Send, request_id: str) -> None:
    body = json.dumps(internal_error().body(request_id)).encode()
    await send({"type": "http.response.start", "status": 500, "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (_REQUEST_ID_KEY, request_id.encode()),
    ]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class ErrorGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = complete = replaced = False

        async def watch(message: Message) -> None:
            nonlocal started, complete, replaced
            if replaced:
                return  # the body of a bare 500 we already answered for
            if message["type"] == "http.response.start":
                if message["status"] == 500 and not _ours(message):
                    replaced = started = complete = True
                    await send_internal_error(send, _request_id(scope))
                    return
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                complete = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            request_id = _request_id(scope)
            report_internal_error(request_id, scope.get("method", "?"), scope.get("path", "?"),
                                  exc, response_started=started and not replaced)
            if not started:
                await send_internal_error(send, request_id)
            elif not complete:
                raise  # the server closes the connection: a broken answer, not a hang
            # complete: the client has its whole answer already (ours, or the replaced 500)
        else:
            if replaced:  # an inner layer caught its own exception and answered a bare 500
                report_internal_error(
                    _request_id(scope), scope.get("method", "?"), scope.get("path", "?"),
                    None, answered_by="an inner layer (BentoML); its traceback is in its log")
