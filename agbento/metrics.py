"""Our Prometheus metrics, beside BentoML's own in /metrics.

Defined once at import; BentoML sets PROMETHEUS_MULTIPROC_DIR before it imports the
service, so every worker's values are merged in /metrics (BENTOML-NOTES.md).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

CACHE_LOOKUPS = Counter(
    "agbento_cache_lookups",
    "Prediction cache lookups, per row",
    ["result"],  # hit | miss | error
)
CACHE_LATENCY = Histogram(
    "agbento_cache_latency_seconds",
    "Time spent in the prediction cache per request",
    ["operation"],  # lookup | store
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
)
