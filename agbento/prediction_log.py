"""Sampled prediction logging (inputs and outputs) for offline drift analysis.

Off by default (`AGBENTO_PREDICTION_LOG_SAMPLE=0`). When on, that share of successful
requests is written, one JSON record per row, through BentoML's monitoring API
(`bentoml.monitor`, default file monitor): `$AGBENTO_PREDICTION_LOG_DIR/agbento_predictions/
data/data.<worker>.log` (rotated daily) and a column schema beside it. The rows are the
validated feature values the model saw, so they may hold personal data: mind retention.
"""

from __future__ import annotations

import random
from typing import Any

from agbento.schema import FeatureSchema

MONITOR_NAME = "agbento_predictions"
_DATA_TYPES = {"numeric": "numerical", "boolean": "categorical", "categorical": "categorical",
               "text": "text", "datetime": "text"}


class PredictionSampler:
    def __init__(self, schema: FeatureSchema, classification: bool, rate: float,
                 log_dir: str) -> None:
        self.schema = schema
        self.classification = classification
        self.rate = rate
        self.log_dir = log_dir

    def maybe_log(self, rows: list[list[Any]], predictions: list[Any]) -> bool:
        """Log this request's accepted rows with their predictions, with probability `rate`."""
        if self.rate <= 0 or not rows or random.random() >= self.rate:
            return False
        import bentoml

        with bentoml.monitor(MONITOR_NAME, monitor_class="default",
                             monitor_options={"log_path": self.log_dir}) as monitor:
            for feature, values in zip(self.schema.features, zip(*rows, strict=True),
                                       strict=True):
                monitor.log_batch(list(values), feature.name, "feature",
                                  _DATA_TYPES[feature.kind])
            monitor.log_batch(predictions, "prediction", "prediction",
                              "categorical" if self.classification else "numerical")
        return True
