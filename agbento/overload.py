"""Overload: beyond a bound on requests in flight, answer 503 + Retry-After at once.

A queue that grows without bound turns overload into timeouts for everyone; refusing the
excess quickly keeps latency for the admitted requests and lets clients back off.
BentoML's own `max_concurrency` answers 429 without Retry-After, hence this guard.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from agbento.contract import json_response, request_id_from
from agbento.errors import ApiError

RETRY_AFTER_S = 1


def overloaded(message: str) -> ApiError:
    return ApiError(503, "overloaded", message, retry_after_s=RETRY_AFTER_S)


class InflightLimit:
    """ASGI middleware: at most `limit` requests to `paths` at once (per API worker)."""

    def __init__(self, app: ASGIApp, paths: tuple[str, ...], limit: int) -> None:
        self.app = app
        self.paths = frozenset(paths)
        self.limit = limit
        self.inflight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        if self.inflight >= self.limit:
            request_id = request_id_from(Headers(scope=scope))
            error = overloaded(
                f"{self.inflight} requests in flight, the limit is {self.limit} "
                "(AGBENTO_MAX_INFLIGHT); retry later"
            )
            response = json_response(error.body(request_id), 503, request_id,
                                     error.retry_after_s)
            await response(scope, receive, send)
            return
        self.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1
