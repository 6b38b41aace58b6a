"""All runtime configuration: `AGBENTO_*` environment variables, parsed once."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from functools import lru_cache

DEMO_MODEL_NAME = "agbento-demo"


class SettingsError(ValueError):
    """An `AGBENTO_*` variable holds a value we cannot use."""


def _int(env: dict[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be >= {minimum}")
    return value


def _bool(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean (use true/false)")


def _fraction(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise SettingsError(f"{name}={value} must be between 0 and 1")
    return value


@dataclass(frozen=True)
class Settings:
    """Typed view of the environment. Defaults serve a laptop."""

    model: str = f"{DEMO_MODEL_NAME}:latest"
    # the model name in V2/V1 paths (/v2/models/{name}/infer); "" = the model tag's name
    served_model_name: str = ""
    max_rows: int = 10_000
    max_body_bytes: int = 32 * 1024 * 1024
    extra_fields: str = "ignore"
    max_inflight: int = 512
    max_batch_size: int = 1_000
    max_latency_ms: int = 10_000
    request_timeout_s: int = 60
    model_workers: int = 1
    model_threads: int = 1
    api_workers: int = 1
    access_log: bool = False
    cache_url: str = "memory"
    cache_ttl_s: int = 3600
    cache_timeout_ms: int = 50
    cache_memory_mb: int = 64
    cache_max_rows: int = 100
    api_keys_file: str = ""
    require_api_keys: bool = False
    rate_limit_rps: int = 0
    rate_limit_burst: int = 50
    metrics_auth: bool = False
    allow_version_mismatch: bool = False
    prediction_log_sample: float = 0.0
    prediction_log_dir: str = "monitoring"
    shutdown_timeout_s: int = 65
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        log_level = env.get("AGBENTO_LOG_LEVEL", cls.log_level).upper()
        if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise SettingsError(f"AGBENTO_LOG_LEVEL={log_level!r} is not a log level")
        extra_fields = env.get("AGBENTO_EXTRA_FIELDS", cls.extra_fields).strip().lower()
        if extra_fields not in {"ignore", "reject"}:
            raise SettingsError(f"AGBENTO_EXTRA_FIELDS={extra_fields!r}: use ignore or reject")
        return cls(
            model=env.get("AGBENTO_MODEL", "").strip() or cls.model,
            served_model_name=env.get("AGBENTO_SERVED_MODEL_NAME", "").strip(),
            max_rows=_int(env, "AGBENTO_MAX_ROWS", cls.max_rows),
            max_body_bytes=_int(env, "AGBENTO_MAX_BODY_BYTES", cls.max_body_bytes),
            extra_fields=extra_fields,
            max_inflight=_int(env, "AGBENTO_MAX_INFLIGHT", cls.max_inflight),
            max_batch_size=_int(env, "AGBENTO_MAX_BATCH_SIZE", cls.max_batch_size),
            max_latency_ms=_int(env, "AGBENTO_MAX_LATENCY_MS", cls.max_latency_ms),
            request_timeout_s=_int(env, "AGBENTO_REQUEST_TIMEOUT_S", cls.request_timeout_s),
            model_workers=_int(env, "AGBENTO_MODEL_WORKERS", cls.model_workers),
            model_threads=_int(env, "AGBENTO_MODEL_THREADS", cls.model_threads),
            api_workers=_int(env, "AGBENTO_API_WORKERS", cls.api_workers),
            access_log=_bool(env, "AGBENTO_ACCESS_LOG", cls.access_log),
            cache_url=env.get("AGBENTO_CACHE_URL", cls.cache_url).strip(),
            cache_ttl_s=_int(env, "AGBENTO_CACHE_TTL_S", cls.cache_ttl_s),
            cache_timeout_ms=_int(env, "AGBENTO_CACHE_TIMEOUT_MS", cls.cache_timeout_ms),
            cache_memory_mb=_int(env, "AGBENTO_CACHE_MEMORY_MB", cls.cache_memory_mb),
            cache_max_rows=_int(env, "AGBENTO_CACHE_MAX_ROWS", cls.cache_max_rows, minimum=0),
            api_keys_file=env.get("AGBENTO_API_KEYS_FILE", "").strip(),
            require_api_keys=_bool(env, "AGBENTO_REQUIRE_API_KEYS", cls.require_api_keys),
            rate_limit_rps=_int(env, "AGBENTO_RATE_LIMIT_RPS", cls.rate_limit_rps, minimum=0),
            rate_limit_burst=_int(env, "AGBENTO_RATE_LIMIT_BURST", cls.rate_limit_burst),
            metrics_auth=_bool(env, "AGBENTO_METRICS_AUTH", cls.metrics_auth),
            allow_version_mismatch=_bool(
                env, "AGBENTO_ALLOW_VERSION_MISMATCH", cls.allow_version_mismatch
            ),
            prediction_log_sample=_fraction(
                env, "AGBENTO_PREDICTION_LOG_SAMPLE", cls.prediction_log_sample
            ),
            prediction_log_dir=env.get("AGBENTO_PREDICTION_LOG_DIR", "").strip()
            or cls.prediction_log_dir,
            shutdown_timeout_s=_int(env, "AGBENTO_SHUTDOWN_TIMEOUT_S", cls.shutdown_timeout_s),
            log_level=log_level,
        )

    def as_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
