"""`agbento train` (and `python train.py`): fit, gate, shrink and store a model.

    agbento train --demo
    agbento train --dataset birdstrikes       # datetime and free-text features, ~1 minute
    agbento train --data churn.csv --label churned --min-score roc_auc=0.8   # stored as churn
    agbento train --data churn.csv --label churned --challenge churn@production --promote
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from agbento.cli import CliError, app
from agbento.core.settings import DEMO_MODEL_NAME
from agbento.training.challenge import (
    EXIT_CHALLENGER_LOST,
    EXIT_CHAMPION_UNUSABLE,
    EXIT_NOT_PROMOTED,
    ChallengeError,
)
from agbento.training.pipeline import (
    DATASETS,
    DEMO_LABEL,
    TrainConfig,
    TrainingError,
    TrainResult,
    parse_min_scores,
    train,
)

EXIT_CODES = (
    "Exit codes: 0 stored (and, with --promote, promoted); 1 a training error (bad data or "
    "options, or a --min-score missed; nothing stored); 2 a usage error; "
    f"{EXIT_CHALLENGER_LOST} --challenge: not better than the champion by --min-gain with 95% "
    f"confidence (nothing stored); {EXIT_CHAMPION_UNUSABLE} --challenge: no champion, or it "
    "cannot score these rows (label, problem type, classes or features differ; nothing "
    f"stored); {EXIT_NOT_PROMOTED} --promote: stored, but the promotion was refused; "
    "130 interrupted (nothing stored)."
)


class Problem(StrEnum):
    binary = "binary"
    multiclass = "multiclass"
    regression = "regression"


class Profile(StrEnum):
    online = "online"
    accuracy = "accuracy"


Dataset = StrEnum("Dataset", {name: name for name in DATASETS})  # type: ignore[misc]


@app.command("train", epilog=EXIT_CODES)
def train_command(
    data: Annotated[Path | None, typer.Option(help="training table (.csv or .parquet)")] = None,
    demo: Annotated[bool, typer.Option(
        "--demo", help="the demo model: Palmer penguins' species")] = False,
    dataset: Annotated[Dataset | None, typer.Option(  # type: ignore[valid-type]
        help="a table shipped in a Python package: " + "; ".join(
            f"{d.name}: {d.description}, label {d.label}" for d in DATASETS.values()))] = None,
    label: Annotated[str | None, typer.Option(
        help=f"label column (--demo: {DEMO_LABEL}; --dataset: the dataset's)")] = None,
    name: Annotated[str | None, typer.Option(
        help=f"model name in the store (--data: the file's name, e.g. churn for churn.csv; "
        f"--demo: {DEMO_MODEL_NAME}; --dataset: agbento-NAME)")] = None,
    problem_type: Annotated[Problem | None, typer.Option(help="default: inferred")] = None,
    eval_metric: Annotated[str | None, typer.Option(
        help="AutoGluon metric name (default: AutoGluon's)")] = None,
    time_limit: Annotated[int | None, typer.Option(
        min=1, help="fit seconds (120; --dataset: the dataset's, kept short)")] = None,
    presets: Annotated[str, typer.Option(help="AutoGluon presets")] = "medium_quality",
    profile: Annotated[Profile, typer.Option(
        help="online: boosted trees only, fast to score; accuracy: AutoGluon's whole model "
        "zoo")] = Profile.online,
    holdout_frac: Annotated[float, typer.Option(help="holdout share")] = 0.2,
    min_score: Annotated[list[str] | None, typer.Option(
        metavar="METRIC=VALUE", help="quality gate, repeatable; scores are higher-is-better "
        "as AutoGluon reports them (error metrics are negative: root_mean_squared_error=-300 "
        "means RMSE <= 300)")] = None,
    challenge: Annotated[str | None, typer.Option(
        metavar="NAME@STAGE", help="the champion to beat (NAME@production, or any tag): both "
        "score this run's holdout rows on the eval metric; nothing is saved unless this model "
        "is better by --min-gain with 95% confidence (paired bootstrap)")] = None,
    min_gain: Annotated[float, typer.Option(
        help="margin over the champion, in the eval metric's higher-is-better units")] = 0.0,
    promote: Annotated[bool, typer.Option(
        "--promote", help="on a pass, promote the new version into the challenged stage")
    ] = False,
    stage: Annotated[str, typer.Option(
        help="a label on the stored version; what serves is the stage registry's: --promote, "
        "or agbento models promote")] = "staging",
    seed: Annotated[int, typer.Option(help="split seed")] = 0,
    verbose: Annotated[bool, typer.Option("--verbose", help="AutoGluon's own fit log")] = False,
) -> None:
    """Fit a TabularPredictor, gate it on a holdout, shrink it and store it in the BentoML
    model store."""
    config = train_config(data=data, demo=demo, dataset=dataset and str(dataset), label=label,
                          name=name, problem_type=problem_type and str(problem_type),
                          eval_metric=eval_metric, time_limit=time_limit, presets=presets,
                          profile=str(profile), holdout_frac=holdout_frac,
                          min_scores=min_score or [], challenge=challenge, min_gain=min_gain,
                          promote=promote, stage=stage, seed=seed, verbose=verbose)
    try:
        result = train(config)
    except TrainingError as error:
        raise CliError(str(error), 1) from None
    except ChallengeError as error:
        raise CliError(str(error), error.exit_code) from None
    except KeyboardInterrupt:
        raise CliError("interrupted, nothing saved", 130) from None
    report(result, config)


def train_config(*, data: Path | None = None, demo: bool = False, dataset: str | None = None,
                 label: str | None = None, name: str | None = None,
                 time_limit: int | None = None, min_scores: list[str] | None = None,
                 verbose: bool = False, **options: object) -> TrainConfig:
    """The command line as a TrainConfig: a shipped dataset brings its label, name and quick
    settings, a file its name; each overridable."""
    if sum((data is not None, demo, dataset is not None)) != 1:
        raise CliError("give one of --data FILE, --demo or --dataset NAME", 2)
    spec = DATASETS[dataset] if dataset else DATASETS["penguins"] if demo else None
    label = label or (spec.label if spec else None)
    if label is None:
        raise CliError("--label is required with --data", 2)
    try:
        scores = parse_min_scores(min_scores or [])
    except TrainingError as error:
        raise CliError(str(error), 2) from None
    return TrainConfig(
        label=label, data=data, demo=demo, dataset=dataset,
        name=name or default_name(data, dataset),
        time_limit=time_limit or (spec.time_limit if spec else 120),
        min_scores=scores, verbosity=2 if verbose else 0,
        **({"importance_time_limit": spec.importance_time_limit} if spec else {}),
        **options,  # type: ignore[arg-type]
    )


def default_name(data: Path | None, dataset: str | None) -> str:
    """A user's table is stored under its own name, never the demo's (which `make serve`
    serves): churn.csv -> churn."""
    if dataset:
        return f"agbento-{dataset}"
    if data is None:
        return DEMO_MODEL_NAME
    stem = data.name.split(".")[0].lower()
    name = re.sub(r"[^a-z0-9_.-]+", "-", stem).strip("-._")
    if not name or name == DEMO_MODEL_NAME:
        raise CliError(f"cannot name a model after {data.name!r}: pass --name", 2)
    return name


def report(result: TrainResult, config: TrainConfig) -> None:
    card = result.card
    lines = [
        "",
        f"model:    {card.tag}",
        f"problem:  {card.problem_type} (label {config.label!r})",
        f"size:     {result.size_before / 1e6:.2f} MB -> {result.size_after / 1e6:.2f} MB",
        "holdout:  " + ", ".join(f"{k}={v:.4f}" for k, v in result.holdout_metrics.items()),
        "latency:  " + ", ".join(f"{k} rows {v:.1f} ms" for k, v in result.latency_ms.items()),
        "timings:  " + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings_s.items()),
    ]
    if result.comparison is not None:
        lines += [f"gate:     {line}" for line in result.comparison.lines()]
        if result.promoted:
            lines.append(f"promoted: {card.tag} -> {config.challenge}")
    typer.echo("\n".join(lines))
