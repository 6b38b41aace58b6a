"""Our Prometheus metrics (prefix `agbento_`), beside BentoML's own in /metrics.

Defined once at import; BentoML sets PROMETHEUS_MULTIPROC_DIR before it imports the
service, so every worker's values are merged in /metrics (BENTOML-NOTES.md). Labels are
bounded sets: endpoints, statuses, key *ids* (never keys), error codes, feature names.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# Up to this many rows an answer's classes are counted in Python (single rows, small batches).
FEW_ROWS = 64
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)

REQUESTS = Counter("agbento_requests", "API requests", ["endpoint", "status", "key_id"])
ROWS = Counter("agbento_rows", "Rows answered with 2xx", ["endpoint", "key_id"])
REQUEST_DURATION = Histogram("agbento_request_duration_seconds", "API request latency",
                             ["endpoint"], buckets=LATENCY_BUCKETS)
VALIDATION_FAILURES = Counter("agbento_validation_failures", "Requests refused with a 4xx",
                              ["reason"])
INFERENCE_DURATION = Histogram("agbento_inference_duration_seconds",
                               "Model time per merged batch", buckets=LATENCY_BUCKETS)
# Explanations cost 10-60 predictions of a row: a histogram of their own (seconds per merged
# call of the explainer), so /predict's model time stays comparable across releases.
EXPLAIN_DURATION = Histogram("agbento_explain_duration_seconds",
                             "Explainer time per merged call",
                             buckets=(*LATENCY_BUCKETS, 30, 60))
EXPLAINED_ROWS = Counter("agbento_explained_rows", "Rows explained, by method", ["method"])
BATCH_ROWS = Histogram("agbento_batch_rows", "Rows per merged model call",
                       buckets=SIZE_BUCKETS)
BATCH_REQUESTS = Histogram("agbento_batch_requests", "Requests per merged model call",
                           buckets=SIZE_BUCKETS)
MODEL_INFO = Gauge("agbento_model_info", "The served model (value 1)",
                   ["tag", "problem_type"], multiprocess_mode="max")
MODEL_SWAPS = Counter("agbento_model_swaps", "Model versions swapped in while serving (result: "
                      "ok, or failed: the new version did not load or warm up; the old one "
                      "kept serving)", ["result"])
SHADOW_REQUESTS = Counter("agbento_shadow_requests", "Requests offered to the shadow model "
                          "(result: scored, dropped: its queue was full, error)",
                          ["shadow", "result"])
SHADOW_ROWS = Counter("agbento_shadow_rows", "Rows the shadow model scored, by agreement with "
                      "the served answer (a regressor disagrees beyond 10%)",
                      ["shadow", "agreement"])
SHADOW_DIFFERENCE = Histogram("agbento_shadow_difference", "Shadow value minus served value "
                              "per row (regression)", ["shadow"],
                              buckets=(-1e4, -1e3, -100, -10, -1, -0.1, 0, 0.1, 1, 10, 100, 1e3,
                                       1e4))
MODEL_READY = Gauge("agbento_model_ready",
                    "1 once the model service warmed up; 0 while its model is broken",
                    multiprocess_mode="livemax")
INTERNAL_ERRORS = Counter("agbento_internal_errors",
                          "Requests answered 500 internal_error (an exception in the service)")
PREDICTED_CLASSES = Counter("agbento_predictions", "Predicted classes", ["class"])
CONFIDENCE = Histogram("agbento_prediction_confidence", "Top class probability per row",
                       buckets=(0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0))
INPUT_MISSING = Counter("agbento_input_missing_values", "Null or absent values", ["feature"])
INPUT_UNSEEN = Counter("agbento_input_unseen_categories",
                       "Accepted categories never seen in training", ["feature"])
INPUT_OUT_OF_RANGE = Counter("agbento_input_out_of_range",
                             "Accepted numbers outside the training range", ["feature"])
CACHE_LOOKUPS = Counter("agbento_cache_lookups", "Prediction cache lookups, per row",
                        ["result"])  # hit | miss | error
CACHE_LATENCY = Histogram("agbento_cache_latency_seconds", "Prediction cache time per request",
                          ["operation"],  # lookup | store
                          buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1))
RATE_LIMIT_FAIL_OPEN = Counter("agbento_rate_limit_fail_open",
                               "Requests admitted unchecked: the shared rate limit's Redis failed")

_regression_values: Histogram | None = None


def regression_value_histogram(low: float, high: float) -> Histogram:
    """Predicted values on 20 buckets over the training label range (made once)."""
    global _regression_values
    if _regression_values is None:
        step = (high - low) / 20 or 1.0
        buckets = sorted({round(low + i * step, 6) for i in range(21)})
        _regression_values = Histogram("agbento_prediction_value", "Predicted values",
                                       buckets=buckets)
    return _regression_values


def observe_inputs(missing: dict[str, int], unseen: dict[str, int],
                   out_of_range: dict[str, int]) -> None:
    for counter, counts in ((INPUT_MISSING, missing), (INPUT_UNSEEN, unseen),
                            (INPUT_OUT_OF_RANGE, out_of_range)):
        for feature, count in counts.items():
            counter.labels(feature=feature).inc(count)


def observe_classes(predictions: pa.Array, probabilities: np.ndarray | None,
                    answered: np.ndarray) -> None:
    """Predicted classes counted, and each answered row's top class probability (a row per
    answer row, a column per class)."""
    if len(predictions) <= FEW_ROWS:  # Arrow's fixed cost per call is more than the loop's
        counts = Tally(label for label in predictions.to_pylist() if label is not None).items()
    else:
        found = pc.value_counts(predictions.drop_null())
        counts = zip(found.field("values").to_pylist(), found.field("counts").to_pylist(),
                     strict=True)
    for label, count in counts:
        PREDICTED_CLASSES.labels(**{"class": str(label)}).inc(count)
    if probabilities is None or not probabilities.size:
        return
    if not answered.all():
        probabilities = probabilities[answered]
    observe_many(CONFIDENCE, probabilities.max(axis=1) if len(probabilities) else [])


def observe_values(predictions: pa.Array, histogram: Histogram) -> None:
    if pa.types.is_integer(predictions.type) or pa.types.is_floating(predictions.type):
        observe_many(histogram, predictions.drop_null().to_numpy())


def observe_many(histogram: Histogram, values: Sequence[float]) -> None:
    """`histogram.observe(v)` for every value, as one count per bucket: a request's 10,000
    rows cost one increment per bucket, not 10,000 (each a locked write in BentoML's
    multiprocess mode; 15 ms per 10,000 rows measured)."""
    buckets = getattr(histogram, "_buckets", None)
    bounds = getattr(histogram, "_upper_bounds", None)
    if buckets is None or bounds is None or getattr(histogram, "_labelnames", ()):
        for value in values:  # a prometheus_client whose internals differ: the public way
            histogram.observe(value)
        return
    if not len(values):
        return
    array = np.asarray(values, dtype=np.float64)
    # Histogram.observe counts a value in the first bucket whose bound is >= it
    counts = np.bincount(np.searchsorted(bounds, array, side="left"), minlength=len(bounds))
    histogram._sum.inc(float(array.sum()))  # noqa: SLF001 - see above
    for bucket, count in zip(buckets, counts.tolist(), strict=False):
        if count:
            bucket.inc(count)


class PredictionSink(Protocol):
    def maybe_log(self, rows: list[list[Any]], predictions: Callable[[], list[Any]]) -> bool: ...


class AnswerColumns(Protocol):
    predictions: pa.Array
    matrix: np.ndarray | None  # probabilities: a row per answer row, a column per class
    answered: np.ndarray


class ScoredValues(Protocol):
    """A request's answer (`inference.ScoredRequest`): its Arrow columns, from the model's
    arrays without JSON when it answered in this process."""

    @property
    def columns(self) -> AnswerColumns: ...


class PredictionObserver:
    """What was predicted, for dashboards (classes and confidence, or values), and for the
    sampled prediction log."""

    def __init__(self, classification: bool, label_range: Sequence[float] | None,
                 sink: PredictionSink) -> None:
        self.classification = classification
        self.sink = sink
        self.values = (regression_value_histogram(*label_range)
                       if label_range and not classification else None)

    def observe(self, rows: list[list[Any]], scored: ScoredValues | None) -> None:
        if scored is None:
            return
        columns = scored.columns
        # Python values only for a request the sampler logs
        self.sink.maybe_log(rows, columns.predictions.to_pylist)
        if self.classification:
            observe_classes(columns.predictions, columns.matrix, columns.answered)
        elif self.values is not None:
            observe_values(columns.predictions, self.values)
