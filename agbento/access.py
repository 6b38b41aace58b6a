"""Who may call what: the ASGI gate in front of every route of the API service.

Probes (/livez, /readyz, /healthz, /health) and the API docs stay open so orchestrators and
people can see the service; /metrics is open unless AGBENTO_METRICS_AUTH is set. Everything
else needs a key with the route's permission, and a request without one never reaches
the body parser, let alone the model.
"""

from __future__ import annotations

import logging
from pathlib import Path

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from agbento.auth import ApiKeyRing, TokenBucket, presented_key
from agbento.contract import json_response, request_id_from
from agbento.errors import ApiError

logger = logging.getLogger("agbento.access")

OPEN_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/health", "/", "/docs.json",
                        "/schema.json", "/v2"})


def permission_for(path: str, metrics_auth: bool) -> str | None:
    """The permission a path needs; None when it is open."""
    if path in ("/predict", "/predict_proba"):
        return "predict"
    if path.startswith(("/v2/", "/v1/")):
        return protocol_permission(path)
    if path == "/model/info":
        return "model_info"
    if path.startswith("/admin/"):
        return "admin"
    if path == "/metrics":
        return "admin" if metrics_auth else None
    if path in OPEN_PATHS or path.startswith("/static"):
        return None
    return "model_info"  # anything else we may add later is closed by default


def protocol_permission(path: str) -> str | None:
    """Open Inference Protocol V2 and KServe V1: health and readiness are open like the
    probes, model metadata needs model_info, inference needs predict."""
    if path.endswith(("/infer", ":predict")):
        return "predict"
    if path in ("/v2/health/live", "/v2/health/ready") or path.endswith("/ready"):
        return None
    if path.startswith("/v1/models/"):
        return None  # GET /v1/models/{name} is KServe V1's readiness
    return "model_info"


class AccessGate:
    def __init__(self, app: ASGIApp, keys_file: str, rate_limit_rps: int,
                 rate_limit_burst: int, metrics_auth: bool) -> None:
        self.app = app
        self.ring = ApiKeyRing(Path(keys_file)) if keys_file else None
        self.bucket = TokenBucket(rate_limit_rps, rate_limit_burst) if rate_limit_rps else None
        self.metrics_auth = metrics_auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.ring is None:
            await self.app(scope, receive, send)
            return
        permission = permission_for(scope["path"], self.metrics_auth)
        if permission is None:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            key = self.ring.authenticate(presented_key(headers))
            self.ring.authorize(key, permission)
            if self.bucket is not None and (wait := self.bucket.take(key.id)):
                raise ApiError(429, "rate_limited",
                               f"API key {key.id!r} is over its rate limit; retry later",
                               retry_after_s=max(1, round(wait + 0.5)))
        except ApiError as error:
            request_id = request_id_from(headers)
            response = json_response(error.body(request_id), error.status, request_id,
                                     error.retry_after_s)
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["key_id"] = key.id
        await self.app(scope, receive, send)
