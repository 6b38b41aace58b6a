"""What every peer adapter does with the stored predictor (it runs in the peer's venv, where
only AutoGluon and the peer are installed): load it as AutoGluon advises for online serving,
and score a frame into one answer frame."""

from __future__ import annotations

import pandas as pd
from autogluon.tabular import TabularPredictor


def load_predictor(path: str) -> TabularPredictor:
    """The stored predictor (the `predictor` folder of the BentoML model), its models kept in
    memory between calls (`persist`, as AutoGluon advises for online inference)."""
    predictor = TabularPredictor.load(path, verbosity=0)
    predictor.persist(models="all")
    return predictor


def score(predictor: TabularPredictor, frame: pd.DataFrame) -> pd.DataFrame:
    """One row per input row: `prediction` and, for a classifier, each class's probability
    (one `predict_proba` call, the label taken from it, as agbento answers)."""
    if predictor.problem_type in ("binary", "multiclass"):
        proba = predictor.predict_proba(frame)
        answer = proba.rename(columns=str)
        answer.insert(0, "prediction", predictor.predict_from_proba(proba))
    else:
        answer = pd.DataFrame({"prediction": predictor.predict(frame)})
    return answer.reset_index(drop=True)
