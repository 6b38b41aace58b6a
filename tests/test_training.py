"""train.py and the training pipeline: the gate, what is stored, and one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import bentoml
import numpy as np
import pandas as pd
import pytest
from autogluon.tabular import TabularPredictor

from agbento.models.store import ModelCard
from agbento.training.pipeline import QualityGateError, TrainingError, parse_min_scores, train
from tests.tiny_models import TinyModels, tiny_config

ROOT = Path(__file__).resolve().parent.parent
quiet = lambda _message: None  # noqa: E731


def stored_tags(name: str) -> list[str]:
    try:
        return [str(m.tag) for m in bentoml.models.list(name)]
    except bentoml.exceptions.NotFound:
        return []


def test_quality_gate_failure_saves_nothing() -> None:
    config = tiny_config("gate-fails", "species", min_scores={"accuracy": 1.01})
    with pytest.raises(QualityGateError, match=r"accuracy=0\.\d+ < 1\.01"):
        train(config, quiet)
    assert stored_tags("gate-fails") == []


def test_gate_on_a_metric_the_holdout_does_not_report_saves_nothing() -> None:
    config = tiny_config("gate-unknown", "species", min_scores={"r2": 0.5})
    with pytest.raises(TrainingError, match="r2"):
        train(config, quiet)
    assert stored_tags("gate-unknown") == []


def test_passing_gate_stores_a_model_with_its_card(tiny_models: TinyModels) -> None:
    card = tiny_models.multiclass
    reloaded = ModelCard.of(bentoml.models.get(card.tag))
    assert reloaded == card
    assert reloaded.labels == {
        "framework": "autogluon",
        "problem_type": "multiclass",
        "label": "species",
        "stage": "staging",
    }
    meta = reloaded.metadata
    assert set(meta["holdout_metrics"]) >= {"accuracy"}
    assert set(meta["feature_importance"]) == set(reloaded.schema.names)
    assert meta["rows"]["input"] == 344
    assert meta["rows"]["train"] + meta["rows"]["holdout"] == 344
    assert meta["data_fingerprint"].startswith("sha256:")
    assert meta["versions"]["bentoml"] == bentoml.__version__
    assert meta["size_bytes"] < meta["size_bytes_before_shrink"]
    assert reloaded.schema.label.classes == ("Adelie", "Chinstrap", "Gentoo")
    assert meta["leaderboard"] and meta["models"]


def test_stored_predictor_is_the_shrunk_clone(tiny_models: TinyModels) -> None:
    card = tiny_models.regression
    predictor = TabularPredictor.load(str(card.predictor_path), verbosity=0)
    assert predictor.problem_type == "regression"
    frame = card.schema.to_frame(card.schema.validate_rows(card.examples).rows)
    assert predictor.predict(frame).notna().all()


def test_rows_without_label_are_dropped_and_said(tiny_models: TinyModels) -> None:
    # penguins: 11 rows have no sex
    meta = tiny_models.binary.metadata
    assert meta["rows"]["dropped_missing_label"] == 11
    assert meta["rows"]["train"] + meta["rows"]["holdout"] == 333


def test_any_table_trains(tmp_path: Path) -> None:
    """Spaces and punctuation in names, dates, text, ids, numbers stored as text."""
    n = 120
    rng = np.random.default_rng(1)
    amount = rng.uniform(0, 100, n)
    table = pd.DataFrame(
        {
            "order id": [f"O-{i}" for i in range(n)],
            "Amount ($)": [f"{a:.2f}" for a in amount],
            "ordered at": pd.date_range("2024-01-01", periods=n, freq="6h").astype(str),
            "note": [f"customer asked about parcel {i} and delivery window {i % 5}"
                     for i in range(n)],
            "region/zone": rng.choice(["north", "south"], n),
            "big order?": np.where(amount > 50, "yes", "no"),
        }
    )
    table.loc[::10, "big order?"] = None
    path = tmp_path / "orders.csv"
    table.to_csv(path, index=False)
    config = tiny_config("orders", "big order?", data=path, demo=False)
    messages: list[str] = []
    result = train(config, messages.append)
    assert result.dropped_rows == 12
    assert any("dropped 12 rows" in m for m in messages)
    kinds = {f.name: f.kind for f in result.card.schema.features}
    assert kinds == {
        "order id": "categorical",
        "Amount ($)": "numeric",
        "ordered at": "datetime",
        "note": "text",
        "region/zone": "categorical",
    }
    assert result.holdout_metrics["accuracy"] > 0.8
    # reference distributions stored for every kind, dates and text included (test_drift.py)
    stored = result.card.reference_distributions
    assert stored is not None
    assert {f["name"]: f["kind"] for f in stored["features"]} == kinds


def test_parse_min_scores() -> None:
    assert parse_min_scores(["accuracy=0.9", "f1 = 0.5"]) == {"accuracy": 0.9, "f1": 0.5}
    with pytest.raises(TrainingError):
        parse_min_scores(["accuracy"])
    with pytest.raises(TrainingError):
        parse_min_scores(["accuracy=high"])


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "train.py", *args],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--data", "nowhere.csv", "--label", "y"], "data file not found"),
        (["--data", "{bad}", "--label", "y"], "cannot read"),
        (["--data", "{good}", "--label", "nope"], "label column 'nope' not in the data"),
        (["--data", "{good}", "--label", "y", "--min-score", "accuracy"], "METRIC=VALUE"),
        (["--data", "{good}", "--label", "y", "--eval-metric", "bogus"], "unknown metric"),
        (["--data", "{good}"], "--label is required"),
        (["--demo", "--holdout-frac", "0.9"], "--holdout-frac"),
        (["--demo", "--time-limit", "soon"], "should be a valid integer"),
        (["--demo", "--data", "{good}"], "one of --data FILE, --demo or --dataset"),
    ],
)
def test_cli_errors_are_one_line_without_traceback(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    good = tmp_path / "good.csv"
    pd.DataFrame({"x": range(40), "y": [i % 2 for i in range(40)]}).to_csv(good, index=False)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"this is not parquet")
    argv = [a.format(good=good, bad=bad) for a in args]
    result = run_cli(*argv)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert expected in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(error_lines) == 1, result.stderr


def test_a_users_table_is_stored_under_its_own_name_never_the_demos() -> None:
    from agbento.cli import CliError
    from agbento.cli.train import train_config

    assert train_config(data=Path("data/Churn 2024.csv"), label="y").name == "churn-2024"
    assert train_config(data=Path("orders.parquet"), label="y").name == "orders"
    assert train_config(data=Path("orders.csv"), label="y", name="o").name == "o"
    assert train_config(demo=True).name == "agbento-demo"
    with pytest.raises(CliError, match="--name"):
        train_config(data=Path("agbento-demo.csv"), label="y")
