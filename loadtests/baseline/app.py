"""The baseline: how the common FastAPI tutorial serves a TabularPredictor.

One `predict` and one `predict_proba` per request, no batching, predictor kept in memory
(as AutoGluon advises). Same model and same JSON body as agbento, for a fair comparison.

    AGBENTO_MODEL=agbento-demo:latest uvicorn loadtests.baseline.app:app --port 3100
"""

from __future__ import annotations

import os
from typing import Any

import bentoml
import pandas as pd
from autogluon.tabular import TabularPredictor
from fastapi import FastAPI
from pydantic import BaseModel

model = bentoml.models.get(os.environ.get("AGBENTO_MODEL", "agbento-demo:latest"))
predictor = TabularPredictor.load(model.path_of("predictor"), verbosity=0)
predictor.persist(models="all")
app = FastAPI()


class Rows(BaseModel):
    data: list[dict[str, Any]]


@app.post("/predict")
def predict(body: Rows) -> dict[str, Any]:
    frame = pd.DataFrame(body.data)
    predictions = predictor.predict(frame)
    probabilities = predictor.predict_proba(frame)
    return {
        "predictions": predictions.tolist(),
        "probabilities": probabilities.to_dict(orient="records"),
    }


@app.get("/readyz")
def ready() -> dict[str, str]:
    return {"status": "ok"}
