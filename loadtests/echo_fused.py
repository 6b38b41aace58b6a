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

from agbento.core.settings import Settings

WORKERS = int(os.environ.get("ECHO_WORKERS", str(os.cpu_count() or 1)))
# the batcher settings service.py gets by default (its only knobs a bare echo keeps)
DEFAULTS = Settings.model_fields
MAX_BATCH_SIZE: int = DEFAULTS["max_batch_size"].default
MAX_LATENCY_MS: int = DEFAULTS["max_latency_ms"].default


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
