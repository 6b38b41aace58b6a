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
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as datetime_time
from pathlib import Path
from typing import Any

from agbento.core.errors import ApiError, ErrorCode
from agbento.http.routes import Permission

logger = logging.getLogger("agbento.http.auth")

# what a key may be granted: the route table's permissions, in its order
PERMISSIONS = tuple(permission.value for permission in Permission)
KEY_PREFIX = "agb"
RELOAD_CHECK_S = 2.0
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
ENTRY_FIELDS = frozenset({"id", "owner", "permissions", "sha256", "expires_at", "created_at"})


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(key_id: str) -> str:
    return f"{KEY_PREFIX}.{key_id}.{secrets.token_urlsafe(32)}"


def expiry_instant(value: str) -> datetime:
    """The moment a key stops working, from its `expires_at` (ISO-8601).

    A date alone (`2027-06-30`) means the end of that day, UTC: the key works all of that
    day. A date and time without an offset is UTC. Anything else is a ValueError.
    """
    try:
        day = date.fromisoformat(value)
    except ValueError:
        day = None
    if day is not None:
        if not DATE_ONLY.fullmatch(value):  # week dates, basic format: too easy to misread
            raise ValueError(f"{value!r}: write a date as YYYY-MM-DD")
        if day == date.max:
            return datetime.max.replace(tzinfo=UTC)
        return datetime.combine(day + timedelta(days=1), datetime_time.min, tzinfo=UTC)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO-8601 date or datetime") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class ApiKey:
    """One entry of the keys file; constructing it validates every field (ValueError)."""

    id: str
    owner: str
    permissions: tuple[str, ...]
    sha256: str
    expires_at: str | None = None  # ISO-8601, UTC; a date alone: the end of that day
    created_at: str | None = None
    _expires: datetime | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.id, str) or not ID_PATTERN.fullmatch(self.id):
            problems.append("id: use 1-64 letters, digits, - or _")
        if not isinstance(self.owner, str):
            problems.append("owner: must be a string")
        if (not isinstance(self.permissions, tuple) or not self.permissions
                or not all(isinstance(p, str) and p in PERMISSIONS for p in self.permissions)):
            problems.append(f"permissions: a non-empty list drawn from {', '.join(PERMISSIONS)}"
                            f" (got {self.permissions!r})")
        if not isinstance(self.sha256, str) or not SHA256_PATTERN.fullmatch(self.sha256):
            problems.append("sha256: must be 64 lowercase hex digits")
        for name in ("expires_at", "created_at"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, str):
                problems.append(f"{name}: must be an ISO-8601 string or null")
                continue
            try:
                when = expiry_instant(value)
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
                continue
            if name == "expires_at":
                object.__setattr__(self, "_expires", when)
        if problems:
            raise ValueError("; ".join(problems))

    def expired(self, now: datetime) -> bool:
        return self._expires is not None and self._expires <= now

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["_expires"]
        data["permissions"] = list(self.permissions)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> ApiKey:
        """An entry as read from the file; ValueError names what is wrong with it."""
        if not isinstance(data, dict):
            raise ValueError(f"an entry must be an object, not {type(data).__name__}")
        unknown = set(data) - ENTRY_FIELDS
        if unknown:  # a misspelt "expires_at" must not make a key that never expires
            raise ValueError(f"unknown field(s) {sorted(unknown)}")
        missing = [name for name in ("id", "permissions", "sha256") if name not in data]
        if missing:
            raise ValueError(f"missing field(s) {missing}")
        permissions = data["permissions"]
        if not isinstance(permissions, list):
            raise ValueError("permissions: must be a list")
        return cls(
            id=data["id"],
            owner=data.get("owner", ""),
            permissions=tuple(permissions),
            sha256=data["sha256"],
            expires_at=data.get("expires_at"),
            created_at=data.get("created_at"),
        )


@dataclass
class KeysFile:
    """What a keys file holds: the valid keys, and the entries refused (with why)."""

    keys: dict[str, ApiKey]
    refused: list[RefusedEntry]


