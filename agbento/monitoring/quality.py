"""Live quality from labels: rows whose true label arrives later (POST /feedback, or a batch
run with `--label`) scored with the served model and compared with the holdout.

    agbento_feedback_rows_total{model}                            labelled rows scored
    agbento_feedback_outcomes_total{model, actual, predicted}     classification
    agbento_feedback_correct_total{model}                         classification
    agbento_feedback_absolute_error_total{model}                  regression: sum |y - p|
    agbento_feedback_squared_error_total{model}                   regression: sum (y - p)^2
    agbento_holdout_score{model, metric}                          the card's holdout metrics

Counters hold only sums, so Prometheus can compute accuracy, MAE and RMSE over any window
(`agbento:feedback_score:24h`); the correct count is its own counter because PromQL cannot
pick the diagonal (actual == predicted) out of the outcomes. A batch's own metrics (every
metric the holdout reports: AutoGluon's functions, AutoGluon's sign, higher is better) are
computed in Python by `score_batch`.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter as Tally
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prometheus_client import Counter, Gauge

from agbento.models.store import ModelCard
from agbento.rows.schema import is_classification, json_value

FEEDBACK_ROWS = Counter("agbento_feedback_rows", "Labelled rows scored for live quality",
                        ["model"])
FEEDBACK_OUTCOMES = Counter("agbento_feedback_outcomes",
                            "Labelled rows by actual and predicted class",
                            ["model", "actual", "predicted"])
FEEDBACK_CORRECT = Counter("agbento_feedback_correct",
                           "Labelled rows whose predicted class was the actual one", ["model"])
FEEDBACK_ABSOLUTE_ERROR = Counter("agbento_feedback_absolute_error",
                                  "Sum of |actual - predicted| over labelled rows", ["model"])
FEEDBACK_SQUARED_ERROR = Counter("agbento_feedback_squared_error",
                                 "Sum of (actual - predicted)^2 over labelled rows", ["model"])
# The same value in every worker: max merges them.
HOLDOUT_SCORE = Gauge("agbento_holdout_score",
                      "The model's holdout metrics (AutoGluon's sign: higher is better)",
                      ["model", "metric"], multiprocess_mode="max")


@dataclass(frozen=True)
class LabelSpec:
    """What a label is for one model: its problem, its classes (by their text, as every
    answer and metric label writes them), and the holdout metrics to compare with."""

    problem_type: str
    classes: tuple[str, ...] = ()
    positive_class: str | None = None  # binary: the class AutoGluon scores as positive
    eval_metric: str | None = None
    holdout_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def classification(self) -> bool:
        return is_classification(self.problem_type)

    @classmethod
    def of(cls, card: ModelCard) -> LabelSpec:
        classes = tuple(str(c) for c in card.schema.label.classes or ())
        stored = card.reference_distributions or {}
        positive = stored.get("positive_class")
        if positive is None and card.problem_type == "binary" and len(classes) == 2:
            positive = classes[1]  # AutoGluon's default: the later one in sorted order
        return cls(card.problem_type, classes, None if positive is None else str(positive),
                   card.metadata.get("eval_metric"),
                   holdout_scores(card.metadata.get("holdout_metrics") or {}))


@dataclass
class Labels:
    """Labels read for scoring: `values` (class text, or float64 for regression) for the
    rows in `rows`; `problems` says why each other row's label cannot be used."""

    values: np.ndarray
    rows: np.ndarray
    problems: dict[int, str] = field(default_factory=dict)


def read_labels(values: Sequence[Any], spec: LabelSpec) -> Labels:
    """Client-sent labels checked against the model: a known class, or a finite number."""
    kept: list[Any] = []
    rows: list[int] = []
    problems: dict[int, str] = {}
    known = set(spec.classes)
    for row, raw in enumerate(values):
        value = json_value(raw)
        if value is None:
            problems[row] = "missing label"
            continue
        if spec.classification:
            text = str(value)
            if text not in known:
                shown = ", ".join(spec.classes[:10]) + (" ..." if len(spec.classes) > 10 else "")
                problems[row] = f"label {text[:40]!r} is not a class of the model ({shown})"
                continue
            kept.append(text)
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                problems[row] = f"label {str(value)[:40]!r} is not a number"
                continue
            if not math.isfinite(number):
                problems[row] = "label must be a finite number"
                continue
            kept.append(number)
        rows.append(row)
    dtype = object if spec.classification else np.float64
    return Labels(np.array(kept, dtype=dtype), np.array(rows, dtype=np.int64), problems)


