"""Scoring: a loaded predictor that turns validated rows into per-row answers."""

from __future__ import annotations

import logging
from typing import Any

from agbento.schema import FeatureSchema, json_records
from agbento.store import ModelCard

logger = logging.getLogger(__name__)


class TabularRuntime:
    """Holds one TabularPredictor in memory and scores value lists in schema order.

    `score` answers one dict per row: {"prediction": ..., "probabilities": {...} | None}, or
    {"error": ...} for a row the model itself could not score. A failing row is found by
    bisection, so it never fails the rows merged into the same batch from other requests.
    """

    def __init__(self, card: ModelCard, predictor: Any) -> None:
        self.card = card
        self.predictor = predictor
        self.schema: FeatureSchema = card.schema
        self.classification = card.is_classification
        self.ready = False

    @classmethod
    def load(cls, card: ModelCard) -> TabularRuntime:
        from autogluon.tabular import TabularPredictor  # heavy: import only where we load

        predictor = TabularPredictor.load(str(card.predictor_path), verbosity=0)
        # Without persist, AutoGluon reads every model from disk on each predict call.
        predictor.persist(models="all")
        return cls(card, predictor)

    def warm_up(self) -> None:
        """Score the stored example rows once; readiness means this worked."""
        validated = self.schema.validate_rows(self.card.examples)
        if not validated.ok or not validated.rows:
            raise RuntimeError(f"stored example rows do not validate: {validated.problems[:3]}")
        answers = self.score(validated.rows)
        failed = [a for a in answers if "error" in a]
        if failed:
            raise RuntimeError(f"warm-up prediction failed: {failed[0]['error']}")
        self.ready = True

    def score(self, rows: list[list[Any]]) -> list[dict[str, Any]]:
        if not rows:
            return []
        try:
            return self._score(rows)
        except Exception as exc:  # noqa: BLE001 - isolate, then report per row
            if len(rows) == 1:
                logger.warning("model failed on a row: %s: %s", type(exc).__name__, exc)
                detail = f"{type(exc).__name__}: {exc}"[:300]
                return [{"error": f"the model could not score this row ({detail})"}]
            middle = len(rows) // 2
            return self.score(rows[:middle]) + self.score(rows[middle:])

    def _score(self, rows: list[list[Any]]) -> list[dict[str, Any]]:
        frame = self.schema.to_frame(rows)
        if not self.classification:
            values = self.predictor.predict(frame).tolist()
            return [{"prediction": v, "probabilities": None} for v in values]
        proba = self.predictor.predict_proba(frame, as_multiclass=True)
        labels = self.predictor.predict_from_proba(proba).tolist()
        proba.columns = [str(c) for c in proba.columns]
        return [
            {"prediction": label, "probabilities": probs}
            for label, probs in zip(labels, json_records(proba), strict=True)
        ]
