"""The prediction cache: canonical keys, memory bounds, and Redis that may die at any time."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from agbento.rows.schema import FeatureSchema
from agbento.runtime.cache import CacheConfig, MemoryBackend, PredictionCache
from tests.conftest import ApiKeys
from tests.helpers import GOOD, metric_samples, total
from tests.servers import BentoServer, free_port, redis_server, start_server
from tests.tiny_models import TinyModels

ROOT = Path(__file__).resolve().parent.parent


# -- units --------------------------------------------------------------------------------


def test_equal_rows_share_a_key(tiny_models: TinyModels) -> None:
    schema: FeatureSchema = tiny_models.multiclass.schema
    spellings = [
        {**GOOD, "body_mass_g": 5000},
        {**dict(reversed(list(GOOD.items()))), "body_mass_g": 5000.0},
        {**GOOD, "body_mass_g": "5000", "year": "2008"},
        {**GOOD, "sex": "female", "colour": "ignored"},
    ]
    rows = schema.validate_rows(spellings).rows
    cache = PredictionCache(MemoryBackend(10**6), "m:1", CacheConfig("memory"))
    assert len(set(cache.keys(rows))) == 1
    # null and absent are the same for a nullable feature; another value is another key
    with_null = schema.validate_rows([{**GOOD, "bill_depth_mm": None}]).rows
    absent = schema.validate_rows([{k: v for k, v in GOOD.items() if k != "bill_depth_mm"}])
    assert cache.keys(with_null) == cache.keys(absent.rows) != cache.keys(rows[:1])
    other_model = PredictionCache(MemoryBackend(10**6), "m:2", CacheConfig("memory"))
    assert other_model.keys(rows[:1]) != cache.keys(rows[:1])


def test_memory_backend_ttl_and_bound() -> None:
    async def scenario() -> None:
        backend = MemoryBackend(max_bytes=2000)
        await backend.set_many({f"k{i}": b"x" * 100 for i in range(30)}, ttl_s=60)
        assert backend.bytes <= 2000
        found = await backend.get_many([f"k{i}" for i in range(30)])
        assert found[0] is None and found[-1] == b"x" * 100  # oldest evicted first
        await backend.set_many({"short": b"y"}, ttl_s=0)
        await asyncio.sleep(0.01)
        assert await backend.get_many(["short"]) == [None]

    asyncio.run(scenario())


class StalledBackend(MemoryBackend):
    """A backend that hangs, as a Redis behind a dead network would."""

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        await asyncio.sleep(10)
        return [None] * len(keys)


def test_a_hanging_cache_costs_at_most_its_timeout() -> None:
    async def scenario() -> None:
        cache = PredictionCache(StalledBackend(10**6), "m:1", CacheConfig("memory",
                                                                           timeout_ms=50))
        start = time.perf_counter()
        assert await cache.lookup(["a", "b"]) == [None, None]
        assert time.perf_counter() - start < 0.5
        assert cache.describe()["available"] is False  # bypassed for a while
        start = time.perf_counter()
        assert await cache.lookup(["a"]) == [None]
        assert time.perf_counter() - start < 0.01

    asyncio.run(scenario())


# -- a real redis-server -------------------------------------------------------------------


def lookups(server: BentoServer) -> dict[str, float]:
    samples = metric_samples(server.url)
    return {result: total(samples, "agbento_cache_lookups_total", result=result)
            for result in ("hit", "miss", "error")}


def predict(server: BentoServer, rows: list[dict], key: str | None = None) -> dict:
    headers = {"X-API-Key": key} if key else {}
    response = httpx.post(f"{server.url}/predict", json={"data": rows}, timeout=30,
                          headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in before}


@pytest.mark.integration
def test_redis_cache_end_to_end(tiny_models: TinyModels, api_keys: ApiKeys) -> None:
    port = free_port()
    tag = tiny_models.multiclass.tag
    env = {"AGBENTO_CACHE_URL": f"redis://127.0.0.1:{port}/0", "AGBENTO_CACHE_TTL_S": "3",
           "AGBENTO_API_KEYS_FILE": str(api_keys.file), "AGBENTO_CACHE_MAX_ROWS": "2"}
    rows = [{**GOOD, "body_mass_g": 4000.5 + i} for i in range(3)]
    with redis_server(port), start_server(ROOT, tag, **env) as server:
        assert httpx.get(f"{server.url}/health").json()["cache"]["backend"] == "redis"
        key = api_keys.keys["scorer"]
        before = lookups(server)
        first = predict(server, rows[:2], key)
        second = predict(server, rows[:2], key)
        assert delta(before, lookups(server)) == {"hit": 2, "miss": 2, "error": 0}
        assert second["predictions"] == first["predictions"]
        assert second["probabilities"] == first["probabilities"]
        # part hit, part miss, in order
        before = lookups(server)
        mixed = predict(server, [rows[2], rows[0]], key)
        assert delta(before, lookups(server)) == {"hit": 1, "miss": 1, "error": 0}
        assert mixed["predictions"][1] == first["predictions"][0]
        # requests over AGBENTO_CACHE_MAX_ROWS go straight to the model
        before = lookups(server)
        predict(server, rows, key)
        assert delta(before, lookups(server)) == {"hit": 0, "miss": 0, "error": 0}
        # keys are per model tag
        import redis

        keys = redis.Redis(port=port).keys("*")
        assert keys and all(k.decode().startswith(f"agbento:{tag}:") for k in keys)
        # TTL
        time.sleep(3.5)
        before = lookups(server)
        predict(server, rows[:1], key)
        assert delta(before, lookups(server)) == {"hit": 0, "miss": 1, "error": 0}
        # admin clear, with the admin permission only
        clear = f"{server.url}/admin/cache/clear"
        assert httpx.post(clear).status_code == 401
        assert httpx.post(clear, headers=api_keys.header("scorer")).status_code == 403
        cleared = httpx.post(clear, headers=api_keys.header("admin"))
        assert cleared.status_code == 200 and cleared.json()["cleared"] >= 1
        assert redis.Redis(port=port).keys("*") == []


@pytest.mark.integration
def test_redis_dies_mid_traffic_and_comes_back(tiny_models: TinyModels) -> None:
    port = free_port()
    # one API worker: the counts below are one process's, through one connection pool
    env = {"AGBENTO_CACHE_URL": f"redis://127.0.0.1:{port}/0", "AGBENTO_API_WORKERS": "1"}
    rows = [{**GOOD, "body_mass_g": 3500.5 + i % 20} for i in range(300)]
    with start_server(ROOT, tiny_models.multiclass.tag, **env) as server:
        with redis_server(port) as redis_process:
            with ThreadPoolExecutor(max_workers=16) as pool:
                futures = [pool.submit(predict, server, [row]) for row in rows]
                time.sleep(0.1)
                redis_process.kill()  # -9 while requests fly
                answers = [f.result() for f in futures]  # predict() asserts every 200
        assert len(answers) == 300
        assert lookups(server)["error"] > 0
        # Redis back on the same port: used again after the short backoff
        with redis_server(port):
            time.sleep(2.5)
            predict(server, rows[:1])
            before = lookups(server)
            predict(server, rows[:1])
            assert delta(before, lookups(server)) == {"hit": 1, "miss": 0, "error": 0}
        assert "Traceback" not in server.log()
