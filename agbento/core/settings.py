"""All runtime configuration: `AGBENTO_*` environment variables, parsed once.

One `pydantic-settings` class, a description per variable (docs/configuration.md's
table lists the same variables with the same defaults; a test holds them together).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

from agbento.core.errors import StartupError

DEMO_MODEL_NAME = "agbento-demo"
ENV_PREFIX = "AGBENTO_"


class SettingsError(StartupError, ValueError):
    """An `AGBENTO_*` variable holds a value we cannot use."""


class Settings(BaseSettings):
    """Typed view of the environment. Defaults serve a laptop."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="ignore", env_ignore_empty=True
    )

    model: str = Field(f"{DEMO_MODEL_NAME}:latest",
                       description="model to serve: NAME:VERSION, NAME:latest, or NAME@STAGE "
                       "(the version promoted to that stage)")
    model_poll_s: float = Field(
        5.0, ge=0, description="with AGBENTO_MODEL=NAME@STAGE, how often each worker checks "
        "the stage for a new version and swaps it in without a restart (0: never)")
    shadow_model: str = Field(
        "", description="a candidate (NAME:VERSION or NAME@STAGE) that scores a sample of live "
        "requests off the request path, compared with the served answers (unset: none)")
    shadow_sample: float = Field(0.1, ge=0.0, le=1.0,
                                 description="share of scored requests the shadow scores")
    shadow_queue_rows: int = Field(
        10_000, ge=1, description="rows waiting for the shadow, per API worker; beyond it a "
        "request is dropped (counted)")
    shadow_log_rows: int = Field(
        100, ge=0, description="disagreeing rows written to the prediction log per minute, "
        "per API worker")
    served_model_name: str = Field("", description="the model's name in V2/V1 paths "
                                   "(/v2/models/{name}/infer); unset: the tag's name")
    max_rows: int = Field(10_000, ge=1, description="rows per request")
    max_explain_rows: int = Field(
        1_000, ge=1, description="rows per /explain request (an explanation costs 10-60 "
        "predictions of the same row); never more than AGBENTO_MAX_ROWS")
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1, description="request body bytes")
    max_cells: int = Field(1_000_000, ge=1, description="values per request, checked before "
                           "decoding; unset: 100 per allowed row")
    extra_fields: Literal["ignore", "reject"] = Field(
        "ignore", description="unknown row fields: listed in ignored_fields, or a 422")
    max_inflight: int = Field(512, ge=1, description="prediction requests in flight per API "
                              "worker; more are refused with 503")
    topology: Literal["fused", "split"] = Field(
        "fused", description="fused: the model in every API worker, requests merged in-process; "
        "split: one model service behind the API workers")
    max_batch_size: int = Field(1_000, ge=1, description="most requests (split) or rows (fused) "
                                "in one model call")
    max_latency_ms: int = Field(10_000, ge=1, description="the batcher's latency budget")
    request_timeout_s: int = Field(60, ge=1, description="BentoML request timeout")
    model_wait_s: int = Field(15, ge=1, description="longest a request waits for the model "
                              "service; past it 503 model_unavailable")
    model_workers: int = Field(1, ge=1, description="processes holding the predictor")
    model_threads: int = Field(1, ge=1, description="OpenMP threads per model worker")
    api_workers: int = Field(0, ge=0, description="processes validating requests (fused: each "
                             "also holds the model); 0: the usable CPUs (fused), 1 (split)")
    max_connection_age_s: float = Field(
        2.0, ge=0, description="a keep-alive connection this old is closed after its next "
        "answer, so clients' connections spread over the API workers (0: never)")
    access_log: bool = Field(False, description="BentoML's access log")
    cache_url: str = Field("memory", description="memory, off or redis://...")
    cache_ttl_s: int = Field(3600, ge=1, description="cache entry lifetime")
    cache_timeout_ms: int = Field(50, ge=1, description="deadline of each cache operation")
    cache_memory_mb: int = Field(64, ge=1, description="bound of the in-process cache")
    cache_max_rows: int = Field(100, ge=0, description="larger requests skip the cache")
    columnar_min_rows: int = Field(
        200, ge=1, description="requests of this many rows or more are validated and scored "
        "as columns (fewer: row by row, faster for them)")
    api_keys_file: str = Field("", description="keys file made by python -m agbento.keys")
    require_api_keys: bool = Field(False, description="refuse to start without a keys file")
    rate_limit_rps: int = Field(0, ge=0, description="per-key requests per second (0: off)")
    rate_limit_burst: int = Field(50, ge=1, description="per-key burst above the rate")
    rate_limit_url: str = Field("", description="where the buckets live: redis://... or local; "
                                "unset: the cache's Redis if it has one, else local")
    rate_limit_timeout_ms: int = Field(100, ge=1, description="deadline of each shared "
                                       "rate-limit check (past it: admitted, counted)")
    monitoring: Literal["on", "off"] = Field(
        "on", description="count every scored row into its feature's training bins (drift) "
        "and labelled rows from /feedback into live-quality metrics; off: neither is counted")
    metrics_auth: bool = Field(False, description="/metrics needs the admin permission")
    allow_version_mismatch: bool = Field(
        False, description="load a model saved by other AutoGluon/Python versions")
    prediction_log_sample: float = Field(
        0.0, ge=0.0, le=1.0, description="share of requests whose rows are logged to files")
    prediction_log_dir: str = Field("monitoring", description="where the prediction log goes")
    shutdown_timeout_s: int = Field(65, ge=1, description="a worker's stop bound after SIGTERM")
    actor: str = Field("", description="who promotes or rolls back a model (the stage "
                       "history's `by`); unset: user@host")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="log level")

    @field_validator("*", mode="before")
    @classmethod
    def _trimmed(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @field_validator("topology", "extra_fields", "monitoring", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("rate_limit_url")
    @classmethod
    def _local_or_redis(cls, value: str) -> str:
        if value not in ("", "local") and not value.startswith(("redis://", "rediss://",
                                                                  "unix://")):
            raise ValueError("use local or redis://...")
        return value

    @model_validator(mode="after")
    def _workers_follow_topology(self) -> Settings:
        """Unset, fused runs one API worker per usable CPU, split one API worker."""
        if self.api_workers == 0:
            workers = usable_cpus() if self.topology == "fused" else 1
            object.__setattr__(self, "api_workers", workers)  # frozen: set once, here
        return self

    @model_validator(mode="before")
    @classmethod
    def _cells_follow_rows(cls, data: Any) -> Any:
        """Unset, the values limit is 100 per allowed row."""
        if isinstance(data, dict) and "max_cells" not in data:
            rows = str(data.get("max_rows", cls.model_fields["max_rows"].default)).strip()
            if rows.isdigit():
                data = {**data, "max_cells": 100 * int(rows)}
        return data

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        **_: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # `from_env` reads the environment, so a test can hand it a plain dict
        return (init_settings,)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from `env` (the process environment by default); errors name variables."""
        given = os.environ if env is None else env
        # a blank value means "use the default", as an unset one does
        values = MappingEnvSource(cls, {k: v for k, v in given.items() if v.strip()})()
        try:
            return cls(**values)
        except ValidationError as exc:
            raise SettingsError("; ".join(
                f"{ENV_PREFIX}{str(e['loc'][0]).upper()}={e.get('input')!r}: {e['msg']}"
                for e in exc.errors()
            )) from None


def usable_cpus(cgroup_root: Path = Path("/sys/fs/cgroup"),
                affinity: Callable[[], set[int]] | None = None) -> int:
    """The CPUs this process may use: the smallest of its CPU affinity and its cgroup's CPU
    quota (v2 `cpu.max`, or v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`), at least 1.

    A pod limited to 2 CPUs on a 64-core node gets 2, not 64 (os.cpu_count() ignores both).
    """
    pick = affinity or (lambda: os.sched_getaffinity(0))
    try:
        limits = [len(pick())]
    except (AttributeError, OSError):  # no affinity call on this platform
        limits = [os.cpu_count() or 1]
    quota = cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        limits.append(math.floor(quota))  # 1.5 CPUs: 1 worker, not 2 throttled ones
    return max(1, min(limits))


def cgroup_cpu_quota(root: Path) -> float | None:
    """CPUs granted by the cgroup's CFS quota, or None when unlimited or unreadable."""
    try:  # cgroup v2: "max 100000" or "200000 100000"
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    for v1 in (root / "cpu", root / "cpu,cpuacct", root):
        try:  # cgroup v1: -1 means unlimited
            quota_us = int((v1 / "cpu.cfs_quota_us").read_text())
            period_us = int((v1 / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
    return None


class MappingEnvSource(EnvSettingsSource):
    """The environment source, reading a given mapping instead of `os.environ`."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._given = env
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._given, self.case_sensitive, self.env_ignore_empty,
                              self.env_parse_none_str)


def variables() -> dict[str, Any]:
    """Every AGBENTO_* variable with its default (docs/configuration.md's table)."""
    return {f"{ENV_PREFIX}{name.upper()}": field.default
            for name, field in Settings.model_fields.items()}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
