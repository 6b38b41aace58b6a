"""Per-key request rate: one token bucket per API key id, the same for every API worker.

Each API worker is its own process, so buckets held in memory are per worker: with N workers
a key would get N times its limit. With a Redis to share (AGBENTO_RATE_LIMIT_URL, or by
default the cache's Redis) every request runs one atomic script on a bucket kept in Redis
(a hash with a TTL, on Redis' own clock), so all workers, and all replicas pointed at the
same Redis, draw from one bucket. Without Redis each worker keeps its own bucket with the
limit divided by the number of workers, and says so at start.

The limit is never a reason to fail or to wait: a Redis call has a short deadline
(AGBENTO_RATE_LIMIT_TIMEOUT_MS), and when it fails the request is admitted (fail-open, counted in
agbento_rate_limit_fail_open_total, logged at most once a minute). After a few failures in a
row Redis is left alone for a few seconds, every request meanwhile admitted and counted.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from agbento.core.settings import Settings
from agbento.monitoring.metrics import RATE_LIMIT_FAIL_OPEN
from agbento.runtime.cache import Backoff, is_redis_url, redis_client

logger = logging.getLogger("agbento.http.ratelimit")

KEY_PREFIX = "agbento:ratelimit:"
TRIP_AFTER = 3  # failed checks in a row before Redis is left alone for cache.BACKOFF_S

# KEYS[1]: the bucket (hash: tokens, ts). ARGV: rate per second, burst, TTL in ms.
# Returns the seconds until a token is back, as a string ("0" when the request may pass).
# The same arithmetic as TokenBucket.take, on the Redis server's clock (all workers and
# hosts see one clock).
TAKE_SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local last = tonumber(state[2])
if tokens == nil or last == nil then
  tokens = burst
  last = now
end
tokens = math.min(burst, tokens + math.max(0, now - last) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return tostring(wait)
"""


class TokenBucket:
    """Per-key request rate: `rate` per second on average, bursts up to `burst`."""

    def __init__(self, rate: float, burst: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst = rate, burst
        self.clock = clock
        self.state: dict[str, tuple[float, float]] = {}

    def take(self, key_id: str) -> float:
        """0 when allowed; else the seconds until a token is back."""
        now = self.clock()
        tokens, last = self.state.get(key_id, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + max(0.0, now - last) * self.rate)
        if tokens >= 1:
            self.state[key_id] = (tokens - 1, now)
            return 0.0
        self.state[key_id] = (tokens, now)
        return (1 - tokens) / self.rate


class RateLimit(Protocol):
    async def take(self, key_id: str) -> float: ...

    def describe(self) -> str: ...


class LocalRateLimit:
    """This process's own buckets."""

    def __init__(self, rate: float, burst: float) -> None:
        self.bucket = TokenBucket(rate, burst)

    async def take(self, key_id: str) -> float:
        return self.bucket.take(key_id)

    def describe(self) -> str:
        return f"{self.bucket.rate:g} requests/s, burst {self.bucket.burst:g}, in this process"


class SharedRateLimit:
    """One bucket per key in Redis, taken from by every worker with one atomic script."""

    def __init__(self, client: Any, rate: float, burst: float, timeout_ms: int,
                 where: str = "redis") -> None:
        self.rate, self.burst = rate, burst
        self.timeout_s = timeout_ms / 1000
        self.where = where
        # a full bucket and an absent one are the same: let Redis drop idle buckets
        self.ttl_ms = math.ceil(burst / rate * 1000) + 1000
        self.script = client.register_script(TAKE_SCRIPT)
        # one slow answer (a busy event loop) admits one request; a dead Redis trips this
        self.backoff = Backoff(logger, "shared rate limit", trip_after=TRIP_AFTER)

    async def take(self, key_id: str) -> float:
        if not self.backoff.available():
            RATE_LIMIT_FAIL_OPEN.inc()
            return 0.0
        try:
            wait = await asyncio.wait_for(
                self.script(keys=[KEY_PREFIX + key_id], args=[self.rate, self.burst,
                                                               self.ttl_ms]),
                self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - a broken limiter must not refuse traffic
            self.backoff.failed("check", exc, "admitting requests unchecked (fail-open)")
            RATE_LIMIT_FAIL_OPEN.inc()
            return 0.0
        self.backoff.succeeded()
        return float(wait.decode() if isinstance(wait, bytes) else wait)

    def describe(self) -> str:
        return (f"{self.rate:g} requests/s, burst {self.burst:g}, shared by every API worker "
                f"through {self.where}")


@dataclass(frozen=True)
class RateLimitConfig:
    rps: int  # 0: no limit
    burst: int
    url: str = ""  # AGBENTO_RATE_LIMIT_URL: "" (follow the cache), "local" or redis://...
    cache_url: str = "memory"
    api_workers: int = 1
    timeout_ms: int = 100

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimitConfig:
        return cls(rps=settings.rate_limit_rps, burst=settings.rate_limit_burst,
                   url=settings.rate_limit_url, cache_url=settings.cache_url,
                   api_workers=settings.api_workers, timeout_ms=settings.rate_limit_timeout_ms)

    @property
    def store(self) -> str:
        """Where the buckets live: a Redis URL, or "local"."""
        if self.url:
            return self.url
        return self.cache_url if is_redis_url(self.cache_url) else "local"


def redacted(url: str) -> str:
    """A Redis URL without its password, for logs."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{host}{parts.path}"


def open_rate_limit(config: RateLimitConfig) -> RateLimit | None:
    if not config.rps:
        return None
    store = config.store
    if is_redis_url(store):
        limit: RateLimit = SharedRateLimit(redis_client(store, config.timeout_ms, "ratelimit"),
                                           config.rps, config.burst, config.timeout_ms,
                                           redacted(store))
        logger.info("rate limit per API key: %s", limit.describe())
        return limit
    workers = config.api_workers
    limit = LocalRateLimit(config.rps / workers, max(1, config.burst // workers))
    if workers > 1:
        # a client on one keep-alive connection stays on one worker and sees only its share
        logger.warning("rate limit per API key: AGBENTO_RATE_LIMIT_RPS=%d and _BURST=%d are "
                       "divided by the %d API workers (no Redis to share one bucket): %s "
                       "per worker. Set AGBENTO_RATE_LIMIT_URL or AGBENTO_CACHE_URL to a "
                       "redis:// URL to share the limit.", config.rps, config.burst, workers,
                       limit.describe())
    else:
        logger.info("rate limit per API key: %s", limit.describe())
    return limit
