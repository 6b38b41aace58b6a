"""Per-key rate limit: the bucket's arithmetic, one bucket shared by many workers through a
real Redis, fail-open when Redis dies, and the total admitted by a two-worker server."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY

from agbento.core.settings import Settings, SettingsError
from agbento.http.ratelimit import (
    KEY_PREFIX,
    LocalRateLimit,
    RateLimitConfig,
    SharedRateLimit,
    TokenBucket,
    open_rate_limit,
    redacted,
)
from agbento.runtime import cache
from tests.conftest import ApiKeys
from tests.helpers import metric_samples, total
from tests.servers import free_port, redis_server, start_server
from tests.tiny_models import TinyModels

ROOT = Path(__file__).resolve().parent.parent


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the bucket, in process ----------------------------------------------------------------


def test_bucket_allows_a_burst_then_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2, burst=3, clock=clock)
    assert [bucket.take("a") for _ in range(3)] == [0, 0, 0]
    assert bucket.take("a") == pytest.approx(0.5)  # one token takes 1/rate
    clock.now += 0.25
    assert bucket.take("a") == pytest.approx(0.25)
    clock.now += 0.25
    assert bucket.take("a") == 0
    assert bucket.take("b") == 0  # another key has its own bucket
    clock.now += 3600  # a long idle refills to the burst, not beyond
    assert [bucket.take("a") for _ in range(4)].count(0) == 3


def test_bucket_ignores_a_clock_that_goes_back() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=1, burst=1, clock=clock)
    assert bucket.take("a") == 0
    clock.now -= 10
    assert bucket.take("a") == pytest.approx(1)


def config(**overrides: object) -> RateLimitConfig:
    return RateLimitConfig(**{"rps": 10, "burst": 50, **overrides})


def test_without_redis_the_limit_is_divided_by_the_workers(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="agbento.http.ratelimit"):
        limit = open_rate_limit(config(api_workers=2))
    assert isinstance(limit, LocalRateLimit)
    assert (limit.bucket.rate, limit.bucket.burst) == (5, 25)
    assert "divided by the 2 API workers" in caplog.text
    single = open_rate_limit(config(api_workers=1))
    assert isinstance(single, LocalRateLimit)
    assert (single.bucket.rate, single.bucket.burst) == (10, 50)
    assert open_rate_limit(config(rps=0)) is None
    # a burst smaller than the workers still lets one request through per worker
    assert open_rate_limit(config(burst=1, api_workers=4)).bucket.burst == 1


def test_where_the_buckets_live() -> None:
    redis_url = "redis://:hunter2@10.0.0.5:6379/0"
    assert config(cache_url=redis_url).store == redis_url  # the cache's Redis by default
    assert config(cache_url="memory").store == "local"
    assert config(cache_url=redis_url, url="local").store == "local"
    assert config(cache_url="memory", url="redis://r:6379/1").store == "redis://r:6379/1"
    shared = open_rate_limit(config(cache_url=redis_url, api_workers=4))
    assert isinstance(shared, SharedRateLimit) and (shared.rate, shared.burst) == (10, 50)
    assert "hunter2" not in shared.describe() and "10.0.0.5:6379/0" in shared.describe()
    assert redacted("rediss://user:pw@host:1/2") == "rediss://host:1/2"
    with pytest.raises(SettingsError, match="AGBENTO_RATE_LIMIT_URL"):
        Settings.from_env({"AGBENTO_RATE_LIMIT_URL": "memcached://x"})
    assert Settings.from_env({"AGBENTO_RATE_LIMIT_URL": "local"}).rate_limit_url == "local"


# -- a real redis-server -------------------------------------------------------------------


def worker_limit(port: int, rate: float, burst: int) -> SharedRateLimit:
    """What one API worker builds: its own client and pool, the shared bucket."""
    limit = open_rate_limit(RateLimitConfig(rps=1, burst=1, url=f"redis://127.0.0.1:{port}/0",
                                            timeout_ms=200))
    assert isinstance(limit, SharedRateLimit)
    limit.rate, limit.burst = rate, burst  # below 1/s, so no refill during the test
    limit.ttl_ms = 60_000
    return limit


def fail_open_count() -> float:
    return REGISTRY.get_sample_value("agbento_rate_limit_fail_open_total") or 0.0


def test_two_workers_share_one_bucket() -> None:
    port = free_port()

    async def scenario() -> None:
        workers = [worker_limit(port, rate=0.001, burst=10) for _ in range(2)]
        waits = [await workers[i % 2].take("k") for i in range(30)]
        admitted = [i % 2 for i, wait in enumerate(waits) if wait == 0]
        assert len(admitted) == 10 and set(admitted) == {0, 1}  # both workers drew from it
        assert all(wait > 100 for wait in waits if wait)  # ~1/rate: a Retry-After to send
        assert await workers[0].take("other") == 0  # per key
        # separate buckets, as before this change, would have let 20 through
        local = [LocalRateLimit(0.001, 10) for _ in range(2)]
        local_waits = [await local[i % 2].take("k") for i in range(30)]
        assert local_waits.count(0) == 20

    before = fail_open_count()
    with redis_server(port):
        asyncio.run(scenario())
        import redis

        client = redis.Redis(host="127.0.0.1", port=port)
        assert 0 < client.pttl(KEY_PREFIX + "k") <= 60_000  # idle buckets expire
        assert float(client.hget(KEY_PREFIX + "k", "tokens")) < 1
    assert fail_open_count() == before


def test_fail_open_when_redis_dies_and_back_when_it_returns(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(cache, "BACKOFF_S", 0.3)
    port = free_port()

    async def take_n(limit: SharedRateLimit, n: int) -> list[float]:
        return [await limit.take("k") for _ in range(n)]

    with redis_server(port) as server:
        limit = worker_limit(port, rate=0.001, burst=2)
        loop = asyncio.new_event_loop()
        try:
            assert loop.run_until_complete(take_n(limit, 3)).count(0) == 2
            server.kill()
            before = fail_open_count()
            with caplog.at_level(logging.WARNING, logger="agbento.http.ratelimit"):
                waits = loop.run_until_complete(take_n(limit, 5))
            assert waits == [0] * 5  # admitted, every one of them counted
            assert fail_open_count() - before == 5
            assert len([r for r in caplog.records if "fail-open" in r.getMessage()]) == 1
            assert not limit.backoff.available()  # tripped: Redis is left alone a while
            # Redis back (empty): the limit holds again once the backoff is over
            server.start()
            time.sleep(0.4)
            assert loop.run_until_complete(take_n(limit, 4)).count(0) == 2
        finally:
            loop.close()


# -- two API workers of a real bentoml serve -----------------------------------------------


@pytest.mark.integration
def test_two_api_workers_admit_one_limit(tiny_models: TinyModels, api_keys: ApiKeys) -> None:
    port = free_port()
    rate, burst, calls = 1, 20, 80
    env = {"AGBENTO_API_KEYS_FILE": str(api_keys.file), "AGBENTO_API_WORKERS": "2",
           "AGBENTO_RATE_LIMIT_URL": f"redis://127.0.0.1:{port}/0",
           "AGBENTO_RATE_LIMIT_RPS": str(rate), "AGBENTO_RATE_LIMIT_BURST": str(burst),
           # this test is about sharing: a deadline a loaded test machine keeps (fail-open on
           # a missed deadline is tested above)
           "AGBENTO_RATE_LIMIT_TIMEOUT_MS": "2000"}
    with redis_server(port), start_server(ROOT, tiny_models.multiclass.tag, **env) as server:
        headers = api_keys.header("reader")

        def call(_: int) -> int:  # a new connection each time, so both workers take calls
            return httpx.get(f"{server.url}/model/info", headers=headers, timeout=30).status_code

        start = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = Counter(pool.map(call, range(calls)))
        elapsed = time.monotonic() - start
        assert set(statuses) == {200, 429}, statuses
        # a check that missed its deadline admits its request (a loaded machine); counted
        unchecked = total(metric_samples(server.url), "agbento_rate_limit_fail_open_total")
        assert unchecked < burst // 2, unchecked
        # one bucket: the burst plus what refilled meanwhile (two buckets would admit 40+)
        ceiling = burst + math.ceil(elapsed * rate) + 1 + unchecked
        assert burst <= statuses[200] <= ceiling, (statuses, elapsed, unchecked)
        print(f"two API workers, one limit: {statuses[200]} of {calls} admitted in "
              f"{elapsed:.1f} s (burst {burst}, {rate}/s; {unchecked:g} admitted unchecked)")
        import redis

        names = {c["name"] for c in redis.Redis(host="127.0.0.1", port=port).client_list()}
        workers = {n.rsplit("-", 1)[1] for n in names if n.startswith("agbento-ratelimit-")}
        assert len(workers) == 2, names  # both API workers checked keys against Redis
        log = server.log()
        assert "shared by every API worker through redis://127.0.0.1" in log
        assert "Traceback" not in log
