"""Train an AutoGluon tabular model, gate it, shrink it and store it for BentoML.

    python train.py --demo
    python train.py --dataset birdstrikes       # datetime and free-text features, ~1 minute
    python train.py --data churn.csv --label churned --name churn --min-score roc_auc=0.8
    python train.py --data churn.csv --label churned --name churn \
        --challenge churn@production --min-gain 0.005 --promote
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
    PROBLEM_TYPES,
    PROFILES,
    TrainConfig,
    TrainingError,
    parse_min_scores,
    train,
)

EXIT_CODES = f"""exit codes:
  0    stored (and, with --promote, promoted)
  1    a training error: bad data or options, or a --min-score missed; nothing stored
  2    a usage error
  {EXIT_CHALLENGER_LOST}    --challenge: not better than the champion by --min-gain with 95%
       confidence; nothing stored
  {EXIT_CHAMPION_UNUSABLE}    --challenge: no champion to compare with, or it cannot score these
       rows (label, problem type, classes or features differ); nothing stored
  {EXIT_NOT_PROMOTED}    --promote: stored, but the promotion was refused
  130  interrupted; nothing stored
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="train.py",
        description="Fit a TabularPredictor, gate it on a holdout, shrink it and save it "
        "into the BentoML model store.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="training table (.csv or .parquet)")
    source.add_argument(
        "--demo", action="store_true", help="train the demo model on Palmer penguins (species)"
    )
    source.add_argument(
        "--dataset", choices=DATASETS,
        help="a table shipped in a Python package: "
        + "; ".join(f"{d.name}: {d.description}, label {d.label}" for d in DATASETS.values()),
    )
    parser.add_argument("--label", help=f"label column (demo: {DEMO_LABEL}; "
                        "--dataset: the dataset's)")
    parser.add_argument("--name", help=f"model name in the store (default: {DEMO_MODEL_NAME}; "
                        "--dataset: agbento-NAME)")
    parser.add_argument("--problem-type", choices=PROBLEM_TYPES, help="default: inferred")
    parser.add_argument("--eval-metric", help="AutoGluon metric name (default: AutoGluon's)")
    parser.add_argument("--time-limit", type=int,
                        help="fit seconds (120; --dataset: the dataset's, kept short)")
    parser.add_argument("--presets", default="medium_quality", help="AutoGluon presets")
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default="online",
        help="online: boosted trees only, fast to score (default); "
        "accuracy: AutoGluon's full model zoo",
    )
    parser.add_argument("--holdout-frac", type=float, default=0.2, help="holdout share (0.2)")
    parser.add_argument(
        "--min-score",
        action="append",
        default=[],
        metavar="METRIC=VALUE",
        help="quality gate, repeatable; scores are higher-is-better as AutoGluon reports them "
        "(error metrics are negative: root_mean_squared_error=-300 means RMSE <= 300)",
    )
    parser.add_argument(
        "--challenge", metavar="NAME@STAGE",
        help="the champion to beat (NAME@production, or any tag): both score this run's "
        "holdout rows on the eval metric; nothing is saved unless this model is better by "
        "--min-gain with 95%% confidence (paired bootstrap)")
    parser.add_argument(
        "--min-gain", type=float, default=0.0,
        help="margin over the champion, in the eval metric's higher-is-better units (0)")
    parser.add_argument("--promote", action="store_true",
                        help="on a pass, promote the new version into the challenged stage")
    parser.add_argument("--stage", default="staging", help="a label on the stored version "
                        "(staging); what serves is the stage registry's: --promote, or "
                        "agbento models promote")
    parser.add_argument("--seed", type=int, default=0, help="split seed (0)")
    parser.add_argument("--verbose", action="store_true", help="AutoGluon's own fit log")
    return parser.parse_args(argv)


def train_config(args: argparse.Namespace, label: str) -> TrainConfig:
    """The command line as a TrainConfig; a shipped dataset brings its name and quick
    settings, each overridable."""
    spec = DATASETS[args.dataset] if args.dataset else None
    return TrainConfig(
        label=label,
        data=args.data,
        demo=args.demo,
        dataset=args.dataset,
        name=args.name or (f"agbento-{spec.name}" if spec else DEMO_MODEL_NAME),
        problem_type=args.problem_type,
        eval_metric=args.eval_metric,
        time_limit=args.time_limit or (spec.time_limit if spec else 120),
        presets=args.presets,
        profile=args.profile,
        holdout_frac=args.holdout_frac,
        min_scores=parse_min_scores(args.min_score),
        seed=args.seed,
        stage=args.stage,
        challenge=args.challenge,
        min_gain=args.min_gain,
        promote=args.promote,
        verbosity=2 if args.verbose else 0,
        **({"importance_time_limit": spec.importance_time_limit} if spec else {}),
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    spec = DATASETS[args.dataset] if args.dataset else None
    label = args.label or (DEMO_LABEL if args.demo else spec.label if spec else None)
    if label is None:
        print("error: --label is required with --data", file=sys.stderr)
        return 2
    try:
        config = train_config(args, label)
        result = train(config)
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ChallengeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted, nothing saved", file=sys.stderr)
        return 130
    card = result.card
    print()
    print(f"model:    {card.tag}")
    print(f"problem:  {card.problem_type} (label {label!r})")
    print(f"size:     {result.size_before / 1e6:.2f} MB -> {result.size_after / 1e6:.2f} MB")
    metrics = ", ".join(f"{k}={v:.4f}" for k, v in result.holdout_metrics.items())
    print(f"holdout:  {metrics}")
    print("latency:  " + ", ".join(f"{k} rows {v:.1f} ms" for k, v in result.latency_ms.items()))
    print("timings:  " + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings_s.items()))
    if result.comparison is not None:
        for line in result.comparison.lines():
            print(f"gate:     {line}")
        if result.promoted:
            print(f"promoted: {card.tag} -> {args.challenge}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
