"""The challenger gate: a new model replaces the champion only when it beats it on the same
rows, by a margin, with 95% confidence.

    train.py --data churn.csv --label churned --name churn \\
        --challenge churn@production --min-gain 0.005 --promote

Before the fit (cheap refusals): the champion (`NAME@STAGE` or any tag) must predict the
same label with the same problem type and classes, and its feature schema must accept
every row of the challenger's holdout (a feature the challenger dropped is named; one it
added is only noted: the champion ignores it). After the fit: both models score the
challenger's own holdout rows on the challenger's eval metric, with AutoGluon's scorer for
that metric (higher is better: an error metric is negative, so `--min-gain 5` on
root_mean_squared_error means "RMSE lower by 5"). A paired bootstrap (the same resampled
rows for both; within each class for classification, so every resample has every class)
gives each score and their difference a 95% percentile interval. The challenger passes
when the *lower* end of the difference's interval is above `--min-gain`: better by the
margin with (at least) 95% confidence.

A champion trained on rows that are in the challenger's holdout (another split of the same
table) has seen them: that favours the champion, so the gate errs on the side of keeping it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from agbento.models.stages import ModelReference, StageError, resolve_tag, stored_model
from agbento.models.store import ModelCard, ModelIntegrityError, ModelNotFoundError
from agbento.rows.schema import FeatureSchema, is_classification, json_value, nulls_as_none

CONFIDENCE = 0.95
BOOTSTRAP_SAMPLES = 1000
# train.py's exit codes for the gate (1 is a training error, 2 a usage error)
EXIT_CHALLENGER_LOST = 3
EXIT_CHAMPION_UNUSABLE = 4
EXIT_NOT_PROMOTED = 5


class ChallengeError(Exception):
    """The gate's answer when it is not a pass: one line, and train.py's exit code."""

    exit_code = 1


class ChampionUnusable(ChallengeError):
    """No comparison can be made: no champion, or it cannot score these rows."""

    exit_code = EXIT_CHAMPION_UNUSABLE


class ChallengerLost(ChallengeError):
    """The challenger is not better than the champion by the margin, with 95% confidence."""

    exit_code = EXIT_CHALLENGER_LOST

    def __init__(self, comparison: Comparison) -> None:
        self.comparison = comparison
        super().__init__(f"challenger gate failed, nothing saved: {comparison.summary()}")


class NotPromoted(ChallengeError):
    """The challenger passed and was stored, but its promotion was refused."""

    exit_code = EXIT_NOT_PROMOTED


@dataclass(frozen=True)
class Champion:
    """The version the challenger must beat, as the reference named it."""

    reference: ModelReference
    card: ModelCard

    @property
    def tag(self) -> str:
        return self.card.tag

    def describe(self) -> str:
        given = str(self.reference)
        return self.tag if given == self.tag else f"{given} ({self.tag})"


def find_champion(reference: str) -> Champion:
    """The stored version `reference` (NAME@STAGE, NAME:VERSION, ...) names."""
    try:
        parsed = ModelReference.parse(reference)
        card = ModelCard.of(stored_model(resolve_tag(reference)))
    except (StageError, ModelNotFoundError) as exc:
        raise ChampionUnusable(f"--challenge {reference}: {exc}") from None
    return Champion(parsed, card)


def check_compatible(champion: Champion, label: str, schema: FeatureSchema,
                     holdout_raw: pd.DataFrame) -> list[str]:
    """Refuse (ChampionUnusable) a champion that cannot score the challenger's holdout rows
    for the same task; answer what is worth saying about the ones that can."""
    card, tag = champion.card, champion.tag
    theirs = card.schema
    if theirs.label.name != label:
        raise ChampionUnusable(f"the champion {tag} predicts {theirs.label.name!r}, the "
                               f"challenger {label!r}: not the same label")
    if theirs.label.problem_type != schema.label.problem_type:
        raise ChampionUnusable(f"the champion {tag} is {theirs.label.problem_type}, the "
                               f"challenger {schema.label.problem_type}: not the same problem "
                               "type")
    if is_classification(schema.label.problem_type):
        known = [json_value(c) for c in theirs.label.classes or ()]
        new = [json_value(c) for c in schema.label.classes or ()]
        if sorted(map(str, known)) != sorted(map(str, new)):
            raise ChampionUnusable(f"the champion {tag} knows the classes {known}, the "
                                   f"challenger {new}: not the same classes")
    features = holdout_raw.drop(columns=label)
    dropped = [name for name in theirs.names if name not in features.columns]
    if dropped:
        raise ChampionUnusable(
            f"the champion {tag} needs feature(s) {', '.join(map(repr, dropped))}, which the "
            "challenger's data does not have (dropped): it cannot score the same rows")
    refused = theirs.validate_table(nulls_as_none(features)).problems
    if refused:
        first = refused[0]
        rows = len({p.row for p in refused})
        raise ChampionUnusable(
            f"the champion {tag}'s schema refuses {rows} of the challenger's {len(features)} "
            f"holdout rows (first: row {first.row}, {first.field!r}: {first.problem})")
    added = [name for name in schema.names if name not in theirs.names]
    return [f"the challenger adds feature(s) {', '.join(map(repr, added))} (the champion "
            "ignores them)"] if added else []


# -- scoring -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricInput:
    """A model's predictions as AutoGluon's scorers take them: labels as class indices (in
    the challenger's class order), probabilities as a matrix in that order (binary: the
    positive class's column), regression values as floats."""

    predictions: np.ndarray
    probabilities: np.ndarray | None


@dataclass(frozen=True)
class ClassOrder:
    """The challenger's classes, the order every input is encoded in (None: regression)."""

    classes: list[Any] | None
    positive: Any = None

    @classmethod
    def of(cls, predictor: Any) -> ClassOrder:
        if not is_classification(predictor.problem_type):
            return cls(None)
        positive = predictor.positive_class if predictor.problem_type == "binary" else None
        return cls([json_value(c) for c in predictor.class_labels], json_value(positive))

    def encode(self, values: Sequence[Any]) -> np.ndarray:
        if self.classes is None:
            return np.asarray(values, dtype=np.float64)
        index = {c: i for i, c in enumerate(self.classes)}
        # a class the model never saw is -1, as AutoGluon's own evaluation counts it
        return np.array([index.get(json_value(v), -1) for v in values], dtype=np.int64)

    def matrix(self, probabilities: pd.DataFrame) -> np.ndarray:
        assert self.classes is not None
        columns = {json_value(c): c for c in probabilities.columns}
        ordered = probabilities[[columns[c] for c in self.classes]].to_numpy(np.float64)
        if self.positive is not None:
            return ordered[:, self.classes.index(self.positive)]
        return ordered


def predictions_of(predictor: Any, frame: pd.DataFrame, order: ClassOrder) -> MetricInput:
    labels = predictor.predict(frame)
    if order.classes is None:
        return MetricInput(order.encode(labels), None)
    return MetricInput(order.encode(labels), order.matrix(predictor.predict_proba(frame)))


def bootstrap_rows(truth: np.ndarray, samples: int, seed: int, stratify: bool) -> np.ndarray:
    """`samples` resamples of row indices (with replacement), each as long as `truth`;
    within each class when `stratify`."""
    rng = np.random.default_rng(seed)
    n = len(truth)
    if not stratify:
        return rng.integers(0, n, size=(samples, n))
    drawn = np.empty((samples, n), dtype=np.int64)
    start = 0
    for value in np.unique(truth):
        members = np.flatnonzero(truth == value)
        drawn[:, start:start + len(members)] = members[
            rng.integers(0, len(members), size=(samples, len(members)))]
        start += len(members)
    return drawn


def score(scorer: Any, truth: np.ndarray, given: MetricInput, rows: np.ndarray | None = None
          ) -> float:
    from autogluon.core.metrics import compute_metric

    pick = slice(None) if rows is None else rows
    probabilities = None if given.probabilities is None else given.probabilities[pick]
    return float(compute_metric(truth[pick], scorer, y_pred=given.predictions[pick],
                                y_pred_proba=probabilities, silent=True))


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    @classmethod
    def of(cls, values: np.ndarray) -> Interval:
        tail = (1 - CONFIDENCE) / 2 * 100
        low, high = np.percentile(values, [tail, 100 - tail])
        return cls(float(low), float(high))

    def to_list(self) -> list[float]:
        return [self.low, self.high]

    def __str__(self) -> str:
        return f"[{self.low:+.4f}, {self.high:+.4f}]"


@dataclass(frozen=True)
class Comparison:
    """Both models on the same rows: the scores, their intervals, and the verdict."""

    champion: str
    reference: str
    metric: str
    champion_score: float
    champion_interval: Interval
    challenger_score: float
    challenger_interval: Interval
    difference: float
    difference_interval: Interval
    min_gain: float
    rows: int
    samples: int
    seed: int
    stratified: bool
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.difference_interval.low > self.min_gain

    def summary(self) -> str:
        verdict = "passed" if self.passed else "failed"
        return (f"{self.metric} difference {self.difference:+.4f}, 95% interval "
                f"{self.difference_interval}, needs its low end above {self.min_gain:+.4f}: "
                f"{verdict} (champion {self.champion})")

    def lines(self) -> list[str]:
        return [
            f"champion   {self.champion_score:.4f}  95% [{self.champion_interval.low:.4f}, "
            f"{self.champion_interval.high:.4f}]  {self.metric}  {self.champion}",
            f"challenger {self.challenger_score:.4f}  95% [{self.challenger_interval.low:.4f}, "
            f"{self.challenger_interval.high:.4f}]  {self.metric}",
            f"difference {self.difference:+.4f}  95% {self.difference_interval}  "
            f"(needs > {self.min_gain:+.4f}; {self.rows} rows, {self.samples} paired "
            f"resamples, seed {self.seed}): {'passed' if self.passed else 'failed'}",
        ]

    def to_metadata(self) -> dict[str, Any]:
        """The model card's `challenge` entry."""
        return {
            "champion": self.champion, "reference": self.reference, "metric": self.metric,
            "champion_score": self.champion_score,
            "champion_interval": self.champion_interval.to_list(),
            "challenger_score": self.challenger_score,
            "challenger_interval": self.challenger_interval.to_list(),
            "difference": self.difference,
            "difference_interval": self.difference_interval.to_list(),
            "min_gain": self.min_gain, "confidence": CONFIDENCE, "rows": self.rows,
            "samples": self.samples, "seed": self.seed, "stratified": self.stratified,
            "verdict": "pass" if self.passed else "fail", "notes": self.notes,
        }


def champion_predictions(champion: Champion, holdout_raw: pd.DataFrame, label: str,
                         order: ClassOrder) -> MetricInput:
    """The champion on the challenger's holdout rows, validated by its own schema and
    loaded as a server loads it (its files verified first)."""
    from agbento.runtime.inference import TabularRuntime

    schema = champion.card.schema
    validated = schema.validate_table(nulls_as_none(holdout_raw.drop(columns=label)))
    try:
        runtime = TabularRuntime.load(champion.card)
    except ModelIntegrityError as exc:
        raise ChampionUnusable(f"the champion cannot be loaded: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a champion that does not load is not comparable
        raise ChampionUnusable(f"the champion {champion.tag} does not load: "
                               f"{type(exc).__name__}: {exc}") from None
    try:
        return predictions_of(runtime.predictor, validated.frame, order)
    except Exception as exc:  # noqa: BLE001 - whatever it is, the champion cannot score these
        raise ChampionUnusable(f"the champion {champion.tag} cannot score the challenger's "
                               f"holdout rows: {type(exc).__name__}: {exc}") from None


def compare(champion: Champion, challenger: Any, holdout_raw: pd.DataFrame,
            holdout_frame: pd.DataFrame, label: str, min_gain: float, seed: int,
            samples: int = BOOTSTRAP_SAMPLES, notes: Sequence[str] = ()) -> Comparison:
    """Score both on the challenger's holdout rows with the challenger's eval metric, and
    bootstrap the paired difference."""
    order = ClassOrder.of(challenger)
    truth = order.encode(holdout_raw[label].to_numpy())
    theirs = champion_predictions(champion, holdout_raw, label, order)
    ours = predictions_of(challenger, holdout_frame.drop(columns=label), order)
    scorer = challenger.eval_metric
    stratified = order.classes is not None
    resamples = bootstrap_rows(truth, samples, seed, stratified)
    champion_scores = np.array([score(scorer, truth, theirs, rows) for rows in resamples])
    challenger_scores = np.array([score(scorer, truth, ours, rows) for rows in resamples])
    champion_score, challenger_score = score(scorer, truth, theirs), score(scorer, truth, ours)
    tuned_for = champion.card.metadata.get("eval_metric")
    if tuned_for and tuned_for != scorer.name:
        notes = [*notes, f"the champion was trained for {tuned_for}; both are compared on "
                 f"{scorer.name}, the challenger's eval metric"]
    return Comparison(
        champion=champion.tag, reference=str(champion.reference), metric=scorer.name,
        champion_score=champion_score, champion_interval=Interval.of(champion_scores),
        challenger_score=challenger_score, challenger_interval=Interval.of(challenger_scores),
        difference=challenger_score - champion_score,
        difference_interval=Interval.of(challenger_scores - champion_scores),
        min_gain=min_gain, rows=len(truth), samples=samples, seed=seed, stratified=stratified,
        notes=list(notes),
    )
