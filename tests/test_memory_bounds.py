"""The per-request memory budget, measured on a real server while hostile bodies arrive.

Budget (docs/predict.md, "The input contract"): decoding one request grows the server's
resident memory by at most 4 x AGBENTO_MAX_BODY_BYTES + BYTES_PER_CELL x AGBENTO_MAX_CELLS,
plus the model's own batch cost. Every body here is refused before the model runs, so the
model's cost is zero; ALLOCATOR_SLACK covers what the allocators keep around between samples.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psutil
import pytest

from agbento.rows.bounds import BYTES_PER_CELL
from tests import hostile
from tests.conftest import ROOT
from tests.helpers import GOOD
from tests.servers import BentoServer, start_server
from tests.tiny_models import TinyModels

pytestmark = pytest.mark.integration

MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_ROWS = 1000
MAX_CELLS = 20_000
ALLOCATOR_SLACK = 64 * 1024 * 1024
BUDGET = 4 * MAX_BODY_BYTES + BYTES_PER_CELL * MAX_CELLS + ALLOCATOR_SLACK
SAMPLE_EVERY_S = 0.01
JSON = "application/json"
CSV = "text/csv"

HOSTILE: dict[str, tuple[str, Callable[[], bytes]]] = {
    "parquet of 20M rows": (hostile.PARQUET, lambda: hostile.parquet_of_rows(20_000_000)),
    "parquet of long repeated strings": (
        hostile.PARQUET, lambda: hostile.parquet_of_long_strings(MAX_ROWS, 1_000_000)),
    "parquet of 3,000 columns": (hostile.PARQUET, lambda: hostile.parquet_of_columns(3_000)),
    "parquet of long lists": (hostile.PARQUET, lambda: hostile.parquet_of_lists(10, 1_000_000)),
    "arrow of 20M rows": (hostile.ARROW, lambda: hostile.arrow_of_rows(20_000_000)),
    "arrow of long repeated strings": (
        hostile.ARROW, lambda: hostile.arrow_of_long_strings(MAX_ROWS, 1_000_000)),
    "arrow compressed": (hostile.ARROW, lambda: hostile.arrow_of_compressed_zeros(50_000_000)),
    "csv of many rows": (CSV, lambda: hostile.csv_of_rows(MAX_BODY_BYTES // 12)),
    "csv of many columns": (CSV, lambda: hostile.csv_of_columns(MAX_BODY_BYTES // 16)),
    "csv long line": (CSV, lambda: hostile.csv_long_line(MAX_BODY_BYTES - 100)),
    "json long number": (JSON, lambda: hostile.json_number(MAX_BODY_BYTES - 100)),
    "json long field name": (JSON, lambda: hostile.json_field_name(MAX_BODY_BYTES - 100)),
    "json many keys in a row": (JSON, lambda: hostile.json_keys_per_row(MAX_BODY_BYTES // 16)),
    "json empty rows": (JSON, lambda: hostile.json_empty_rows(MAX_BODY_BYTES)),
    "json empty lists": (JSON, lambda: hostile.json_empty_lists(MAX_BODY_BYTES)),
    "json short strings": (JSON, lambda: hostile.json_short_strings(MAX_BODY_BYTES)),
    "json deep nesting": (JSON, lambda: b"[" * (MAX_BODY_BYTES // 2) + b"]" * (
        MAX_BODY_BYTES // 2 - 10)),
}


def server_rss(root: psutil.Process) -> int:
    total = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


class PeakRss:
    """Samples the summed RSS of a process tree in a thread until stopped."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.baseline = server_rss(self.root)
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, server_rss(self.root))
            self._stop.wait(SAMPLE_EVERY_S)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, server_rss(self.root))

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


@pytest.fixture(scope="module")
def bounded_server(tiny_models: TinyModels) -> Iterator[BentoServer]:
    limits = {"AGBENTO_MAX_ROWS": str(MAX_ROWS), "AGBENTO_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
              "AGBENTO_MAX_CELLS": str(MAX_CELLS)}
    with start_server(ROOT, tiny_models.multiclass.tag, **limits) as server:
        yield server


def warm_up(server: BentoServer) -> None:
    """One good request of each media type: imports and first-use caches are not per request."""
    rows = [GOOD] * 50
    bodies = {
        JSON: json.dumps({"data": rows}).encode(),
        CSV: ("island,year\n" + "Dream,2008\n" * 50).encode(),
        hostile.PARQUET: hostile.parquet_with_column_name("sex"),
    }
    for _ in range(3):
        for content_type, body in bodies.items():
            response = httpx.post(f"{server.url}/predict", content=body,
                                  headers={"content-type": content_type}, timeout=60)
            assert response.status_code in (200, 422), response.text[:300]


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_body_stays_within_the_memory_budget(
    bounded_server: BentoServer, case: str
) -> None:
    content_type, build = HOSTILE[case]
    body = build()
    assert len(body) <= MAX_BODY_BYTES, f"{case}: the body itself must pass the size limit"
    warm_up(bounded_server)
    with PeakRss(bounded_server.process.pid) as rss:
        response = httpx.post(f"{bounded_server.url}/predict", content=body,
                              headers={"content-type": content_type}, timeout=120)
    print(f"{case}: {len(body)} body bytes, peak RSS growth {rss.growth / 2**20:.1f} MiB, "
          f"budget {BUDGET / 2**20:.0f} MiB, answer {response.status_code}")
    assert 400 <= response.status_code < 500, response.text[:300]
    assert set(response.json()) == {"error", "request_id"}
    assert rss.growth <= BUDGET, f"{case}: {rss.growth / 2**20:.0f} MiB over the budget"
