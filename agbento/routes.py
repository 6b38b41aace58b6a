"""One route table: what every path of the API service needs from each ASGI layer.

Every middleware asks `route_for(path)` instead of keeping its own list of paths, so a new
endpoint is one line here: its permission, whether it is logged and counted, whether its
body goes through the prediction intake and the in-flight bound. Paths outside the table
need a key (closed by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Permission(StrEnum):
    PREDICT = "predict"
    MODEL_INFO = "model_info"
    ADMIN = "admin"


@dataclass(frozen=True)
class Route:
    """What one path needs. `permission=None` is open to anyone."""

    permission: Permission | None
    # one request log line and the request metrics (probes are called every few seconds)
    logged: bool = True
    # a prediction body: read within limits and made canonical before BentoML parses it
    prediction: bool = False
    # counted against AGBENTO_MAX_INFLIGHT (refused with 503 beyond it)
    guarded: bool = False
    # /metrics is open unless AGBENTO_METRICS_AUTH asks for the admin permission
    metrics: bool = False

    def needs(self, metrics_auth: bool) -> Permission | None:
        if self.metrics:
            return Permission.ADMIN if metrics_auth else None
        return self.permission


PREDICTION = Route(Permission.PREDICT, prediction=True, guarded=True)
PROBE = Route(None, logged=False)
DOCS = Route(None)

ROUTES: dict[str, Route] = {
    "/predict": PREDICTION,
    "/predict_proba": PREDICTION,
    "/model/info": Route(Permission.MODEL_INFO),
    "/admin/cache/clear": Route(Permission.ADMIN),
    "/health": Route(None),
    "/livez": PROBE,
    "/readyz": PROBE,
    "/healthz": PROBE,
    "/metrics": Route(None, logged=False, metrics=True),
    "/": DOCS,
    "/docs.json": DOCS,
    "/schema.json": DOCS,
}
# Paths under these prefixes follow the prefix's rule (first match wins).
PREFIXES: tuple[tuple[str, Route], ...] = (
    ("/admin/", Route(Permission.ADMIN)),
    ("/static", Route(None)),
)
# Anything else we may add later is closed by default.
UNKNOWN = Route(Permission.MODEL_INFO)

PREDICTION_PATHS: tuple[str, ...] = tuple(p for p, r in ROUTES.items() if r.prediction)


def route_for(path: str) -> Route:
    if (route := ROUTES.get(path)) is not None:
        return route
    for prefix, rule in PREFIXES:
        if path.startswith(prefix):
            return rule
    return UNKNOWN


def endpoint_label(path: str) -> str:
    """The bounded `endpoint` label of our metrics: the path if it is in the table."""
    return path if path in ROUTES else "other"
