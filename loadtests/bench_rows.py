"""The benchmark's rows: any stored model, rows from a file or the model's shipped dataset.

Everything here is pure (no server): which rows a model's requests carry, the request
bodies built from them in each format, distinct one-row bodies, and the model in-process on
the very same rows (the limit every ratio is taken against).
"""

from __future__ import annotations

import io
import json
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from agbento.models.store import ModelCard
from agbento.rows.schema import FeatureSchema, json_records
from agbento.training.pipeline import DATASETS, load_table

JSON = "application/json"
CSV = "text/csv"
PARQUET = "application/vnd.apache.parquet"
ARROW = "application/vnd.apache.arrow.stream"
FORMATS = {"json": JSON, "csv": CSV, "parquet": PARQUET, "arrow": ARROW}
# Rows checked against the schema to make the pool requests are drawn from.
POOL_ROWS = 20_000


class RowsError(Exception):
    """The rows for a model cannot be found or do not fit it: one line for the user."""


@dataclass
class Rows:
    """Rows the model accepts, as the file holds them (the features only), and where from."""

    frame: pd.DataFrame
    source: str
    dropped_columns: list[str]
    rejected_rows: int

    def sample(self, n: int, seed: int) -> pd.DataFrame:
        """`n` rows (repeating when the pool is smaller), fresh index."""
        return self.frame.sample(n=n, replace=n > len(self.frame),
                                 random_state=seed).reset_index(drop=True)


def source_table(card: ModelCard, data: Path | None) -> tuple[pd.DataFrame, str]:
    """The file given, else the dataset the model was trained on when it ships in a package
    (train.py --demo / --dataset), else the training file if it is still there."""
    if data is not None:
        return load_table(data), str(data)
    training = card.metadata.get("training", {})
    name = training.get("dataset")
    if name is None and str(training.get("source", "")).startswith("palmerpenguins"):
        name = "penguins"  # models trained before the dataset field was recorded
    if name in DATASETS:
        return DATASETS[name].load(), f"dataset {name}: {DATASETS[name].description}"
    trained_on = Path(str(training.get("source", "")))
    if trained_on.suffix and trained_on.exists():
        return load_table(trained_on), str(trained_on)
    raise RowsError(f"model {card.tag} was trained on {training.get('source')!r}, which is not "
                    "here: give --data FILE with rows for it")


def model_rows(card: ModelCard, data: Path | None = None, label: str | None = None,
               seed: int = 0) -> Rows:
    """The rows requests will carry: the label and unknown columns dropped, and only rows
    the schema accepts (a benchmark measures answers, not refusals)."""
    table, source = source_table(card, data)
    schema = card.schema
    label = label or card.metadata.get("label")
    if label and label in table.columns:
        table = table.drop(columns=label)
    features = [name for name in schema.names if name in table.columns]
    if not features:
        raise RowsError(f"{source} has none of the model's features ({', '.join(schema.names)})")
    dropped = [str(c) for c in table.columns if c not in features]
    pool = table[features]
    if len(pool) > POOL_ROWS:
        pool = pool.sample(n=POOL_ROWS, random_state=seed)
    pool = pool.reset_index(drop=True)
    accepted = schema.validate_rows(json_records(pool))
    if not accepted.indices:
        first = accepted.problems[0]
        raise RowsError(f"no row of {source} passes the model's schema (row {first.row}, "
                        f"{first.field}: {first.problem})")
    frame = pool.iloc[accepted.indices].reset_index(drop=True)
    rejected = len(pool) - len(frame)
    return Rows(frame, source, dropped, rejected)


def body(frame: pd.DataFrame, fmt: str) -> bytes:
    """One request body holding `frame`'s rows in format `fmt` (a FORMATS key)."""
    if fmt == "json":
        return json.dumps({"data": json_records(frame)}, separators=(",", ":")).encode()
    if fmt == "csv":
        return frame.to_csv(index=False).encode()
    if fmt == "parquet":
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return buffer.getvalue()
    if fmt == "arrow":
        import pyarrow as pa

        table = pa.Table.from_pandas(frame, preserve_index=False)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return sink.getvalue().to_pybytes()
    raise ValueError(f"unknown body format {fmt!r}: one of {', '.join(FORMATS)}")


