"""Overload: beyond a bound on requests in flight, answer 503 + Retry-After at once.

A queue that grows without bound turns overload into timeouts for everyone; refusing the
excess quickly keeps latency for the admitted requests and lets clients back off.
BentoML's own `max_concurrency` answers 429 without Retry-After, hence this guard.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from agbento.core.errors import overloaded
from agbento.core.wire import error_response, request_id_from
from agbento.http.routes import route_for


class InflightLimit:
    """ASGI middleware: at most `limit` requests to guarded routes at once (per API worker)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.inflight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not route_for(scope["path"]).guarded:
            await self.app(scope, receive, send)
            return
        if self.inflight >= self.limit:
            error = overloaded(
                f"{self.inflight} requests in flight, the limit is {self.limit} "
                "(AGBENTO_MAX_INFLIGHT); retry later"
            )
            await error_response(error, request_id_from(Headers(scope=scope)))(
                scope, receive, send)
            return
        self.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1
