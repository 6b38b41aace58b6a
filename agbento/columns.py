"""Request bodies as columns: JSON rows, CSV, Parquet and Arrow IPC decoded into one table.

The columnar path of a prediction request: no per-row dicts for files, one list per feature
for JSON rows. `RequestTable` is what the intake hands the endpoint (on the ASGI scope's
state) and `validate` checks it with `FeatureSchema.validate_table`, so the answers,
problems and counts are those of the row path (`validate_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd

from agbento.schema import (
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
    on_error: str = "fail"
    present: set[str] | None = None
    not_objects: dict[int, str] = field(default_factory=dict)
    positions: np.ndarray | None = None

    def validate(self, schema: FeatureSchema,
                 extra_fields: ExtraFieldsPolicy = "ignore") -> ValidatedTable:
        checked = schema.validate_table(self.frame, extra_fields, self.present)
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


def table_from_records(records: list[Any], on_error: str = "fail") -> RequestTable:
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
    return RequestTable(frame, len(records), on_error, None, not_objects, positions)


def validate_records(schema: FeatureSchema, records: list[Any],
                     extra_fields: ExtraFieldsPolicy = "ignore") -> ValidatedTable:
    """`validate_rows`, per column."""
    return table_from_records(records).validate(schema, extra_fields)
