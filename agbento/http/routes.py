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
    # per-row contributions say more about the model than its predictions do (enough to
    # copy it faster): a permission of its own, which a predict key does not carry
    EXPLAIN = "explain"
    MODEL_INFO = "model_info"
    ADMIN = "admin"
    FEEDBACK = "feedback"


@dataclass(frozen=True)
class Route:
    """What one path needs. `permission=None` is open to anyone."""

    permission: Permission | None
    # one request log line and the request metrics (probes are called every few seconds)
    logged: bool = True
    # a prediction body: read within limits and made canonical before BentoML parses it
    prediction: bool = False
    # an explanation: its body may also hold `top` and `class` (or its query), and its rows
    # are bounded by AGBENTO_MAX_EXPLAIN_ROWS
    explanation: bool = False
    # counted against AGBENTO_MAX_INFLIGHT (refused with 503 beyond it)
    guarded: bool = False
    # /metrics is open unless AGBENTO_METRICS_AUTH asks for the admin permission
    metrics: bool = False
    # Open Inference Protocol V2 / KServe V1: errors answer in the protocols' shape
    protocol: bool = False
    # the `endpoint` metrics label when the path itself is unbounded (a model name in it)
    label: str | None = None

    def needs(self, metrics_auth: bool) -> Permission | None:
        if self.metrics:
            return Permission.ADMIN if metrics_auth else None
        return self.permission


PREDICTION = Route(Permission.PREDICT, prediction=True, guarded=True)
EXPLANATION = Route(Permission.EXPLAIN, prediction=True, guarded=True, explanation=True)
PROBE = Route(None, logged=False)
DOCS = Route(None)

ROUTES: dict[str, Route] = {
    "/predict": PREDICTION,
    "/predict_proba": PREDICTION,
    "/feedback": Route(Permission.FEEDBACK, prediction=True, guarded=True),
    "/explain": EXPLANATION,
    "/model/info": Route(Permission.MODEL_INFO),
    "/admin/cache/clear": Route(Permission.ADMIN),
    "/admin/model/reload": Route(Permission.ADMIN),
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

# Open Inference Protocol V2 and KServe V1 (agbento/protocols/endpoints.py): the model's name is in
# the path, so these routes are matched by their shape. Health and readiness are open like
# the probes, model metadata needs model_info, inference needs predict.
V2_SERVER = Route(None, protocol=True, label="/v2/metadata")
V2_HEALTH = Route(None, logged=False, protocol=True)
V2_METADATA = Route(Permission.MODEL_INFO, protocol=True, label="/v2/metadata")
V2_MODEL_READY = Route(None, protocol=True, label="/v2/metadata")
V2_INFER = Route(Permission.PREDICT, guarded=True, protocol=True, label="/v2/infer")
V1_MODEL = Route(None, protocol=True, label="/v2/metadata")  # KServe V1's readiness
V1_PREDICT = Route(Permission.PREDICT, guarded=True, protocol=True, label="/v1/predict")
V1_EXPLAIN = Route(Permission.EXPLAIN, guarded=True, protocol=True, label="/v1/explain")


def _protocol_route(path: str) -> Route | None:
    if path == "/v2":
        return V2_SERVER
    if path in ("/v2/health/live", "/v2/health/ready"):
        return V2_HEALTH
    if path.startswith("/v2/models/"):
        if path.endswith("/infer"):
            return V2_INFER
        return V2_MODEL_READY if path.endswith("/ready") else V2_METADATA
    if path.startswith("/v2/"):  # the rest of the protocol (repository, ...): not served
        return V2_METADATA
    if path.startswith("/v1/models/"):
        if path.endswith(":predict"):
            return V1_PREDICT
        return V1_EXPLAIN if path.endswith(":explain") else V1_MODEL
    return None

PREDICTION_PATHS: tuple[str, ...] = tuple(p for p, r in ROUTES.items() if r.prediction)


def route_for(path: str) -> Route:
    if (route := ROUTES.get(path)) is not None:
        return route
    if (route := _protocol_route(path)) is not None:
        return route
    for prefix, rule in PREFIXES:
        if path.startswith(prefix):
            return rule
    return UNKNOWN


def endpoint_label(path: str) -> str:
    """The bounded `endpoint` label of our metrics: the path if it is in the table, else
    its route's label (V2/V1 paths hold a model name), else "other"."""
    return path if path in ROUTES else route_for(path).label or "other"
