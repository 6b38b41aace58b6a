"""Tiny models on the demo data, trained once per test session (a few seconds each)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from agbento.models.store import ModelCard, save_model
from agbento.training.pipeline import TrainConfig, train

TINY_HYPERPARAMETERS = {"GBM": {"num_boost_round": 40}}


def tiny_config(name: str, label: str, **overrides: object) -> TrainConfig:
    config = TrainConfig(
        label=label,
        demo=True,
        name=name,
        time_limit=60,
        hyperparameters=TINY_HYPERPARAMETERS,
        importance_time_limit=10,
        verbosity=0,
    )
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


@dataclass(frozen=True)
class TinyModels:
    multiclass: ModelCard
    binary: ModelCard
    regression: ModelCard


def train_tiny_models() -> TinyModels:
    quiet = lambda _message: None  # noqa: E731
    return TinyModels(
        multiclass=train(tiny_config("tiny-species", "species"), quiet).card,
        binary=train(tiny_config("tiny-sex", "sex"), quiet).card,
        regression=train(tiny_config("tiny-mass", "body_mass_g"), quiet).card,
    )


def loose_schema_model(card: ModelCard, feature: str) -> ModelCard:
    """The same predictor stored with a schema that wrongly calls `feature` categorical.

    Text then passes validation and fails inside the model: the case adaptive batching must
    isolate (a row that only the model can reject), made with real parts.
    """
    schema = card.metadata["schema"]
    features = [
        {"name": f["name"], "kind": "categorical", "nullable": f["nullable"]}
        if f["name"] == feature
        else f
        for f in schema["features"]
    ]
    examples = [{**row, feature: str(row[feature])} for row in card.examples if feature in row]
    metadata = {
        **card.metadata,
        "schema": {**schema, "features": features},
        "examples": examples,
    }
    return save_model("tiny-loose", card.predictor_path, card.labels, metadata)


# -- tables of our own (agbento.explain's tests) ------------------------------------------------

WORDS = ("bird engine wing gear nose radome windshield light tail flock gull hawk goose "
         "pilot reported damage none minor struck landing climb approach runway tower crew "
         "cabin smell smoke noise vibration").split()


def dates_text_table(rows: int = 500, seed: int = 0) -> pd.DataFrame:
    """A regression whose label rises with the month of a date and with the word 'smoke'
    in free-text remarks, beside a number and a category."""
    rng = np.random.default_rng(seed)
    dates = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 730, rows), unit="D")
    remarks = [" ".join(rng.choice(WORDS, rng.integers(4, 10))) for _ in range(rows)]
    speed = rng.normal(150, 30, rows).round(1)
    sky = rng.choice(["clear", "cloudy", "overcast"], rows)
    smoke = np.array(["smoke" in r.split() for r in remarks])
    label = 10 * smoke + dates.month.to_numpy() + 0.02 * speed + rng.normal(0, 0.3, rows)
    return pd.DataFrame({"date": dates, "remarks": remarks, "speed": speed, "sky": sky,
                         "cost": label.round(3)})


def two_feature_table(rows: int = 800, seed: int = 0) -> pd.DataFrame:
    """Binary: the label is x0 + x1 > 1, whatever x2..x5 say (all uniform on [0, 1])."""
    rng = np.random.default_rng(seed)
    table = pd.DataFrame(rng.uniform(0, 1, (rows, 6)), columns=[f"x{i}" for i in range(6)])
    table["y"] = np.where(table["x0"] + table["x1"] > 1, "yes", "no")
    return table


def train_table_model(table: pd.DataFrame, name: str, label: str, folder: Path,
                      **overrides: object) -> ModelCard:
    """A tiny model on `table` through the training pipeline (written as Parquet)."""
    path = folder / f"{name}.parquet"
    table.to_parquet(path, index=False)
    config = tiny_config(name, label, demo=False, data=path, **overrides)
    return train(config, lambda _message: None).card


def rare_categories_table(rows: int = 1_500, seed: int = 0) -> pd.DataFrame:
    """A label led by a number, beside a category of 300 values most of which are rare
    (past its level limit, XGBoost's one-hot encoder merges the rare ones into one column)."""
    rng = np.random.default_rng(seed)
    cities = [f"city-{i}" for i in range(300)]
    weights = 1 / np.arange(1, 301) ** 1.1
    table = pd.DataFrame({
        "x": rng.normal(size=rows),
        "city": rng.choice(cities, size=rows, p=weights / weights.sum()),
        "z": rng.normal(size=rows),
    })
    table["y"] = np.where(table["x"] + 0.3 * (table["city"] == "city-0") > 0.1, "yes", "no")
    return table
