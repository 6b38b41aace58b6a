"""The training pipeline's steps, in-process (train() itself: test_training.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from agbento.training import label_range, parse_label, train
from tests.tiny_models import tiny_config

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
