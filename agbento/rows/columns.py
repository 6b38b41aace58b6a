"""Request bodies as columns: JSON rows, CSV, Parquet and Arrow IPC decoded into one table.

The columnar path of a prediction request: no per-row dicts for files, one list per feature
for JSON rows. `RequestTable` is what the intake hands the endpoint (on the ASGI scope's
state) and `validate` checks it with `FeatureSchema.validate_table`, so the answers,
problems and counts are those of the row path (`validate_rows`).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd

from agbento.core.errors import ApiError, ErrorCode
from agbento.core.wire import PARQUET_TYPES
from agbento.rows.bounds import TableBounds, json_key_bytes
from agbento.rows.schema import (
    MISSING,
    ExtraFieldsPolicy,
    FeatureSchema,
    RowProblem,
    ValidatedTable,
    _type_name,
)

# The ASGI scope state key under which the intake leaves a decoded table for the endpoint.
STATE_KEY = "agbento_table"


@dataclass
class RequestTable:
    """One request's rows as columns. `not_objects`: JSON rows that are not objects (row ->
    problem), left out of `frame`; `positions[k]` is the request row of `frame` row k."""

    frame: pd.DataFrame
    total: int
    not_objects: dict[int, str] = field(default_factory=dict)
    positions: np.ndarray | None = None
    # JSON rows as the client sent them (the row path needs them back for a cached request)
    source: list[Any] | None = None

    def records(self) -> list[Any]:
        """The rows as JSON records (what the row path reads): a MISSING cell is no key."""
        if self.source is not None:
            return self.source
        from agbento.rows.schema import json_value

        names = [str(name) for name in self.frame.columns]
        columns = [[json_value(v) if v is not MISSING else MISSING for v in
                    self.frame[name].astype(object).tolist()] for name in names]
        return [{name: value for name, value in zip(names, row, strict=True)
                 if value is not MISSING} for row in zip(*columns, strict=True)] \
            if names else [{} for _ in range(self.total)]

    def validate(self, schema: FeatureSchema,
                 extra_fields: ExtraFieldsPolicy = "ignore") -> ValidatedTable:
        checked = schema.validate_table(self.frame, extra_fields)
        checked.total = self.total
        if self.positions is None:
            return checked
        checked.indices = self.positions[checked.indices]
        for problem in checked.problems:
            problem.row = int(self.positions[problem.row])
        checked.problems.extend(RowProblem(row, None, text)
                                for row, text in self.not_objects.items())
        checked.problems.sort(key=lambda p: p.row)  # stable: each row's own order stays
        return checked


def table_from_records(records: list[Any]) -> RequestTable:
    """JSON rows -> columns: one list per field; a key a row lacks is a MISSING cell."""
    rows = records
    not_objects: dict[int, str] = {}
    positions = None
    if not all(type(row) is dict for row in records):
        positions = np.array([i for i, row in enumerate(records) if isinstance(row, dict)],
                             dtype=np.int64)
        not_objects = {i: f"a row must be a JSON object, got {_type_name(row)}"
                       for i, row in enumerate(records) if not isinstance(row, dict)}
        rows = [records[i] for i in positions]
    names = list(dict.fromkeys(chain.from_iterable(rows)))
    columns = {}
    for name in names:
        # fromiter: a cell holding a list stays one cell
        columns[name] = np.fromiter((row.get(name, MISSING) for row in rows), dtype=object,
                                    count=len(rows))
    frame = pd.DataFrame(columns, index=pd.RangeIndex(len(rows)), copy=False)
    return RequestTable(frame, len(records), not_objects, positions, records)


def validate_records(schema: FeatureSchema, records: list[Any],
                     extra_fields: ExtraFieldsPolicy = "ignore") -> ValidatedTable:
    """`validate_rows`, per column."""
    return table_from_records(records).validate(schema, extra_fields)


# -- Arrow tables (Parquet and Arrow IPC bodies) -> columns ---------------------------------


def _is_nested(kind: Any) -> bool:
    import pyarrow as pa

    return bool(
        pa.types.is_nested(kind)
        or (pa.types.is_dictionary(kind) and pa.types.is_nested(kind.value_type))
    )


def _is_bytes(kind: Any) -> bool:
    import pyarrow as pa

    return bool(
        pa.types.is_string(kind) or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind) or pa.types.is_large_binary(kind)
    )


def decoded_bytes(column: Any) -> int:
    """Bytes a column takes once every value is its own (dictionaries expanded)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    chunks = column.chunks if hasattr(column, "chunks") else [column]
    total = 0
    for chunk in chunks:
        if pa.types.is_dictionary(chunk.type) and _is_bytes(chunk.type.value_type):
            lengths = pc.binary_length(chunk.dictionary)
            expanded = pc.sum(pc.take(lengths, chunk.indices)).as_py() or 0
            total += expanded + chunk.indices.nbytes
        else:
            total += chunk.nbytes
    return total


