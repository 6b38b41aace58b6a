"""Tiny models on the demo data, trained once per test session (a few seconds each)."""

from __future__ import annotations

from dataclasses import dataclass

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
