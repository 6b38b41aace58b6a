"""Beyond capacity: 503 + Retry-After at once, no hang, no crash, and recovery."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.helpers import penguin_rows
from tests.servers import start_server
from tests.tiny_models import TinyModels

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration


def test_overload_is_refused_quickly_and_recovers(tiny_models: TinyModels) -> None:
    rows = penguin_rows("species", 1000)
    with start_server(ROOT, tiny_models.multiclass.tag, AGBENTO_MAX_INFLIGHT="2") as server:

        def send(_: int) -> httpx.Response:
            return httpx.post(f"{server.url}/predict", json={"data": rows}, timeout=60)

        with ThreadPoolExecutor(max_workers=24) as pool:
            responses = list(pool.map(send, range(48)))
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {200, 503}, statuses
        assert 200 in statuses and 503 in statuses
        refused = next(r for r in responses if r.status_code == 503)
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "overloaded"
        assert refused.elapsed.total_seconds() < 5  # refused, not queued
        # load gone: served at once again, and still healthy
        assert send(0).status_code == 200
        assert httpx.get(f"{server.url}/health").json()["status"] == "healthy"
        assert server.process.poll() is None
