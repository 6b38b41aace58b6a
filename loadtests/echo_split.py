"""Bare echo, split topology: the framework's ceiling for agbento's split serving.

An API service calls a batchable service through `bentoml.depends`, as service.py does,
with no model, no validation and no middleware. Each request's rows cross the hop as one
string (list[str] items, as service.py's `TabularModel.score` takes them), and come back.

    ECHO_API_WORKERS=1 ECHO_MODEL_WORKERS=1 bentoml serve loadtests.echo_split:EchoApi

Same batching arguments, access log, tracing and runner_connection settings as service.py.
"""

from __future__ import annotations

import json
import os
from typing import Any

import bentoml

from agbento.core.settings import Settings

API_WORKERS = int(os.environ.get("ECHO_API_WORKERS", "1"))
MODEL_WORKERS = int(os.environ.get("ECHO_MODEL_WORKERS", "1"))
# the batcher settings service.py gets by default (its only knobs a bare echo keeps)
DEFAULTS = Settings.model_fields
MAX_BATCH_SIZE: int = DEFAULTS["max_batch_size"].default
MAX_LATENCY_MS: int = DEFAULTS["max_latency_ms"].default


@bentoml.service(
    name="echo-model",
    workers=MODEL_WORKERS,
    logging={"access": {"enabled": False}},
    tracing={"excluded_urls": [".*"]},
    runner_connection={"max_requests": 10**9, "max_age": 1e9},
)
class EchoBatch:
    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=MAX_LATENCY_MS)
    async def score(self, requests: list[str]) -> list[str]:
        return requests


@bentoml.service(
    name="echo",
    workers=API_WORKERS,
    logging={"access": {"enabled": False}},
    tracing={"excluded_urls": [".*"]},
    runner_probe={"enabled": False},
)
class EchoApi:
    echo = bentoml.depends(EchoBatch)

    @bentoml.api(route="/predict")
    async def predict(self, data: list[Any]) -> dict[str, Any]:
        (answer,) = await self.echo.to_async.score([json.dumps(data)])
        return {"predictions": json.loads(answer)}
