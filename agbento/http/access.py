"""Who may call what: the ASGI gate in front of every route of the API service.

The route table (`agbento.http.routes`) says which permission a path needs: probes and the API
docs stay open so orchestrators and people can see the service; /metrics is open unless
AGBENTO_METRICS_AUTH is set. Everything else needs a key with the route's permission, and
a request without one never reaches the body parser, let alone the model.
"""

from __future__ import annotations

import logging
from pathlib import Path

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from agbento.core.errors import ApiError, ErrorCode
from agbento.core.wire import error_response, request_id_from
from agbento.http.auth import ApiKeyRing, presented_key
from agbento.http.ratelimit import RateLimitConfig, open_rate_limit
from agbento.http.routes import route_for

logger = logging.getLogger("agbento.http.access")


class AccessGate:
    def __init__(self, app: ASGIApp, keys_file: str, rate_limit: RateLimitConfig,
                 metrics_auth: bool) -> None:
        self.app = app
        self.ring = ApiKeyRing(Path(keys_file)) if keys_file else None
        # built here, in each API worker: limits are per key, so only with keys
        self.limit = open_rate_limit(rate_limit) if self.ring is not None else None
        self.metrics_auth = metrics_auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.ring is None:
            await self.app(scope, receive, send)
            return
        permission = route_for(scope["path"]).needs(self.metrics_auth)
        if permission is None:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            key = self.ring.authenticate(presented_key(headers))
            self.ring.authorize(key, permission)
            if self.limit is not None and (wait := await self.limit.take(key.id)):
                raise ApiError(ErrorCode.RATE_LIMITED,
                               f"API key {key.id!r} is over its rate limit; retry later",
                               retry_after_s=max(1, round(wait + 0.5)))
        except ApiError as error:
            await error_response(error, request_id_from(headers))(scope, receive, send)
            return
        scope.setdefault("state", {})["key_id"] = key.id
        await self.app(scope, receive, send)
