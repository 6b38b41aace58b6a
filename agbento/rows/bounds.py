"""Bounds every request body is checked against *before* it is decoded into memory.

A small body can describe a lot: 200 KB of Parquet run-length encodes 20 million rows, 3
bytes of JSON (`{},`) become a 64-byte dict, one CSV header can name a million columns.
So each decoder learns the size of what it is about to build first (a Parquet footer,
a CSV line, a JSON byte count) and checks it here, with the same bounds for every media
type. A future Arrow IPC decoder uses `check_table` with its schema and batch lengths,
as Parquet does with its footer.

The memory budget this gives one request (docs/predict.md, "The input contract"): at most
4 x AGBENTO_MAX_BODY_BYTES + BYTES_PER_CELL x AGBENTO_MAX_CELLS over the resting size,
plus the model's own batch cost.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from agbento.core.errors import ApiError, ErrorCode

# Longest field name: a JSON object key, a CSV header cell, a Parquet column name.
MAX_FIELD_NAME_CHARS = 256
# Fields in one row (keys of one JSON object, CSV or Parquet columns, dataframe_split columns).
MAX_FIELDS_PER_ROW = 1_000
# Longest JSON number literal. Python's int() is quadratic in the digits (and refuses more
# than 4,300); no float or int64 needs more than a few dozen characters.
MAX_NUMBER_CHARS = 1_000
# Longest CSV record (one logical line, all its fields), in characters.
MAX_CSV_LINE_CHARS = 1024 * 1024
# Python's cost of one decoded value (a float, a short str, a dict slot...), for the budget.
BYTES_PER_CELL = 128
# A file (CSV, Parquet) may decode to this many times the body limit: its values, and the
# field names the canonical JSON repeats on every row.
DECODED_BYTES_PER_BODY_BYTE = 2


MAX_ROWS_VARIABLE = "AGBENTO_MAX_ROWS"
MAX_EXPLAIN_ROWS_VARIABLE = "AGBENTO_MAX_EXPLAIN_ROWS"


def check_row_count(count: int, limit: int, variable: str = MAX_ROWS_VARIABLE) -> None:
    """The one check of a request's row count, for every way rows arrive; the answer
    names the variable that sets `limit`."""
    if count == 0:
        raise ApiError(ErrorCode.EMPTY_DATA, "the request has no rows")
    if count > limit:
        raise ApiError(
            ErrorCode.TOO_MANY_ROWS,
            f"{count} rows exceed the limit of {limit} per request ({variable}); "
            "split the request or use the batch client",
        )


@dataclass(frozen=True)
class RowLimit:
    """Rows one request may hold, and the variable that says so (named in the 413)."""

    rows: int
    variable: str = MAX_ROWS_VARIABLE

    def check(self, count: int) -> None:
        check_row_count(count, self.rows, self.variable)

    @classmethod
    def for_explanations(cls, max_rows: int, max_explain_rows: int) -> RowLimit:
        """/explain's limit: AGBENTO_MAX_EXPLAIN_ROWS, never above AGBENTO_MAX_ROWS."""
        if max_explain_rows <= max_rows:
            return cls(max_explain_rows, MAX_EXPLAIN_ROWS_VARIABLE)
        return cls(max_rows, MAX_ROWS_VARIABLE)


def _preview(name: str, limit: int = 40) -> str:
    return repr(name if len(name) <= limit else name[: limit - 3] + "...")


@dataclass(frozen=True)
class TableBounds:
    """The limits of one request's table, whatever its media type."""

    max_rows: int
    max_cells: int
    max_decoded_bytes: int
    max_columns: int = MAX_FIELDS_PER_ROW
    max_name_chars: int = MAX_FIELD_NAME_CHARS
    max_number_chars: int = MAX_NUMBER_CHARS
    max_line_chars: int = MAX_CSV_LINE_CHARS
    rows_variable: str = MAX_ROWS_VARIABLE  # named when `max_rows` refuses a request

    @classmethod
    def for_service(
        cls,
        max_rows: int,
        max_body_bytes: int,
        max_cells: int | None = None,
        feature_names: Sequence[str] = (),
    ) -> TableBounds:
        """The bounds, widened where the served model itself needs more (a wide model)."""
        longest = max((len(name) for name in feature_names), default=0)
        return cls(
            max_rows=max_rows,
            max_cells=max(max_cells or 100 * max_rows, max_rows * len(feature_names)),
            max_decoded_bytes=DECODED_BYTES_PER_BODY_BYTE * max_body_bytes,
            max_columns=max(MAX_FIELDS_PER_ROW, 2 * len(feature_names)),
            max_name_chars=max(MAX_FIELD_NAME_CHARS, longest),
        )

    def with_rows(self, limit: RowLimit) -> TableBounds:
        """These bounds with another row limit (/explain's), the rest unchanged."""
        return replace(self, max_rows=limit.rows, rows_variable=limit.variable)

    def check_rows(self, rows: int) -> None:
        check_row_count(rows, self.max_rows, self.rows_variable)

    def check_cells(self, cells: int, what: str = "values") -> None:
        if cells > self.max_cells:
            raise ApiError(
                ErrorCode.TOO_MANY_VALUES,
                f"the body holds {cells} {what}, more than the limit of {self.max_cells} "
                "per request (AGBENTO_MAX_CELLS); split the request or use the batch client",
            )

    def check_field_count(self, count: int, where: str) -> None:
        if count > self.max_columns:
            raise ApiError(
                ErrorCode.TOO_MANY_COLUMNS,
                f"{where} has {count} fields, more than the limit of {self.max_columns}",
            )

    def check_name(self, name: str, where: str) -> None:
        if len(name) > self.max_name_chars:
            raise ApiError(
                ErrorCode.FIELD_NAME_TOO_LONG,
                f"{where} has a field name of {len(name)} characters ({_preview(name)}), "
                f"longer than the limit of {self.max_name_chars}",
            )

    def check_names(self, names: Iterable[str], where: str) -> None:
        for name in names:
            self.check_name(name, where)

    def check_number(self, literal: str) -> None:
        if len(literal) > self.max_number_chars:
            raise ApiError(
                ErrorCode.NUMBER_TOO_LONG,
                f"a number literal of {len(literal)} characters ({literal[:20]}...) is longer "
                f"than the limit of {self.max_number_chars}",
            )

    def check_decoded_bytes(self, size: int, what: str) -> None:
        if size > self.max_decoded_bytes:
            raise ApiError(
                ErrorCode.DECODED_TOO_LARGE,
                f"{what} decodes to {size} bytes, more than the limit of "
                f"{self.max_decoded_bytes} ({DECODED_BYTES_PER_BODY_BYTE} x "
                "AGBENTO_MAX_BODY_BYTES); split the request or use the batch client",
            )

    def check_table(
        self, rows: int, names: Sequence[str], decoded_bytes: int, what: str
    ) -> None:
        """A columnar file's shape, from its metadata, before any column is read."""
        self.check_field_count(len(names), what)
        self.check_names(names, what)
        self.check_rows(rows)
        self.check_cells(rows * len(names), f"values ({rows} rows x {len(names)} columns)")
        self.check_decoded_bytes(decoded_bytes + json_key_bytes(rows, names), what)


def json_key_bytes(rows: int, names: Sequence[str]) -> int:
    """What the canonical JSON spends repeating `names` on each of `rows` rows."""
    return rows * sum(len(name) + 4 for name in names)
