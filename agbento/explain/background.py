"""The background sample: training rows kept in the model card for explanations.

The model-agnostic method replaces features by these rows' values (its base value is the
mean output over them); the tree method checks itself against them when it loads.
They live in the model's metadata (`metadata["explain"]`, next to the example rows), as
JSON rows the schema validates: no pickle, nothing outside the metadata to verify.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from agbento.rows.schema import FeatureSchema, json_records

METADATA_KEY = "explain"
BACKGROUND_ROWS = 100
BACKGROUND_SEED = 0


def pick_background(schema: FeatureSchema, table: pd.DataFrame, rows: int = BACKGROUND_ROWS,
                    seed: int = BACKGROUND_SEED) -> dict[str, Any]:
    """What the card keeps for explanations: up to `rows` training rows (seeded draw) that
    pass the schema, and how they were drawn."""
    features = table.reindex(columns=schema.names)
    drawn = features.sample(n=min(len(features), 2 * rows), random_state=seed)
    records = json_records(drawn)
    valid = schema.validate_rows(records)
    kept = [records[i] for i in valid.indices][:rows]
    return {"background": kept, "background_seed": seed, "background_from": len(table)}


def background_frame(schema: FeatureSchema, metadata: dict[str, Any]) -> pd.DataFrame | None:
    """The stored background as model input (`FeatureSchema.to_frame`), or None."""
    stored = metadata.get(METADATA_KEY, {}).get("background")
    if not stored:
        return None
    validated = schema.validate_rows(stored)
    if not validated.rows:
        return None
    return schema.to_frame(validated.rows)
