"""Sampled prediction logging (inputs and outputs) for offline drift analysis.

Off by default (`AGBENTO_PREDICTION_LOG_SAMPLE=0`). When on, that share of successful
requests is written, one JSON record per row, through BentoML's monitoring API
(`bentoml.monitor`, default file monitor): `$AGBENTO_PREDICTION_LOG_DIR/agbento_predictions/
data/data.<worker>.log` (rotated daily) and a column schema beside it. The rows are the
validated feature values the model saw, so they may hold personal data: mind retention.

Logging never costs a prediction: if the directory cannot be made or written (read-only,
full, a file in its place), the sampler logs one error saying why and stops logging in
that worker; the predictions go on. BentoML's own handlers would print a traceback per
record instead, so the monitor runs with `prediction_log.yaml`, whose handlers raise.
"""

from __future__ import annotations

import logging
import logging.handlers
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from agbento.rows.schema import FeatureSchema, json_value

MONITOR_NAME = "agbento_predictions"
LOG_CONFIG = Path(__file__).with_name("prediction_log.yaml")
_DATA_TYPES = {"numeric": "numerical", "boolean": "categorical", "categorical": "categorical",
               "text": "text", "datetime": "text"}

logger = logging.getLogger("agbento.monitoring.prediction_log")


class _RaiseOnError:
    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        raise  # called inside `emit`'s except block: re-raise the write's error


class DailyFileHandler(_RaiseOnError, logging.handlers.TimedRotatingFileHandler):
    """The data file: rotated daily, as BentoML's default; a failed write raises."""


class FileHandler(_RaiseOnError, logging.FileHandler):
    """The schema file; a failed write raises."""


class PredictionSampler:
    def __init__(self, schema: FeatureSchema, classification: bool, rate: float,
                 log_dir: str) -> None:
        self.schema = schema
        self.classification = classification
        self.rate = rate
        self.log_dir = log_dir
        self.stopped: str | None = None  # why logging stopped, once it has

    def maybe_log(self, rows: list[list[Any]], predictions: Callable[[], list[Any]]) -> bool:
        """Log this request's accepted rows with their predictions (made only when logged),
        with probability `rate`."""
        if self.stopped or self.rate <= 0 or not rows or random.random() >= self.rate:
            return False
        try:
            write_rows(MONITOR_NAME, self.log_dir, self.schema, rows,
                       {"prediction": predictions()}, self.classification)
        except Exception as exc:  # noqa: BLE001 - whatever it is, the prediction stands
            self.stopped = f"{type(exc).__name__}: {exc}"
            logger.error("prediction logging stopped: cannot write to AGBENTO_PREDICTION_LOG_DIR"
                         "=%s (%s); predictions go on unlogged until the service restarts",
                         self.log_dir, self.stopped)
            return False
        return True


def write_rows(monitor_name: str, log_dir: str, schema: FeatureSchema,
               rows: list[list[Any]] | pd.DataFrame, outputs: dict[str, list[Any]],
               classification: bool) -> None:
    """Rows (value lists in schema order, or a model frame) and their outputs, one JSON
    record per row, into the monitor `monitor_name`'s files under `log_dir`; raises what
    the write raises."""
    import bentoml

    if isinstance(rows, pd.DataFrame):
        columns = [[json_value(v) for v in rows[f.name].tolist()] if f.name in rows.columns
                   else [None] * len(rows) for f in schema.features]
    else:
        columns = [list(values) for values in zip(*rows, strict=True)]
    with bentoml.monitor(monitor_name, monitor_class="default",
                         monitor_options={"log_path": log_dir,
                                          "log_config_file": str(LOG_CONFIG)}) as monitor:
        for feature, values in zip(schema.features, columns, strict=True):
            monitor.log_batch(values, feature.name, "feature", _DATA_TYPES[feature.kind])
        for name, values in outputs.items():
            kind = "categorical" if classification or name not in (
                "prediction", "shadow_prediction") else "numerical"
            monitor.log_batch([json_value(v) for v in values], name,
                              "prediction" if name.endswith("prediction") else "feature", kind)
