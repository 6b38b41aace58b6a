"""What several test files share: a good row, penguin rows and files, reading /metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from agbento.schema import Feature, FeatureSchema, LabelInfo, json_records
from agbento.store import ModelCard
from agbento.training import demo_table

# One valid penguin row for the demo schema.
GOOD: dict[str, Any] = {
    "island": "Biscoe",
    "bill_length_mm": 45.1,
    "bill_depth_mm": 14.5,
    "flipper_length_mm": 215,
    "body_mass_g": 5000,
    "sex": "female",
    "year": 2008,
}


def penguin_rows(label: str, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Penguins as JSON rows, from the rows a model on `label` was trained on."""
    table = demo_table().dropna(subset=[label]).drop(columns=label)
    return json_records(table.sample(n=n, replace=n > len(table), random_state=seed))


def penguin_file(path: Path, rows: int, seed: int = 0) -> pd.DataFrame:
    """A CSV or Parquet file (by suffix) of penguin rows with a `penguin_id` column."""
    table = demo_table().dropna(subset=["species"]).drop(columns="species")
    frame = table.sample(n=rows, replace=True, random_state=seed).reset_index(drop=True)
    frame.insert(0, "penguin_id", [f"p{i:06d}" for i in range(rows)])
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return frame


def metric_samples(url: str) -> dict[str, list[Sample]]:
    """The server's /metrics, parsed by prometheus_client: sample name -> samples."""
    samples: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def total(samples: dict[str, list[Sample]], name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    return sum(s.value for s in samples.get(name, [])
               if all(s.labels.get(k) == v for k, v in labels.items()))


def adaptive_batches(url: str) -> tuple[float, float]:
    """(requests, merged model calls) the model has seen, in either topology (our histogram,
    recorded by TabularRuntime.score_groups wherever the model lives)."""
    samples = metric_samples(url)
    return (total(samples, "agbento_batch_requests_sum"),
            total(samples, "agbento_batch_requests_count"))


def card_without_model(problem_type: str = "multiclass", tag: str = "unit:1") -> ModelCard:
    """A model card with a small schema and no predictor: for pure code (contract, runtime)."""
    classes = ("Adelie", "Gentoo") if problem_type != "regression" else None
    schema = FeatureSchema(
        features=(
            Feature("island", "categorical", nullable=False, categories=("Biscoe", "Dream")),
            Feature("bill_length_mm", "numeric", nullable=True, minimum=30.0, maximum=60.0),
        ),
        label=LabelInfo("species" if classes else "body_mass_g", problem_type, classes),
    )
    examples = [{"island": "Biscoe", "bill_length_mm": 45.0},
                {"island": "Dream", "bill_length_mm": 39.5}]
    return ModelCard(tag=tag, labels={}, path=Path("."), metadata={
        "schema": schema.to_dict(), "problem_type": problem_type, "eval_metric": "accuracy",
        "examples": examples})
