"""Small request bodies that decode to a lot: the attacks the input bounds must stop early."""

from __future__ import annotations

import io
import json
from functools import cache

import pyarrow as pa
import pyarrow.parquet as pq

PARQUET = "application/vnd.apache.parquet"


def parquet_bytes(table: pa.Table, row_group_size: int | None = None) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", row_group_size=row_group_size)
    return sink.getvalue()


@cache
def parquet_of_rows(rows: int) -> bytes:
    """Constant columns: run-length encoded, `rows` = 20M is about 150 KB on the wire."""
    group = min(rows, 1_000_000)
    chunk = pa.table({
        "island": pa.repeat("Dream", group).dictionary_encode(),
        "year": pa.repeat(2008, group),
        "bill_length_mm": pa.nulls(group, pa.float64()),
    })
    sink = io.BytesIO()
    with pq.ParquetWriter(sink, chunk.schema, compression="zstd") as writer:
        for start in range(0, rows, group):
            writer.write_table(chunk.slice(0, min(group, rows - start)), row_group_size=group)
    return sink.getvalue()


@cache
def parquet_of_long_strings(rows: int, chars: int) -> bytes:
    """One long string in a dictionary page, repeated on every row: tiny compressed."""
    value = "x" * chars
    return parquet_bytes(pa.table({"island": pa.repeat(value, rows).dictionary_encode()}))


@cache
def parquet_of_columns(columns: int) -> bytes:
    return parquet_bytes(pa.table({f"c{i}": pa.array([0], pa.int8()) for i in range(columns)}))


def parquet_with_column_name(name: str) -> bytes:
    return parquet_bytes(pa.table({name: ["Dream"], "year": [2008]}))


def parquet_of_lists(rows: int, per_row: int) -> bytes:
    values = pa.repeat(1, rows * per_row)
    offsets = pa.array(range(0, rows * per_row + 1, per_row), pa.int32())
    return parquet_bytes(pa.table({"year": pa.ListArray.from_arrays(offsets, values)}))


def json_number(digits: int) -> bytes:
    return b'{"data": [{"island": "Dream", "year": ' + b"9" * digits + b"}]}"


def json_field_name(chars: int) -> bytes:
    return json.dumps({"data": [{"island": "Dream", "year": 2008, "k" * chars: 1}]}).encode()


def json_keys_per_row(keys: int) -> bytes:
    row = {f"k{i}": 0 for i in range(keys)}
    return json.dumps({"data": [{"island": "Dream", "year": 2008, **row}]}).encode()


def json_empty_rows(size: int) -> bytes:
    """As many `{}` rows as fit in `size` bytes: 64-byte dicts from 3 bytes each."""
    count = (size - 20) // 3
    return b'{"data": [' + b",".join([b"{}"] * count) + b"]}"


def json_empty_lists(size: int) -> bytes:
    count = (size - 60) // 3
    return (b'{"dataframe_split": {"columns": [], "data": ['
            + b",".join([b"[]"] * count) + b"]}}")


def json_short_strings(size: int) -> bytes:
    """Distinct 2-character strings are not cached by Python: 59 bytes each from 5."""
    count = (size - 40) // 5
    alphabet = [chr(c) for c in range(0x41, 0x5b)]
    values = ",".join(f'"{alphabet[i % 26]}{alphabet[i // 26 % 26]}"' for i in range(count))
    return ('{"data": [{"island": [' + values + "]}]}").encode()


def csv_of_rows(rows: int) -> bytes:
    return b"island,year\n" + b"Dream,2008\n" * rows


def csv_of_columns(columns: int) -> bytes:
    header = ",".join(f"c{i}" for i in range(columns))
    return (header + "\n" + ",".join("0" * columns) + "\n").encode()


def csv_long_line(chars: int) -> bytes:
    return b"island,year\n" + b"D" * chars + b",2008\n"


def csv_field_name(chars: int) -> bytes:
    return b"island,year," + b"k" * chars + b"\nDream,2008,1\n"


ARROW = "application/vnd.apache.arrow.stream"


def arrow_bytes(table: pa.Table, compression: str | None = None) -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def arrow_of_long_strings(rows: int, chars: int) -> bytes:
    """One long string in the stream's dictionary, repeated on every row: a tiny body."""
    return arrow_bytes(pa.table({"island": pa.repeat("x" * chars, rows).dictionary_encode()}))


def arrow_of_compressed_zeros(rows: int) -> bytes:
    """A zstd-compressed batch that would decompress to 8 bytes a row."""
    return arrow_bytes(pa.table({"year": pa.repeat(0, rows).cast(pa.int64())}), "zstd")


def arrow_of_rows(rows: int) -> bytes:
    """Rows of a null-typed column: no buffers at all, only a length."""
    return arrow_bytes(pa.table({"year": pa.nulls(rows)}))