def _aligned(probabilities: np.ndarray, keys: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """Probability columns in `classes` order (the answer's are the model's order)."""
    position = {str(k): j for j, k in enumerate(keys)}
    return probabilities[:, [position[c] for c in classes]]


def score_batch(spec: LabelSpec, actual: Sequence[Any], predicted: Sequence[Any],
                probabilities: np.ndarray | None = None, keys: Sequence[str] | None = None,
                metrics: Sequence[str] | None = None) -> dict[str, float]:
    """This batch's metrics, by AutoGluon's functions (`autogluon.core.metrics`), on the
    same encoding AutoGluon's evaluate uses: classes as codes (binary: positive class 1),
    the positive class's probability (binary) or the matrix. `actual` as `read_labels`
    gives; `predicted` the answer's labels; `probabilities` a row per row, a column per
    class in `keys` order. Metrics that cannot be computed on it (roc_auc on one class,
    log_loss without probabilities) are left out. Default metrics: the holdout's."""
    from autogluon.core.metrics import get_metric

    names = list(metrics) if metrics is not None else list(
        dict.fromkeys([*spec.holdout_metrics, *([spec.eval_metric] if spec.eval_metric else [])]))
    if not len(actual):
        return {}
    if spec.classification:
        codes = {c: i for i, c in enumerate(spec.classes)}
        y_true = np.array([codes[str(v)] for v in actual], dtype=np.int64)
        y_pred = np.array([codes.get(str(json_value(v)), -1) for v in predicted],
                          dtype=np.int64)
        proba = None
        if probabilities is not None and keys is not None:
            proba = _aligned(np.asarray(probabilities, dtype=np.float64), keys, spec.classes)
        if spec.problem_type == "binary":
            positive = codes[spec.positive_class or spec.classes[-1]]
            y_true, y_pred = (y_true == positive).astype(np.int64), (y_pred == positive).astype(
                np.int64)
            proba = None if proba is None else proba[:, positive]
    else:
        y_true = np.asarray(actual, dtype=np.float64)
        y_pred = np.asarray(predicted, dtype=np.float64)
        proba = None
    scores: dict[str, float] = {}
    for name in names:
        try:
            scorer = get_metric(name, spec.problem_type)
            wants_proba = scorer.needs_proba or scorer.needs_threshold
            if wants_proba and proba is None:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # sklearn's "ill-defined" on small batches
                value = float(scorer(y_true, proba if wants_proba else y_pred))
        except (ValueError, KeyError, TypeError, IndexError, ZeroDivisionError):
            continue
        if math.isfinite(value):
            scores[name] = value
    return scores


@dataclass(frozen=True)
class FeedbackReport:
    """A feedback batch's answer: its metrics beside the holdout's."""

    rows: int
    metrics: dict[str, float]
    holdout_metrics: dict[str, float]
    eval_metric: str | None
    refused: dict[int, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "eval_metric": self.eval_metric, "metrics": self.metrics,
                "holdout_metrics": {k: v for k, v in self.holdout_metrics.items()
                                    if k in self.metrics},
                "refused": [{"row": row, "problem": problem}
                            for row, problem in sorted(self.refused.items())]}


def evaluate_feedback(spec: LabelSpec, labels: Labels, predicted: Sequence[Any],
                      probabilities: np.ndarray | None = None,
                      keys: Sequence[str] | None = None) -> FeedbackReport:
    """`score_batch` on the rows whose label could be read (`predicted` and
    `probabilities` cover those rows only, in order)."""
    scores = score_batch(spec, labels.values, predicted, probabilities, keys)
    return FeedbackReport(len(labels.values), scores, spec.holdout_metrics, spec.eval_metric,
                          labels.problems)


class FeedbackCounter:
    """Counts labelled rows for one served model; made at load (sets the holdout gauges)."""

    def __init__(self, spec: LabelSpec, model: str) -> None:
        self.spec = spec
        self.model = model
        self.rows = FEEDBACK_ROWS.labels(model)
        if spec.classification:
            self.correct = FEEDBACK_CORRECT.labels(model)
        else:
            self.absolute = FEEDBACK_ABSOLUTE_ERROR.labels(model)
            self.squared = FEEDBACK_SQUARED_ERROR.labels(model)
        for metric, value in spec.holdout_metrics.items():
            HOLDOUT_SCORE.labels(model, metric).set(value)

    @classmethod
    def of(cls, card: ModelCard) -> FeedbackCounter:
        return cls(LabelSpec.of(card), card.tag)

    def observe(self, actual: Sequence[Any], predicted: Sequence[Any]) -> None:
        """Count scored labelled rows: `actual` as `read_labels` gives, `predicted` the
        model's labels for the same rows (a row the model could not score: left out)."""
        if not len(actual):
            return
        self.rows.inc(len(actual))
        if self.spec.classification:
            pairs = Tally(zip((str(a) for a in actual), (str(json_value(p)) for p in predicted),
                              strict=True))
            for (truth, guess), count in pairs.items():
                FEEDBACK_OUTCOMES.labels(self.model, truth, guess).inc(count)
            self.correct.inc(sum(count for (truth, guess), count in pairs.items()
                                 if truth == guess))
            return
        errors = np.asarray(actual, dtype=np.float64) - np.asarray(predicted, dtype=np.float64)
        self.absolute.inc(float(np.abs(errors).sum()))
        self.squared.inc(float(np.square(errors).sum()))


def holdout_scores(stored: Mapping[str, Any]) -> dict[str, float]:
    """A card's (or reference's) holdout metrics as floats, non-finite ones left out."""
    return {str(k): float(v) for k, v in stored.items()
            if isinstance(v, (int, float)) and math.isfinite(float(v))}
