"""Where the columnar path starts to pay: the row path and the columnar path side by side.

Two servers of the same model (AGBENTO_COLUMNAR_MIN_ROWS huge, and 1; cache off), one request
at a time, the two taken in turn so a busy moment of a shared machine hits both alike. Prints
the median latency per body kind and size, and their ratio (> 1: columns faster).

    .venv/bin/python loadtests/columnar_threshold.py 1 10 100 300 1000 10000
"""

from __future__ import annotations

import io
import json
import os
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("BENTOML_HOME", str(Path.home() / "bentoml"))

from agbento.rows.schema import json_records  # noqa: E402
from agbento.training.pipeline import demo_table  # noqa: E402
from tests.servers import start_server  # noqa: E402 - a private home sharing the models

MODEL = os.environ.get("MODEL", "agbento-demo:latest")
LIMITS = {"AGBENTO_CACHE_URL": "off", "AGBENTO_MAX_ROWS": "100000",
          "AGBENTO_MAX_BODY_BYTES": "50000000"}


def main(sizes: list[int]) -> None:
    table = demo_table().drop(columns="species")
    payloads = {}
    for n in sizes:
        sample = table.sample(n=n, replace=True, random_state=n)
        parquet = io.BytesIO()
        sample.to_parquet(parquet, index=False)
        payloads[("json", n)] = ("application/json",
                                 json.dumps({"data": json_records(sample)}).encode())
        payloads[("parquet", n)] = ("application/vnd.apache.parquet", parquet.getvalue())
    with ExitStack() as stack:
        servers = {label: stack.enter_context(start_server(
            ROOT, MODEL, AGBENTO_COLUMNAR_MIN_ROWS=least, **LIMITS))
            for label, least in (("rows", "100000000"), ("columns", "1"))}
        with httpx.Client(timeout=120) as client:
            for (kind, n), (content_type, body) in payloads.items():
                times: dict[str, list[float]] = {label: [] for label in servers}
                repeats = max(11, min(150, 2000 // n))
                for i in range(repeats + 2):
                    for label, server in servers.items():
                        start = time.perf_counter()
                        response = client.post(f"{server.url}/predict", content=body,
                                                headers={"content-type": content_type})
                        assert response.status_code == 200, response.text
                        if i >= 2:  # the first two warm up
                            times[label].append(time.perf_counter() - start)
                rows_ms, columns_ms = (statistics.median(times[label]) * 1000
                                       for label in ("rows", "columns"))
                print(f"{kind:8} {n:>6} rows: row path {rows_ms:8.2f} ms, columnar "
                      f"{columns_ms:8.2f} ms, ratio {rows_ms / columns_ms:.2f}", flush=True)


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [1, 10, 100, 1000, 10000])