def _plain(kind: Any) -> bool:
    """Arrow types whose pandas column holds what `json_value` would make of each cell."""
    import pyarrow as pa

    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind)
                or pa.types.is_boolean(kind) or pa.types.is_string(kind)
                or pa.types.is_large_string(kind) or pa.types.is_timestamp(kind))


def series_of(column: Any) -> pd.Series:
    """One Arrow column as the pandas column `validate_table` reads (no per-row dicts).

    Plain types convert in C; any other type (dates, decimals, binary...) goes cell by cell
    through `json_value`, as the row path did, so both read a file the same way.
    """
    import pyarrow as pa

    from agbento.rows.schema import json_value

    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)  # its expanded size was bounded first
    if _plain(column.type):
        if pa.types.is_timestamp(column.type) and column.type.unit != "ns":
            column = column.cast(pa.timestamp("ns", column.type.tz))
        return column.to_pandas()
    cells = np.fromiter((json_value(v) for v in column.to_pandas().tolist()), dtype=object,
                        count=len(column))
    return pd.Series(cells, dtype=object)


def frame_of(table: Any, code: ErrorCode = ErrorCode.BAD_REQUEST) -> pd.DataFrame:
    """A file's table as pandas columns; a column pyarrow cannot convert (a string column
    holding bytes that are not UTF-8: neither Parquet nor Arrow checks them on read) is an
    ApiError with `code`, naming it."""
    columns = {}
    for i, name in enumerate(table.column_names):
        try:
            columns[name] = series_of(table.column(i))
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for bad data
            raise ApiError(code, f"column {_short(str(name))} cannot be read: "
                           f"{type(exc).__name__}: {str(exc)[:200]}") from None
    return pd.DataFrame(columns, index=pd.RangeIndex(table.num_rows))


def _short(name: str) -> str:
    return repr(name if len(name) <= 40 else name[:37] + "...")


def _check_arrow_schema(schema: Any, names: list[str], code: ErrorCode,
                        what: str) -> None:
    nested = [f for f in schema if f.name in names and _is_nested(f.type)]
    if nested:
        raise ApiError(code, f"column {_short(nested[0].name)} is nested ({nested[0].type}); "
                       "send flat columns")
    if len(set(names)) != len(names):
        raise ApiError(code, f"{what} repeats a column name")


