"""Locust scenarios for people who like its UI (`pip install -e '.[locust]'`).

    .venv/bin/locust -f loadtests/locustfile.py --host http://127.0.0.1:3000

Traffic mix: mostly single rows, some small and large batches, and 1% bad input (which
must come back 4xx, never 5xx). The side-by-side numbers come from `bench.py` (wrk).
"""

from __future__ import annotations

import random

from locust import FastHttpUser, between, task

from agbento.rows.schema import json_records
from agbento.training.pipeline import DEMO_LABEL, demo_table

ROWS = json_records(demo_table().dropna(subset=[DEMO_LABEL]).drop(columns=DEMO_LABEL))
BAD_ROWS = [{"island": "Biscoe", "year": "soon"}, {"bill_length_mm": [1]}, "not a row"]


class PredictionClient(FastHttpUser):
    wait_time = between(0.0, 0.05)

    def post_rows(self, rows: list[object], name: str, expect_ok: bool = True) -> None:
        with self.client.post("/predict", json={"data": rows}, name=name,
                              catch_response=True) as response:
            if expect_ok and response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:200]}")
            elif not expect_ok and not 400 <= response.status_code < 500:
                response.failure(f"bad input answered {response.status_code}")
            else:
                response.success()

    @task(80)
    def single_row(self) -> None:
        self.post_rows([random.choice(ROWS)], "/predict [1 row]")

    @task(15)
    def small_batch(self) -> None:
        self.post_rows(random.choices(ROWS, k=random.randint(2, 50)), "/predict [2-50 rows]")

    @task(4)
    def large_batch(self) -> None:
        self.post_rows(random.choices(ROWS, k=1000), "/predict [1000 rows]")

    @task(1)
    def bad_input(self) -> None:
        self.post_rows([random.choice(BAD_ROWS)], "/predict [bad input]", expect_ok=False)
