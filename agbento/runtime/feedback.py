"""POST /feedback: labelled rows scored by the served version and measured against their
labels, beside the holdout's metrics.

A feedback body is any /predict body whose rows also hold the label column the model card
names. The label is taken out of each row before the rows are checked (so
`AGBENTO_EXTRA_FIELDS=reject` does not refuse it); a missing or unusable label is a
problem of that row and field, as a bad feature value is: with `on_error=fail` (the
default) any problem is a 422 naming every row and field, with `skip` the other rows are
measured. Feedback rows are not counted as drift (they were predicted before) nor observed
as predictions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agbento.core.errors import ApiError, ErrorCode
from agbento.monitoring.quality import (
    Labels,
    LabelSpec,
    evaluate_feedback,
    read_labels,
)
from agbento.rows.columns import RequestTable
from agbento.rows.schema import MISSING, OnError, RowProblem
from agbento.runtime.contract import now_iso
from agbento.runtime.served import Accepted, ServedModel


class FeedbackScorer:
    """One request's feedback on one version: its label, its counters (made with the
    version; None when monitoring is off: the batch is measured, not counted)."""

    def __init__(self, served: ServedModel) -> None:
        self.served = served
        self.label = str(served.card.metadata.get("label"))
        self.counter = served.feedback
        self.spec = self.counter.spec if self.counter is not None else LabelSpec.of(served.card)

    async def evaluate(self, data: Any, on_error: OnError, request_id: str,
                       table: RequestTable | None = None) -> dict[str, Any]:
        values, data = self.take_labels(data, table)
        labels = read_labels(values, self.spec)
        served = self.served
        if table is not None:
            rows: Accepted = served.contract.accept_table(table, "skip")
        else:
            rows = served.contract.accept(data, "skip")
        problems = [*rows.problems, *(RowProblem(row, self.label, problem)
                                      for row, problem in labels.problems.items())]
        if problems and on_error == "fail":
            bad_rows = len({p.row for p in problems})
            raise ApiError(ErrorCode.INVALID_ROWS,
                           f"{len(problems)} problem(s) in {bad_rows} of {len(values)} row(s)",
                           [p.to_dict() for p in sorted(problems, key=lambda p: p.row)])
        scored = await served.score_accepted(rows)
        failures = served.contract.model_failures(rows, scored, on_error)
        failed = {f["row"] for f in failures}
        # the rows with a usable label that the model scored, in scored order
        label_of = dict(zip(labels.rows.tolist(), labels.values.tolist(), strict=True))
        used = [k for k, row in enumerate(rows.indices)
                if row in label_of and row not in failed]
        actual = [label_of[rows.indices[k]] for k in used]
        answered = Labels(np.array(actual, dtype=labels.values.dtype),
                          np.array([rows.indices[k] for k in used], dtype=np.int64))
        predicted: list[Any] = []
        matrix = keys = None
        if scored is not None and used:
            columns = scored.columns
            predicted = columns.predictions.take(used).to_pylist()
            if columns.matrix is not None:
                matrix, keys = columns.matrix[used], columns.keys
        report = evaluate_feedback(self.spec, answered, predicted, matrix, keys).to_dict()
        if self.counter is not None:
            self.counter.observe(answered.values, predicted)
        errors = sorted([p.to_dict() for p in problems] + failures, key=lambda e: e["row"])
        report.pop("refused", None)
        return {**report, "errors": errors, "model": served.contract.reference,
                "timestamp": now_iso(), "request_id": request_id}

    def take_labels(self, data: Any,
                    table: RequestTable | None) -> tuple[list[Any], Any]:
        """The label of every request row (None where absent), and the rows without it."""
        if table is not None:
            values: list[Any] = [None] * table.total
            if self.label in table.frame.columns:
                column = table.frame[self.label].astype(object).tolist()
                table.frame = table.frame.drop(columns=[self.label])
                at = (table.positions.tolist() if table.positions is not None
                      else range(len(column)))
                for position, value in zip(at, column, strict=True):
                    values[position] = None if value is MISSING else value
            return values, data
        if not isinstance(data, list):
            raise ApiError(ErrorCode.BAD_REQUEST, "`data` must be a list of row objects")
        values = [row.get(self.label) if isinstance(row, dict) else None for row in data]
        rows = [{k: v for k, v in row.items() if k != self.label} if isinstance(row, dict)
                else row for row in data]
        return values, rows
