"""What a batch run says about the model at its end: the features that drift most from the
training rows, and (with `--label COL`) the run's metrics beside the holdout's.

Drift is tallied on a sample of every chunk (`DRIFT_SAMPLE_ROWS` rows, validated by the
served schema and counted into the model card's reference bins), so watching costs a small
fixed share of the run; the labels are kept in input order and measured against the
written output once every chunk is done (rows the service refused are left out).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from agbento.models.store import ModelCard
from agbento.monitoring.quality import LabelSpec, read_labels, score_batch
from agbento.monitoring.reference import BinTally, Reference
from agbento.rows.schema import FeatureSchema

# rows of each chunk validated and counted for drift
DRIFT_SAMPLE_ROWS = 1_000
TOP_DRIFTING = 5


class RunWatch:
    def __init__(self, info: dict[str, Any], label: str | None) -> None:
        # the served model's card as /model/info (or the local store) describes it
        card = ModelCard(tag=str(info["tag"]), labels={}, metadata=info, path=Path())
        self.schema = FeatureSchema.from_dict(info["schema"])
        stored = info.get("reference_distributions")
        self.tally = BinTally(Reference.from_dict(stored)) if stored else None
        self.label = label
        self.spec = LabelSpec.of(card) if label else None
        self.labels: list[Any] = []

    def take(self, chunk: pd.DataFrame) -> pd.DataFrame:
        """Count a sample of `chunk` for drift, keep its labels; the chunk to score (without
        the label column)."""
        if self.label is not None:
            if self.label not in chunk.columns and len(chunk.columns):
                from agbento.offline.scorers import BatchError

                raise BatchError(f"--label {self.label!r} is not a column of the input")
            self.labels.extend(chunk[self.label].tolist() if self.label in chunk else [])
            chunk = chunk.drop(columns=[self.label], errors="ignore")
        if self.tally is not None and len(chunk):
            from agbento.offline.scorers import validate_chunk

            sample = chunk.iloc[:: max(1, len(chunk) // DRIFT_SAMPLE_ROWS)]
            try:
                self.tally.add(validate_chunk(self.schema, sample).frame)
            except Exception as exc:  # noqa: BLE001 - watching must never stop the scoring
                print(f"warning: no drift report for this run ({type(exc).__name__}: {exc})",
                      file=sys.stderr)
                self.tally = None
        return chunk

    def report(self, output: Path) -> dict[str, Any]:
        """The run's summary lines: top drifting features, and the label metrics."""
        summary: dict[str, Any] = {}
        if self.tally is not None and self.tally.rows:
            summary["drift_sample_rows"] = self.tally.rows
            summary["top_drifting"] = [{"feature": name, "psi": round(value, 4)}
                                       for name, value in self.tally.top_drifting(TOP_DRIFTING)]
        if self.spec is not None:
            summary["label_metrics"] = self.metrics(output)
        return summary

    def metrics(self, output: Path) -> dict[str, Any]:
        assert self.spec is not None
        scored = read_output(output)
        labels = read_labels(self.labels, self.spec)
        predicted = scored["prediction"].to_numpy(dtype=object)[labels.rows]
        answered = np.array([p is not None and p == p for p in predicted], dtype=bool)
        keys = [c.removeprefix("proba_") for c in scored.columns if c.startswith("proba_")]
        probabilities = (scored[[f"proba_{k}" for k in keys]].to_numpy(dtype=np.float64)
                         [labels.rows][answered] if keys else None)
        values = score_batch(self.spec, labels.values[answered], predicted[answered],
                             probabilities, keys or None)
        return {"rows": int(answered.sum()), "unlabelled_rows": len(labels.problems),
                "eval_metric": self.spec.eval_metric, "metrics": values,
                "holdout_metrics": {k: v for k, v in self.spec.holdout_metrics.items()
                                    if k in values}}


def read_output(path: Path) -> pd.DataFrame:
    """The written output's prediction and probability columns, in input order."""
    if path.suffix == ".csv" or path.name.endswith(".csv.gz"):
        frame = pd.read_csv(path, keep_default_na=True)
    else:
        frame = pd.read_parquet(path)
    kept = [c for c in frame.columns if c == "prediction" or c.startswith("proba_")]
    frame = frame[kept]
    return frame.astype({"prediction": object}).where(frame.notna(), None)
