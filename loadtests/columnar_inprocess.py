"""In-process timings of the row path and the columnar path (no HTTP): where a request's
CPU goes between its body and the model's answer, at a few request sizes.

    .venv/bin/python loadtests/columnar_inprocess.py --model agbento-demo:latest --sizes 1 1000 10000

Stages (median ms of several runs; noisy on a shared machine):
- predictor: predict_proba on the ready frame (the model alone);
- rows: JSON records -> validate_rows -> encode_rows -> score_requests (decode, to_frame,
  predict, JSON fragments): today's path on both sides of the hop;
- columns: JSON records -> table_from_records -> validate_table -> encode_frame (Arrow IPC)
  -> score_requests;
- columns, values hop: the same but the frame crosses the hop as JSON value lists;
- parquet rows / parquet columns: a Parquet body read as records (json_value per cell) and
  validated by rows, against read into columns and validated by columns, both then scored.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable
from typing import Any

import bentoml
import pandas as pd

from agbento.bounds import TableBounds
from agbento.columns import RequestTable, frame_of, read_parquet, table_from_records
from agbento.inference import TabularRuntime, encode_frame, encode_rows
from agbento.schema import json_records
from agbento.store import ModelCard
from agbento.training import demo_table


def median_ms(work: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="agbento-demo:latest")
    parser.add_argument("--data", default=None, help="a CSV/Parquet of feature rows "
                        "(default: the demo table)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 1000, 10000])
    args = parser.parse_args()
    card = ModelCard.of(bentoml.models.get(args.model))
    runtime = TabularRuntime.load(card)
    schema = card.schema
    if args.data:
        source = (pd.read_parquet(args.data) if args.data.endswith(".parquet")
                  else pd.read_csv(args.data))
    else:
        source = demo_table()
    source = source[[c for c in schema.names if c in source.columns]]
    bounds = TableBounds.for_service(100_000, 100_000_000, None, schema.names)
    for size in args.sizes:
        sample = source.sample(n=size, replace=True, random_state=size).reset_index(drop=True)
        records = json_records(sample)
        parquet = io.BytesIO()
        sample.to_parquet(parquet, index=False)
        raw = parquet.getvalue()
        frame = schema.to_frame(schema.validate_rows(records).rows)
        repeats = max(5, min(50, 20_000 // size))

        def rows_path(records: list[dict[str, Any]] = records) -> None:
            runtime.score_requests([encode_rows(schema.validate_rows(records).rows)])

        def columns_path(records: list[dict[str, Any]] = records) -> None:
            checked = table_from_records(records).validate(schema)
            runtime.score_requests([encode_frame(checked.frame)])

        def columns_values_hop(records: list[dict[str, Any]] = records) -> None:
            checked = table_from_records(records).validate(schema)
            runtime.score_requests([encode_rows(checked.frame.astype(object).where(
                checked.frame.notna(), None).values.tolist())])

        def parquet_rows(raw: bytes = raw) -> None:
            table = frame_of(read_parquet(raw, bounds))
            rows = RequestTable(table, len(table)).records()
            runtime.score_requests([encode_rows(schema.validate_rows(rows).rows)])

        def parquet_columns(raw: bytes = raw) -> None:
            table = frame_of(read_parquet(raw, bounds))
            checked = RequestTable(table, len(table), present=set(table.columns)).validate(schema)
            runtime.score_requests([encode_frame(checked.frame)])

        stages = {
            "predictor": lambda: runtime.predictor.predict_proba(frame),
            "rows": rows_path,
            "columns": columns_path,
            "columns, values hop": columns_values_hop,
            "parquet rows": parquet_rows,
            "parquet columns": parquet_columns,
            "validate_rows": lambda: schema.validate_rows(records),
            "validate columns": lambda: table_from_records(records).validate(schema),
        }
        timings = {name: median_ms(work, repeats) for name, work in stages.items()}
        model = timings["predictor"]
        print(f"{size:>6} rows: " + ", ".join(
            f"{name} {ms:.2f} ms ({ms / model:.2f}x)" for name, ms in timings.items()))


if __name__ == "__main__":
    main()
