"""Per-row prediction cache: in-process LRU by default, Redis when configured.

Keys are the model tag plus a digest of the row's *validated* values (schema order,
numbers as floats, null and absent both None), so key order, `1` vs `1.0` vs `"1"` and
null spellings never split equal rows, and a new model tag never sees old answers.

The cache is never a reason to fail or to wait: every operation has a deadline, an error
means "miss" (counted, logged at most once a minute), and after an error the backend is
left alone for a few seconds before it is tried again (Redis reconnects on its own).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

from agbento.core.settings import Settings
from agbento.monitoring.metrics import CACHE_LATENCY, CACHE_LOOKUPS

logger = logging.getLogger("agbento.runtime.cache")

# After a backend error, skip the backend this long: a dead Redis must not cost a timeout
# on every request.
BACKOFF_S = 2.0
ERROR_LOG_INTERVAL_S = 60.0


class CacheBackend(Protocol):
    name: str

    async def get_many(self, keys: list[str]) -> list[bytes | None]: ...

    async def set_many(self, items: dict[str, bytes], ttl_s: int) -> None: ...

    async def clear(self, prefix: str) -> int: ...


class MemoryBackend:
    """LRU with TTL, bounded by the bytes it holds (keys and values)."""

    name = "memory"

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        now = time.monotonic()
        found: list[bytes | None] = []
        for key in keys:
            entry = self.entries.get(key)
            if entry is None or entry[0] < now:
                if entry is not None:
                    self._drop(key)
                found.append(None)
            else:
                self.entries.move_to_end(key)
                found.append(entry[1])
        return found

    async def set_many(self, items: dict[str, bytes], ttl_s: int) -> None:
        expires = time.monotonic() + ttl_s
        for key, value in items.items():
            if key in self.entries:
                self._drop(key)
            size = sys.getsizeof(key) + len(value)
            if size > self.max_bytes:
                continue
            self.entries[key] = (expires, value)
            self.bytes += size
        while self.bytes > self.max_bytes and self.entries:
            self._drop(next(iter(self.entries)))

    async def clear(self, prefix: str) -> int:
        doomed = [k for k in self.entries if k.startswith(prefix)]
        for key in doomed:
            self._drop(key)
        return len(doomed)

    def _drop(self, key: str) -> None:
        _, value = self.entries.pop(key)
        self.bytes -= sys.getsizeof(key) + len(value)


def is_redis_url(url: str) -> bool:
    return url.startswith(("redis://", "rediss://", "unix://"))


def redis_client(url: str, timeout_ms: int, purpose: str) -> Any:
    """An asyncio Redis client over a pool, every socket operation bounded by `timeout_ms`.

    Its connections are named `agbento-<purpose>-<pid>` (see CLIENT LIST) so an operator
    can tell which process and which use each connection belongs to.
    """
    import redis.asyncio as redis

    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_ms / 1000,
        socket_connect_timeout=timeout_ms / 1000,
        max_connections=64,
        health_check_interval=30,
        client_name=f"agbento-{purpose}-{os.getpid()}",
    )


class Backoff:
    """After `trip_after` errors in a row, leave the backend alone for BACKOFF_S; log at most
    once a minute.

    A dead Redis then costs one timeout every few seconds, not one per request, and it is
    tried again on its own once it is back.
    """

    def __init__(self, log: logging.Logger, what: str, trip_after: int = 1) -> None:
        self.log = log
        self.what = what
        self.trip_after = trip_after
        self._failures = 0
        self._skip_until = 0.0
        self._last_log = 0.0

    def available(self) -> bool:
        return time.monotonic() >= self._skip_until

    def succeeded(self) -> None:
        self._failures = 0

    def failed(self, operation: str, exc: Exception, consequence: str) -> None:
        now = time.monotonic()
        self._failures += 1
        if self._failures >= self.trip_after:
            self._failures = 0
            self._skip_until = now + BACKOFF_S
        if now - self._last_log >= ERROR_LOG_INTERVAL_S:
            self._last_log = now
            self.log.warning("%s %s failed (%s: %s); %s; after %d failure(s) in a row it is "
                             "left alone for %.0f s (logged at most once a minute)", self.what,
                             operation, type(exc).__name__, exc, consequence, self.trip_after,
                             BACKOFF_S)


class RedisBackend:
    """Pipelined MGET / SET EX over a connection pool, with millisecond timeouts."""

    name = "redis"

    def __init__(self, url: str, timeout_ms: int) -> None:
        self.client = redis_client(url, timeout_ms, "cache")

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        return list(await self.client.mget(keys))

    async def set_many(self, items: dict[str, bytes], ttl_s: int) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for key, value in items.items():
                pipe.set(key, value, ex=ttl_s)
            await pipe.execute()

    async def clear(self, prefix: str) -> int:
        removed = 0
        async for key in self.client.scan_iter(match=f"{prefix}*", count=1000):
            removed += await self.client.delete(key)
        return removed


@dataclass
class CacheConfig:
    url: str  # "memory", "off", or redis://...
    ttl_s: int = 3600
    timeout_ms: int = 50
    memory_bytes: int = 64 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings: Settings) -> CacheConfig:
        return cls(url=settings.cache_url, ttl_s=settings.cache_ttl_s,
                   timeout_ms=settings.cache_timeout_ms,
                   memory_bytes=settings.cache_memory_mb * 1024 * 1024)

    @property
    def enabled(self) -> bool:
        return self.url not in ("", "off", "none")


def open_backend(config: CacheConfig) -> CacheBackend | None:
    if not config.enabled:
        return None
    if config.url == "memory":
        return MemoryBackend(config.memory_bytes)
    if is_redis_url(config.url):
        return RedisBackend(config.url, config.timeout_ms)
    raise ValueError(f"AGBENTO_CACHE_URL={config.url!r}: use memory, off or redis://...")


def row_key(prefix: str, values: list[Any]) -> str:
    encoded = json.dumps(values, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return prefix + hashlib.blake2b(encoded.encode(), digest_size=16).hexdigest()


class PredictionCache:
    """Answers per row ({"p": prediction, "q": probabilities}) for one model tag."""

    def __init__(self, backend: CacheBackend | None, model_tag: str, config: CacheConfig) -> None:
        self.backend = backend
        self.config = config
        self.prefix = f"agbento:{model_tag}:"
        self.backoff = Backoff(logger, "cache")

    @property
    def enabled(self) -> bool:
        return self.backend is not None

    def describe(self) -> dict[str, Any]:
        if self.backend is None:
            return {"enabled": False}
        return {"enabled": True, "backend": self.backend.name, "ttl_s": self.config.ttl_s,
                "timeout_ms": self.config.timeout_ms, "available": self._available()}

    def keys(self, rows: list[list[Any]]) -> list[str]:
        return [row_key(self.prefix, row) for row in rows]

    async def lookup(self, keys: list[str]) -> list[dict[str, Any] | None]:
        """One answer or None per key; never raises, never waits past the timeout."""
        if self.backend is None or not keys:
            return [None] * len(keys)
        if not self._available():
            CACHE_LOOKUPS.labels(result="error").inc(len(keys))
            return [None] * len(keys)
        start = time.perf_counter()
        try:
            found = await asyncio.wait_for(self.backend.get_many(keys),
                                           self.config.timeout_ms / 1000)
        except Exception as exc:  # noqa: BLE001 - any cache failure is a miss
            self._failed("lookup", exc)
            CACHE_LOOKUPS.labels(result="error").inc(len(keys))
            return [None] * len(keys)
        finally:
            CACHE_LATENCY.labels(operation="lookup").observe(time.perf_counter() - start)
        answers = [None if raw is None else json.loads(raw) for raw in found]
        hits = sum(a is not None for a in answers)
        CACHE_LOOKUPS.labels(result="hit").inc(hits)
        CACHE_LOOKUPS.labels(result="miss").inc(len(keys) - hits)
        return answers

    async def store(self, answers: dict[str, dict[str, Any]]) -> None:
        if self.backend is None or not answers or not self._available():
            return
        items = {k: json.dumps(v, separators=(",", ":")).encode() for k, v in answers.items()}
        start = time.perf_counter()
        try:
            await asyncio.wait_for(self.backend.set_many(items, self.config.ttl_s),
                                   self.config.timeout_ms / 1000)
        except Exception as exc:  # noqa: BLE001 - a failed store only costs a future miss
            self._failed("store", exc)
        finally:
            CACHE_LATENCY.labels(operation="store").observe(time.perf_counter() - start)

    async def clear(self) -> int:
        """Drop the served model's cached answers; how many were dropped."""
        if self.backend is None:
            return 0
        removed = await self.backend.clear(self.prefix)
        logger.info("cache cleared", extra={"fields": {"removed": removed, "model": self.prefix}})
        return removed

    def _available(self) -> bool:
        return self.backoff.available()

    def _failed(self, operation: str, exc: Exception) -> None:
        self.backoff.failed(operation, exc, "bypassing it")
