"""In-process timings of the row path and the columnar path (no HTTP): where a request's
CPU goes between its body and the model's answer, at a few request sizes.

    .venv/bin/python loadtests/columnar_inprocess.py --model agbento-demo:latest \
        --sizes 1 1000 10000

Stages (median ms of several runs; noisy on a shared machine):
- predictor: predict_proba on the ready frame (the model alone);
- model side, rows / model side, columns: bench.py's "full scoring path" (the model
  service's work for one request): score_requests on value lists (decode, to_frame, predict,
  JSON fragments) against score_requests on an Arrow IPC frame (decode, predict, fragments);
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

from agbento.models.store import ModelCard
from agbento.rows.bounds import TableBounds
from agbento.rows.columns import RequestTable, frame_of, read_parquet, table_from_records
from agbento.rows.schema import json_records
from agbento.runtime.inference import TabularRuntime, encode_frame, encode_rows
from agbento.training.pipeline import demo_table


def interleaved_ms(stages: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median ms of each stage, the stages taken in turn on every round, so a busy moment
    of the (shared) machine hits them all alike."""
    times: dict[str, list[float]] = {name: [] for name in stages}
    for _ in range(repeats):
        for name, work in stages.items():
            start = time.perf_counter()
            work()
            times[name].append(time.perf_counter() - start)
    return {name: round(statistics.median(t) * 1000, 3) for name, t in times.items()}


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
        repeats = max(15, min(100, 50_000 // size))

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
            checked = RequestTable(table, len(table)).validate(schema)
            runtime.score_requests([encode_frame(checked.frame)])

        values = schema.validate_rows(records).rows
        encoded_rows, encoded_frame = encode_rows(values), encode_frame(frame)

        def predictor(frame: pd.DataFrame = frame) -> None:
            runtime.predictor.predict_proba(frame)

        def validate_rows(records: list[dict[str, Any]] = records) -> None:
            schema.validate_rows(records)

        def validate_columns(records: list[dict[str, Any]] = records) -> None:
            table_from_records(records).validate(schema)

        def model_side_rows(encoded: str = encoded_rows) -> None:
            runtime.score_requests([encoded])

        def model_side_columns(encoded: str = encoded_frame) -> None:
            runtime.score_requests([encoded])

        stages = {
            "predictor": predictor,
            "model side, rows": model_side_rows,
            "model side, columns": model_side_columns,
            "rows": rows_path,
            "columns": columns_path,
            "columns, values hop": columns_values_hop,
            "parquet rows": parquet_rows,
            "parquet columns": parquet_columns,
            "validate_rows": validate_rows,
            "validate columns": validate_columns,
        }
        for work in stages.values():  # warm
            work()
        timings = interleaved_ms(stages, repeats)
        model = timings["predictor"]
        print(f"{size:>6} rows:")
        for name, ms in timings.items():
            print(f"    {name:22} {ms:9.2f} ms  {ms / model:5.2f}x the model")


if __name__ == "__main__":
    main()
