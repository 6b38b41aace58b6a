"""Bare echo, fused topology: the framework's ceiling for agbento's fused serving.

One service whose batchable endpoint is the public one: concurrent requests merge inside
the worker, with no hop, no model, no validation and no middleware.

    ECHO_WORKERS=2 bentoml serve loadtests.echo_fused:EchoFused

Same batching arguments, access log and tracing settings as service.py.
"""

from __future__ import annotations

import os
from typing import Any

import bentoml

WORKERS = int(os.environ.get("ECHO_WORKERS", str(os.cpu_count() or 1)))
# service.py's defaults (agbento/settings.py: max_batch_size, max_latency_ms)
MAX_BATCH_SIZE = 1_000
MAX_LATENCY_MS = 10_000


@bentoml.service(
    name="echo-fused",
    workers=WORKERS,
    logging={"access": {"enabled": False}},
    tracing={"excluded_urls": [".*"]},
)
class EchoFused:
    # merged requests' rows arrive as one flat list; answers are sliced back by length
    @bentoml.api(route="/predict", batchable=True, max_batch_size=MAX_BATCH_SIZE,
                 max_latency_ms=MAX_LATENCY_MS)
    async def predict(self, data: list[Any]) -> list[Any]:
        return data