def read_parquet(raw: bytes, bounds: TableBounds) -> Any:
    """A Parquet body as an Arrow table: its footer is checked against the bounds before any
    column is read, then it is read row group by row group, each checked as it decodes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    # the footer's own lists (row groups, columns, key-value pairs) and strings, bounded
    # while the footer itself is decoded
    longest_list = 4 * max(bounds.max_rows, bounds.max_columns) + 16
    footer_limits = {
        "thrift_container_size_limit": longest_list,
        "thrift_string_size_limit": bounds.max_decoded_bytes,
    }
    try:
        footer = pq.ParquetFile(io.BytesIO(raw), **footer_limits)
        metadata, schema = footer.metadata, footer.schema_arrow
        index_columns = {
            name for name in ((schema.pandas_metadata or {}).get("index_columns") or [])
            if isinstance(name, str)
        }
    except OSError as exc:
        if "Exceeded size limit" in str(exc):
            raise ApiError(
                ErrorCode.TOO_MANY_COLUMNS,
                f"the Parquet footer holds a list (columns, row groups or metadata) longer "
                f"than {longest_list}, or a string longer than {bounds.max_decoded_bytes} bytes",
            ) from None
        raise ApiError(ErrorCode.INVALID_PARQUET, f"cannot read the Parquet body: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a bad file
        raise ApiError(ErrorCode.INVALID_PARQUET, f"cannot read the Parquet body: {exc}") from None
    names = [name for name in schema.names if name not in index_columns]
    _check_arrow_schema(schema, names, ErrorCode.INVALID_PARQUET, "the Parquet body")
    bounds.check_field_count(metadata.num_columns, "the Parquet body")
    if metadata.num_row_groups > bounds.max_rows:  # only empty groups could be that many
        raise ApiError(ErrorCode.INVALID_PARQUET,
                       f"the Parquet body has {metadata.num_row_groups} row groups, more than "
                       f"the {bounds.max_rows} rows a request may hold")
    groups = [metadata.row_group(i) for i in range(metadata.num_row_groups)]
    rows = max(metadata.num_rows, sum(group.num_rows for group in groups))
    encoded = sum(group.total_byte_size for group in groups)
    bounds.check_table(rows, names, encoded, "the Parquet body")
    try:
        parquet = pq.ParquetFile(
            io.BytesIO(raw),
            **footer_limits,
            # strings stay dictionary-encoded until their expanded size has been checked
            read_dictionary=[f.name for f in schema if _is_bytes(f.type)],
        )
        tables = []
        read = 0
        decoded = json_key_bytes(rows, names)
        for index in range(parquet.num_row_groups):
            table = parquet.read_row_group(index, columns=names)
            read += table.num_rows
            bounds.check_rows(read)
            decoded += sum(decoded_bytes(column) for column in table.columns)
            bounds.check_decoded_bytes(decoded, "the Parquet body")
            tables.append(table)
        if not tables:
            bounds.check_rows(0)
        return pa.concat_tables(tables)
    except ApiError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a bad file
        raise ApiError(ErrorCode.INVALID_PARQUET, f"cannot read the Parquet body: {exc}") from None


def _flatbuffer_field(data: memoryview, table: int, index: int) -> int | None:
    """Where field `index` of the flatbuffer table at `table` is, or None when absent."""
    vtable = table - struct.unpack_from("<i", data, table)[0]
    vtable_size = struct.unpack_from("<H", data, vtable)[0]
    slot = 4 + 2 * index
    if slot + 2 > vtable_size:
        return None
    offset = struct.unpack_from("<H", data, vtable + slot)[0]
    return table + offset if offset else None


def _compressed(metadata: Any) -> bool:
    """Does an IPC message (a record or dictionary batch) carry compressed buffers? Their
    decompressed size is not bounded by the body's, so such streams are refused unread."""
    data = memoryview(metadata)
    root = struct.unpack_from("<I", data, 0)[0]
    header_type = _flatbuffer_field(data, root, 1)
    header = _flatbuffer_field(data, root, 2)
    if header_type is None or header is None:
        return False
    kind = data[header_type]
    batch = header + struct.unpack_from("<I", data, header)[0]
    if kind == 2:  # DictionaryBatch: its `data` (field 1) is a RecordBatch
        inner = _flatbuffer_field(data, batch, 1)
        if inner is None:
            return False
        batch = inner + struct.unpack_from("<I", data, inner)[0]
    elif kind != 3:  # not a RecordBatch either (a schema, a tensor)
        return False
    return _flatbuffer_field(data, batch, 3) is not None  # RecordBatch.compression


