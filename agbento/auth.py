"""API keys with permissions, stored as hashes, checked before a request reaches anything.

A key looks like `agb.<id>.<secret>`: the id finds the entry, so checking a key is one
constant-time comparison of SHA-256 digests (the secret is 32 random bytes: a slow password
hash buys nothing). The keys file holds only ids, owners, permissions, expiries and
digests, and is re-read when it changes, so keys are added or revoked without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agbento.errors import ApiError

logger = logging.getLogger("agbento.auth")

PERMISSIONS = ("predict", "model_info", "admin")
KEY_PREFIX = "agb"
RELOAD_CHECK_S = 2.0


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(key_id: str) -> str:
    return f"{KEY_PREFIX}.{key_id}.{secrets.token_urlsafe(32)}"


@dataclass(frozen=True)
class ApiKey:
    id: str
    owner: str
    permissions: tuple[str, ...]
    sha256: str
    expires_at: str | None = None  # ISO-8601, UTC
    created_at: str | None = None

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and datetime.fromisoformat(self.expires_at) <= now

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["permissions"] = list(self.permissions)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ApiKey:
        unknown = set(data["permissions"]) - set(PERMISSIONS)
        if unknown:
            raise ValueError(f"key {data['id']!r}: unknown permission(s) {sorted(unknown)}")
        return cls(
            id=data["id"],
            owner=data.get("owner", ""),
            permissions=tuple(data["permissions"]),
            sha256=data["sha256"],
            expires_at=data.get("expires_at"),
            created_at=data.get("created_at"),
        )


def read_keys(path: Path) -> dict[str, ApiKey]:
    if not path.exists():
        return {}
    # no `or "{}"`: an empty file is one being rewritten in place, not "no keys"
    data = json.loads(path.read_text())
    keys = [ApiKey.from_dict(item) for item in data.get("keys", [])]
    return {key.id: key for key in keys}


def write_keys(path: Path, keys: dict[str, ApiKey]) -> None:
    """Atomic and private (0600): a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    body = json.dumps({"keys": [k.to_dict() for k in keys.values()]}, indent=2) + "\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(body)
    os.replace(tmp, path)


class ApiKeyRing:
    """The keys file, as the service sees it: authenticate, authorize, reload on change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.keys: dict[str, ApiKey] = {}
        self._stamp: tuple[float, int] | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self.reload()

    def reload(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            stamp = None
        else:
            stamp = (stat.st_mtime, stat.st_size)
        if stamp == self._stamp and self._stamp is not None:
            return
        if stamp is None and self._stamp is not None:
            # an editor that moves the old file away before writing the new one: keep the
            # keys (to revoke every key, write an empty list)
            logger.error("AGBENTO_API_KEYS_FILE %s is gone; keeping %d known keys",
                         self.path, len(self.keys))
            return
        try:
            self.keys = read_keys(self.path)
        except (ValueError, KeyError, TypeError) as exc:
            # keep the keys we had: a half-edited file must not open or close the door
            logger.error("cannot read AGBENTO_API_KEYS_FILE (%s); keeping %d known keys",
                         exc, len(self.keys))
            return
        self._stamp = stamp
        logger.info("loaded %d API key(s) from %s", len(self.keys), self.path)

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked >= RELOAD_CHECK_S:
            with self._lock:
                self._checked = now
                self.reload()

    def authenticate(self, presented: str | None) -> ApiKey:
        """The key's entry, or ApiError 401. Never says which part was wrong."""
        self._maybe_reload()
        if not presented:
            raise ApiError(401, "unauthorized",
                           "send an API key as X-API-Key or Authorization: Bearer")
        parts = presented.split(".")
        entry = self.keys.get(parts[1]) if len(parts) == 3 and parts[0] == KEY_PREFIX else None
        # compare even when the id is unknown, so timing does not tell ids apart
        expected = entry.sha256 if entry else "0" * 64
        if not hmac.compare_digest(digest(presented), expected) or entry is None:
            raise ApiError(401, "unauthorized", "the API key is not valid")
        if entry.expired(datetime.now(UTC)):
            raise ApiError(401, "unauthorized", f"API key {entry.id!r} has expired")
        return entry

    @staticmethod
    def authorize(key: ApiKey, permission: str) -> None:
        if permission not in key.permissions:
            raise ApiError(403, "forbidden",
                           f"API key {key.id!r} lacks the {permission!r} permission")


def presented_key(headers: Mapping[str, str]) -> str | None:
    if headers.get("x-api-key"):
        return headers["x-api-key"].strip()
    scheme, _, secret = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and secret.strip():
        return secret.strip()
    return None


class TokenBucket:
    """Per-key request rate: `rate` per second on average, bursts up to `burst`."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.state: dict[str, tuple[float, float]] = {}

    def take(self, key_id: str) -> float:
        """0 when allowed; else the seconds until a token is back."""
        now = time.monotonic()
        tokens, last = self.state.get(key_id, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1:
            self.state[key_id] = (tokens - 1, now)
            return 0.0
        self.state[key_id] = (tokens, now)
        return (1 - tokens) / self.rate
