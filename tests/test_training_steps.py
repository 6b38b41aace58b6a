"""The training pipeline's steps, in-process (train() itself: test_training.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agbento.models.store import REFERENCE_KEY
from agbento.training.pipeline import (
    Explanation,
    Measured,
    QualityGateError,
    Shrunk,
    TrainingError,
    build_metadata,
    check_config,
    explanation_background,
    gate,
    label_range,
    load_data,
    model_labels,
    parse_label,
    train,
)
from tests.tiny_models import TinyModels, tiny_config

quiet = lambda _message: None  # noqa: E731


def test_label_range_compares_a_text_label_as_numbers() -> None:
    text = pd.Series(["9.5", "10.25", "100", "-3"], dtype=object)
    assert label_range(text, "regression") == [-3.0, 100.0]
    assert label_range(pd.Series([4, 2, 8]), "regression") == [2.0, 8.0]
    assert label_range(text, "multiclass") is None
    assert parse_label(text, "binary") is text


def test_a_numeric_label_stored_as_text_trains_with_a_numeric_range(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 100, 120)
    y = 3 * x + 5
    table = pd.DataFrame({"x": x, "y": [f"{v:.2f}" for v in y]})  # "95.0" > "305.0" as text
    path = tmp_path / "text-label.parquet"
    table.to_parquet(path)
    config = tiny_config("text-label", "y", data=path, demo=False, problem_type="regression")
    card = train(config, quiet).card
    low, high = card.metadata["label_range"]
    assert low == float(table["y"].astype(float).min())
    assert high == float(table["y"].astype(float).max())


def test_gate_passes_names_the_missing_metric_or_lists_the_failures() -> None:
    said: list[str] = []
    gate({"accuracy": 0.9, "f1": 0.8}, {"accuracy": 0.9}, said.append)
    assert said == ["      quality gate passed (1 checks)"]
    with pytest.raises(TrainingError, match=r"--min-score r2: not among .*accuracy"):
        gate({"accuracy": 0.9}, {"r2": 0.5}, quiet)
    with pytest.raises(QualityGateError) as failed:
        gate({"accuracy": 0.7, "f1": 0.5}, {"accuracy": 0.8, "f1": 0.4}, quiet)
    assert failed.value.failures == [("accuracy", 0.7, 0.8)]


def test_check_config_refuses_an_unknown_profile_and_no_time() -> None:
    with pytest.raises(TrainingError, match="--profile"):
        check_config(tiny_config("x", "species", profile="fastest"))
    with pytest.raises(TrainingError, match="--time-limit"):
        check_config(tiny_config("x", "species", time_limit=0))


def test_load_data_cleans_splits_and_derives_the_schema() -> None:
    said: list[str] = []
    data = load_data(tiny_config("x", "sex"), said.append)
    assert (data.input_rows, data.dropped, data.problem_type) == (344, 11, "binary")
    assert len(data.train_raw) + len(data.holdout_raw) == len(data.table) == 333
    assert "sex" not in data.schema.names and data.classification
    assert list(data.train_frame.columns) == [*data.schema.names, "sex"]
    assert any("dropped 11 rows" in line for line in said)


def test_build_metadata_holds_what_the_model_card_reads(tiny_models: TinyModels) -> None:
    config = tiny_config("x", "body_mass_g")
    data = load_data(config, quiet)
    metadata = build_metadata(
        config, data, "root_mean_squared_error", {"r2": 0.8},
        Explanation({"island": 0.1}, [{"model": "LightGBM"}]), Shrunk(200, 100),
        Measured("LightGBM", ["LightGBM"], {"1": 2.0, "1000": 20.0}),
    )
    stored = tiny_models.regression.metadata  # what train() stored, plus save_model's own
    # save_model's own keys, and what train() adds as steps of their own: the explanation
    # background and the reference distributions (test_drift.py checks those)
    assert set(metadata) == set(stored) - {"size_bytes", "files_sha256", "explain",
                                           REFERENCE_KEY}
    kept = explanation_background(data)
    assert len(stored["explain"]["background"]) == len(kept["background"]) > 0
    assert metadata["label_range"] == [float(data.table["body_mass_g"].min()),
                                       float(data.table["body_mass_g"].max())]
    assert metadata["rows"] == {"input": 344, "dropped_missing_label": 2,
                                "train": len(data.train_raw), "holdout": len(data.holdout_raw)}
    assert metadata["examples"] and data.schema.validate_rows(metadata["examples"]).ok
    assert model_labels(config, data.problem_type) == tiny_models.regression.labels