def read_arrow_stream(raw: bytes, bounds: TableBounds) -> Any:
    """An Arrow IPC stream body as a table, bounded as Parquet is: the schema before any
    batch, each batch's rows and decoded bytes as it is read (uncompressed batches are views
    of the body, so reading one costs no memory before its check)."""
    import pyarrow as pa

    buffer = pa.py_buffer(raw)
    try:
        messages = pa.ipc.MessageReader.open_stream(buffer)
        while True:
            try:
                message = messages.read_next_message()
            except StopIteration:
                break
            if _compressed(message.metadata):
                raise ApiError(ErrorCode.INVALID_ARROW, "compressed Arrow streams are not "
                               "accepted; send the stream uncompressed")
        reader = pa.ipc.open_stream(buffer)
        schema = reader.schema
        names = list(schema.names)
        _check_arrow_schema(schema, names, ErrorCode.INVALID_ARROW, "the Arrow stream")
        bounds.check_field_count(len(names), "the Arrow stream")
        bounds.check_names(names, "the Arrow stream")
        batches, rows, decoded = [], 0, 0
        for batch in reader:
            rows += batch.num_rows
            bounds.check_rows(rows)
            bounds.check_cells(rows * len(names), f"values ({rows} rows x {len(names)} columns)")
            batch.validate(full=True)
            decoded += sum(decoded_bytes(column) for column in batch.columns)
            bounds.check_decoded_bytes(decoded + json_key_bytes(rows, names), "the Arrow stream")
            batches.append(batch)
        bounds.check_rows(rows)
        return pa.Table.from_batches(batches, schema=schema)
    except ApiError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a bad stream
        raise ApiError(ErrorCode.INVALID_ARROW, f"cannot read the Arrow stream: {exc}") from None


# -- CSV -> columns -------------------------------------------------------------------------

# What pandas.read_csv reads as missing by default (pandas' STR_NA_VALUES): the same CSV
# answered the same before and after the move to a streaming reader. A CSV cell holding one
# is not sent (`MISSING`), as an absent JSON key.
CSV_MISSING = frozenset({
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
})
_BOM = b"\xef\xbb\xbf"


def read_csv_columns(raw: bytes, bounds: TableBounds) -> pd.DataFrame | None:
    """A CSV body as text columns in C (pyarrow), or None when the streaming reader must
    decide: a bound might be exceeded, or the file is unusual (quoted header, ragged rows,
    not UTF-8). That reader then answers as it always did, errors included."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    body = raw[len(_BOM):] if raw.startswith(_BOM) else raw
    end = body.find(b"\n")
    if end <= 0 or b'"' in body[:end]:
        return None
    try:
        header = body[:end].decode("utf-8").rstrip("\r").split(",")
    except UnicodeDecodeError:
        return None
    header = [name or f"Unnamed: {i}" for i, name in enumerate(header)]
    lines = body.count(b"\n") + 1
    if (len(header) > bounds.max_columns or len(set(header)) != len(header)
            or any(len(name) > bounds.max_name_chars for name in header)
            or lines > bounds.max_rows + 1 or lines * len(header) > bounds.max_cells
            or len(raw) + lines * json_key_bytes(1, header) > bounds.max_decoded_bytes):
        return None
    if len(body) > bounds.max_line_chars:
        # a record may span lines when quoted: then only a short body is surely within
        if b'"' in body:
            return None
        newlines = np.flatnonzero(np.frombuffer(body, dtype=np.uint8) == 0x0A)
        edges = np.concatenate(([-1], newlines, [len(body)]))
        if int(np.diff(edges).max()) > bounds.max_line_chars:
            return None
    try:
        table = pacsv.read_csv(
            io.BytesIO(body),
            read_options=pacsv.ReadOptions(column_names=header, skip_rows=1, use_threads=False),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                null_values=sorted(CSV_MISSING), strings_can_be_null=True,
                quoted_strings_can_be_null=True),
        )
    except Exception:  # noqa: BLE001 - the streaming reader words what is wrong
        return None
    columns = {}
    for name, column in zip(header, table.columns, strict=True):
        cells = column.to_numpy(zero_copy_only=False).astype(object)
        cells[column.is_null().to_numpy(zero_copy_only=False)] = MISSING
        columns[name] = cells
    return pd.DataFrame(columns, index=pd.RangeIndex(table.num_rows), copy=False)


def encode_table(table: Any, media: str, parquet_compression: str = "snappy") -> bytes:
    """A pyarrow table as a body of `media`: a Parquet file, else an Arrow IPC stream."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    if media in PARQUET_TYPES:
        import pyarrow.parquet as pq

        pq.write_table(table, sink, compression=parquet_compression)
    else:
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    return sink.getvalue().to_pybytes()