def distinct_single_bodies(frame: pd.DataFrame, schema: FeatureSchema, count: int,
                           seed: int = 20) -> list[str]:
    """Up to `count` one-row JSON bodies, no two alike: the rows as they are, then rows with
    their numbers jittered (within the training range; whole numbers stay whole) until there
    are enough. Fewer come back only when there is no number to jitter and the rows run out."""
    records = json_records(frame)
    rng = random.Random(seed)
    jitter = [f for f in schema.features if f.kind == "numeric"]
    seen: set[str] = set()
    out: list[str] = []

    def add(record: dict[str, Any]) -> None:
        text = json.dumps({"data": [record]}, separators=(",", ":"))
        if text not in seen:
            seen.add(text)
            out.append(text)

    for record in records:
        if len(out) == count:
            return out
        add(record)
    attempts = 0
    while jitter and len(out) < count and attempts < 4 * count:
        attempts += 1
        record = dict(rng.choice(records))
        for feature in jitter:
            value = record.get(feature.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                moved = value * rng.uniform(0.95, 1.05)
                low = feature.minimum if feature.minimum is not None else moved
                high = feature.maximum if feature.maximum is not None else moved
                moved = min(max(moved, low), high)
                record[feature.name] = round(moved) if feature.integer else round(moved, 4)
        add(record)
    return out


def predict_call(card: ModelCard, predictor: Any) -> Any:
    """What a client's answer costs the model: predict_proba (predict for regression)."""
    return predictor.predict_proba if card.is_classification else predictor.predict


def time_in_process(card: ModelCard, predictor: Any, frame: pd.DataFrame,
                    budget_s: float = 3.0) -> dict[str, float]:
    """Median time of the model on `frame`'s rows in one call, the rows turned into the
    model's input the way the service does (validated, then `to_frame`)."""
    values = card.schema.validate_rows(json_records(frame)).rows
    model_input = card.schema.to_frame(values)
    call = predict_call(card, predictor)
    call(model_input)  # warm
    samples: list[float] = []
    spent = 0.0
    while len(samples) < 3 or (spent < budget_s and len(samples) < 30):
        start = time.perf_counter()
        call(model_input)
        elapsed = time.perf_counter() - start
        samples.append(elapsed)
        spent += elapsed
    median = statistics.median(samples)
    rows = len(frame)
    return {"rows": rows, "calls": len(samples), "ms": round(median * 1000, 3),
            "rows_per_s": round(rows / median, 1)}


def write_bodies_file(bodies: list[str], path: Path) -> Path:
    """One body a line, for post.lua's BODIES_FILE."""
    path.write_text("\n".join(bodies) + "\n")
    return path


def v2_bodies(card: ModelCard, frame: pd.DataFrame, binary: bool) -> tuple[bytes, dict[str, str]]:
    """An Open Inference Protocol V2 body of `frame`'s rows, built by tritonclient: one tensor
    per feature; JSON in and out, or binary tensors both ways (tritonclient's default). Also
    the headers it needs."""
    import numpy as np
    import tritonclient.http as triton

    from agbento.protocols.v2 import HEADER_LENGTH, ProtocolModel

    model = ProtocolModel.of(card)
    tensors = []
    for feature in model.features:
        datatype = model.input_datatype(feature)
        column = frame[feature.name]
        if datatype == "BYTES":  # a BYTES tensor has no null: an empty string stands in
            array = column.astype(object).where(column.notna(), "").astype(str).to_numpy()
        else:
            array = column.astype("float64").to_numpy()
            array = array.astype(np.int64) if datatype == "INT64" else array
        tensor = triton.InferInput(feature.name, [len(frame)], datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        tensors.append(tensor)
    outputs = None if binary else [triton.InferRequestedOutput(o.name, binary_data=False)
                                   for o in model.outputs]
    body, json_size = triton.InferenceServerClient.generate_request_body(tensors,
                                                                        outputs=outputs)
    headers = {HEADER_LENGTH: str(json_size)} if json_size is not None else {}
    return body, headers
