"""One structured log line and the request metrics for every API request.

Outermost of our ASGI layers: it assigns the request id every inner layer uses, times the
request, and reads the outcome from the response itself (status, and for an error the
`code` of our error body), so the layers that reject need not log anything themselves.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agbento.core.errors import ErrorCode
from agbento.core.wire import request_id_from
from agbento.http.routes import endpoint_label, route_for
from agbento.monitoring.metrics import REQUEST_DURATION, REQUESTS, ROWS, VALIDATION_FAILURES

logger = logging.getLogger("agbento.requests")
MAX_ERROR_BODY = 8192


class RequestLog:
    def __init__(self, app: ASGIApp, model_tag: str | Callable[[], str]) -> None:
        self.app = app
        # the version being served (a callable: it changes when a new version is swapped in)
        self.model_tag = model_tag if callable(model_tag) else lambda: model_tag

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not route_for(scope["path"]).logged:
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(Headers(scope=scope))
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"x-request-id"]
        state = scope.setdefault("state", {})
        scope["headers"] = [*headers, (b"x-request-id", request_id.encode())]
        start = time.perf_counter()
        status = 500
        error_body = bytearray()

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status >= 400:
                room = MAX_ERROR_BODY - len(error_body)
                error_body.extend(message.get("body", b"")[: max(room, 0)])
            await send(message)

        try:
            await self.app(scope, receive, observe)
        except Exception as exc:
            # ErrorGuard (outside) answers it: say so here, the error body is not sent yet
            if not error_body:
                error_body.extend(json.dumps({"error": {
                    "code": ErrorCode.INTERNAL_ERROR.value,
                    "message": type(exc).__name__}}).encode())
            raise
        finally:
            elapsed = time.perf_counter() - start
            self._record(scope, state, request_id, status, elapsed, bytes(error_body))

    def _record(self, scope: Scope, state: dict, request_id: str, status: int,
                elapsed: float, error_body: bytes) -> None:
        endpoint = endpoint_label(scope["path"])
        key_id = state.get("key_id", "-")
        rows = state.get("rows", 0)
        REQUESTS.labels(endpoint=endpoint, status=str(status), key_id=key_id).inc()
        REQUEST_DURATION.labels(endpoint=endpoint).observe(elapsed)
        line = {"request_id": request_id, "key_id": key_id, "method": scope["method"],
                "endpoint": scope["path"], "status": status, "rows": rows,
                "latency_ms": round(elapsed * 1000, 2),
                # the version that answered, else the one served now
                "model": state.get("model") or self.model_tag()}
        if status < 400:
            ROWS.labels(endpoint=endpoint, key_id=key_id).inc(rows)
        else:
            # an inner layer that rewrote the body (V2's error shape) left the original's
            code, reason = state.get("error") or error_of(error_body)
            line.update(error=code, reason=reason)
            if 400 <= status < 500:
                VALIDATION_FAILURES.labels(reason=code).inc()
        logger.info("request", extra={"fields": line})


def error_of(body: bytes) -> tuple[str, str]:
    try:
        error = json.loads(body)["error"]
        if isinstance(error, dict):
            return str(error.get("code", "unknown")), str(error.get("message", ""))[:300]
        return "unknown", str(error)[:300]
    except (ValueError, KeyError, TypeError):
        return "unknown", body[:200].decode("utf-8", "replace")
