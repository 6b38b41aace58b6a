"""Per-row feature contributions: why the model answered what it answered.

`engine.Explainer` (load it beside a runtime's predictor with its model card) explains rows
of model input: per row the prediction, the explained class, a base value and the
contributions of the schema's raw features, adding up to the model's output. `trees` holds
the exact TreeSHAP of AutoGluon's boosted trees and its margin-to-probability map,
`agnostic` the permutation method for every other model, `background` the training rows
the model card keeps for them.

May import: agbento.core, agbento.rows, agbento.models, agbento.monitoring.
"""

from agbento.explain.background import pick_background
from agbento.explain.engine import Explainer, Explanations, UnknownClass

__all__ = ["Explainer", "Explanations", "UnknownClass", "pick_background"]