@dataclass(frozen=True)
class RefusedEntry:
    name: str  # the entry's id when it has a usable one, else its position
    problem: str
    raw: Any  # kept as it was, so the keys CLI can rewrite the file without losing it


def entry_name(raw: Any, position: int) -> str:
    if isinstance(raw, dict) and isinstance(raw.get("id"), str) and raw["id"]:
        return raw["id"][:64]
    return f"#{position + 1}"


def load_keys(path: Path) -> KeysFile:
    """Every entry checked on its own: a bad entry is refused, the others are kept.

    A file that is not JSON, or not {"keys": [...]}, raises ValueError as a whole.
    """
    if not path.exists():
        return KeysFile({}, [])
    # no `or "{}"`: an empty file is one being rewritten in place, not "no keys"
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("keys", []), list):
        raise ValueError('expected {"keys": [...]}')
    entries = data.get("keys", [])
    names = [entry_name(raw, position) for position, raw in enumerate(entries)]
    counts = Counter(names)
    keys: dict[str, ApiKey] = {}
    refused: list[RefusedEntry] = []
    for name, raw in zip(names, entries, strict=True):
        try:
            if counts[name] > 1:  # which entry is meant? neither opens the door
                raise ValueError("the id appears more than once in the file")
            key = ApiKey.from_dict(raw)
        except ValueError as exc:
            refused.append(RefusedEntry(name, str(exc), raw))
        else:
            keys[key.id] = key
    return KeysFile(keys, refused)


def write_keys(path: Path, keys: dict[str, ApiKey], keep: Sequence[Any] = ()) -> None:
    """Atomic and private (0600): a reader never sees half a file. `keep`: raw entries
    written back as they are (refused ones a person must fix by hand)."""
    tmp = path.with_name(path.name + ".tmp")
    entries = [k.to_dict() for k in keys.values()] + list(keep)
    body = json.dumps({"keys": entries}, indent=2) + "\n"
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
            loaded = load_keys(self.path)
        except (ValueError, OSError) as exc:  # json.JSONDecodeError included
            # keep the keys we had: a half-edited file must not open or close the door
            logger.error("cannot read AGBENTO_API_KEYS_FILE (%s); keeping %d known keys",
                         exc, len(self.keys))
            return
        for entry in loaded.refused:
            # that key is refused (401) until its entry is fixed; the others keep working
            logger.error("API key %r refused: invalid entry in %s: %s", entry.name,
                         self.path, entry.problem)
        self.keys = loaded.keys
        self._stamp = stamp
        logger.info("loaded %d API key(s) from %s (%d refused)", len(self.keys), self.path,
                    len(loaded.refused))

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
            raise ApiError(ErrorCode.UNAUTHORIZED,
                           "send an API key as X-API-Key or Authorization: Bearer")
        parts = presented.split(".")
        entry = self.keys.get(parts[1]) if len(parts) == 3 and parts[0] == KEY_PREFIX else None
        # compare even when the id is unknown, so timing does not tell ids apart
        expected = entry.sha256 if entry else "0" * 64
        if not hmac.compare_digest(digest(presented), expected) or entry is None:
            raise ApiError(ErrorCode.UNAUTHORIZED, "the API key is not valid")
        if entry.expired(datetime.now(UTC)):
            raise ApiError(ErrorCode.UNAUTHORIZED, f"API key {entry.id!r} has expired")
        return entry

    @staticmethod
    def authorize(key: ApiKey, permission: str) -> None:
        if permission not in key.permissions:
            raise ApiError(ErrorCode.FORBIDDEN,
                           f"API key {key.id!r} lacks the {permission!r} permission")


def presented_key(headers: Mapping[str, str]) -> str | None:
    if headers.get("x-api-key"):
        return headers["x-api-key"].strip()
    scheme, _, secret = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and secret.strip():
        return secret.strip()
    return None

