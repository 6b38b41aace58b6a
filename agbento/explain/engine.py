"""The explainer: per-row contributions of the schema's raw features to the model's output.

`Explainer.load(predictor, card)` picks the method once:
- `tree_shap` / `tree_shap_margin_rescaled` (exact): the model (AutoGluon's best, or the
  one named) is a LightGBM, XGBoost or CatBoost model, a bag of them, or a weighted
  ensemble of those. Each tree model's exact TreeSHAP (trees.py) goes to the output space
  (the identity for a regression; for a classifier the margin-to-probability rescale of
  trees.py), then the ensemble's weights combine them in the space the ensemble averages
  in (probabilities), so the sum is exact for the ensemble too. AutoGluon's derived
  columns (date parts, text n-grams and counts, ...) are summed back to the raw feature
  they came from (the feature generator's links). A regression's contributions are the
  trees' Shapley values; a classifier's are the margin's Shapley values rescaled (see
  trees.py), not Shapley values of the probability.
- `permutation_shap` (agnostic.py): any other model, and any model whose exact
  contributions fail the self-check on the background rows at load.

`explain(frame, classes)` answers, per row of the frame `FeatureSchema.to_frame` builds:
the prediction (the model's own, exactly as /predict answers it), the explained class (the
predicted one unless named), `base_value` and the contributions, with `output` =
base_value + sum(contributions): the explained class's probability (or the regression
value) as /predict answers it, within `tolerance`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from agbento.explain import trees
from agbento.explain.agnostic import permutation_shap
from agbento.explain.background import background_frame
from agbento.models.store import ModelCard

logger = logging.getLogger(__name__)

TREE_SHAP = "tree_shap"
TREE_SHAP_RESCALED = "tree_shap_margin_rescaled"
PERMUTATION_SHAP = "permutation_shap"
# base + sum(contributions) vs the model's output as /predict answers it: absolute for
# probabilities, relative to max(1, |value|) for a regression (AutoGluon rounds every
# model's output to float32, ~6e-8 relative).
TOLERANCE = 1e-6
# The agnostic method's budget: background rows and feature orders per explained row.
AGNOSTIC_BACKGROUND = 32
AGNOSTIC_PERMUTATIONS = 8


class UnknownClass(ValueError):
    """The request named a class the model does not have."""


@dataclass(frozen=True)
class Explanations:
    """Per row: `prediction`, `explained_class` (str; None for a regression), `base_value`,
    `contributions` (rows x `features`, the schema's raw features in order) and `output`
    (base_value + contributions summed: the explained output); one `method` for all."""

    features: list[str]
    prediction: np.ndarray
    explained_class: list[str] | None
    base_value: np.ndarray
    contributions: np.ndarray
    output: np.ndarray
    method: str

    def __len__(self) -> int:
        return len(self.base_value)

    def top(self, k: int) -> np.ndarray:
        """Per row the indices of its k largest contributions by magnitude, largest first."""
        k = max(0, min(k, len(self.features)))
        order = np.argsort(-np.abs(self.contributions), axis=1, kind="stable")
        return order[:, :k]

    def records(self, top: int | None = None) -> list[dict[str, Any]]:
        """JSON-able rows; with `top`, only the k largest contributions, and `others`: the
        sum of the rest (so base_value + contributions + others is still the output)."""
        chosen = self.top(top if top is not None else len(self.features))
        rows = []
        for i in range(len(self)):
            picked = {self.features[j]: float(self.contributions[i, j]) for j in chosen[i]}
            row = {
                "prediction": _plain(self.prediction[i]),
                "explained_class": None if self.explained_class is None
                else self.explained_class[i],
                "base_value": float(self.base_value[i]),
                "contributions": picked,
                "method": self.method,
            }
            if top is not None:
                row["others"] = float(self.contributions[i].sum() - sum(picked.values()))
            rows.append(row)
        return rows


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


class Explainer:
    """Contributions of one loaded TabularPredictor's model (its best unless `model`)."""

    def __init__(self, predictor: Any, features: list[str], background: pd.DataFrame | None,
                 *, model: str | None = None, method: str = "auto",
                 permutations: int = AGNOSTIC_PERMUTATIONS,
                 agnostic_background: int = AGNOSTIC_BACKGROUND) -> None:
        self.predictor = predictor
        self.features = list(features)
        self.model_name = model or predictor.model_best
        self.problem_type = predictor.problem_type
        self.classification = self.problem_type in ("binary", "multiclass")
        self.class_labels = list(predictor.class_labels) if self.classification else []
        self.classes = [str(c) for c in self.class_labels]
        self.background = background
        self.permutations = permutations
        self.tolerance = TOLERANCE
        self.fallback_reason: str | None = None
        self._leaves: list[tuple[float, trees.Leaf]] = []
        self._raw_index: dict[tuple[str, ...], np.ndarray] = {}
        self.largest_quadrature_residual = 0.0
        if method not in ("auto", "exact", "agnostic"):
            raise ValueError(f"method {method!r}: auto, exact or agnostic")
        if method != "agnostic":
            try:
                self._prepare_exact()
                self._check_exact()
            except trees.Unsupported as exc:
                if method == "exact":
                    raise
                self.fallback_reason = str(exc)
                self._leaves = []
        if self._leaves:
            self.method = TREE_SHAP_RESCALED if self.classification else TREE_SHAP
        else:
            if background is None or background.empty:
                raise ValueError("the model-agnostic method needs background rows "
                                 "(retrain: train.py stores them in the model card)")
            self.method = PERMUTATION_SHAP
            self._agnostic_background = background.iloc[:agnostic_background]
            self._agnostic_base = self._model_output(self._agnostic_background).mean(axis=0)
            if self.fallback_reason:
                logger.info("explanations use %s: %s", self.method, self.fallback_reason)

    @classmethod
    def load(cls, predictor: Any, card: ModelCard, **options: Any) -> Explainer:
        """The explainer of a loaded runtime's predictor and its model card."""
        return cls(predictor, card.schema.names, background_frame(card.schema, card.metadata),
                   **options)

    # -- the public call --------------------------------------------------------------------

    def explain(self, frame: pd.DataFrame,
                classes: list[str | None] | None = None) -> Explanations:
        """Explain each row of `frame` (model input as `FeatureSchema.to_frame` builds it);
        `classes[i]` names row i's explained class (None: the predicted one)."""
        frame = frame[self.features]
        if self._leaves:
            internal = self.predictor._learner.transform_features(frame)
            output, base, contributions = self._exact_internal(internal)
            # the prediction is the model's own, as /predict answers it (not one derived
            # from the sums, which match it only within the tolerance); on the features
            # already transformed, so the feature generator runs once
            own = self._model_output(internal, transformed=True)
        else:
            output, base, contributions = self._agnostic(frame)
            own = output  # the agnostic method's output is the model's own
        rows = np.arange(len(frame))
        if not self.classification:
            return Explanations(self.features, own[:, 0], None, base[:, 0],
                                contributions[:, 0], output[:, 0], self.method)
        proba = pd.DataFrame(own, columns=self.class_labels)
        prediction = np.asarray(self.predictor.predict_from_proba(proba))
        chosen = self._explained(prediction, classes, len(frame))
        return Explanations(
            self.features, prediction, [self.classes[k] for k in chosen], base[rows, chosen],
            contributions[rows, chosen], output[rows, chosen], self.method)

    def _explained(self, prediction: np.ndarray, classes: list[str | None] | None,
                   rows: int) -> np.ndarray:
        index = {c: k for k, c in enumerate(self.classes)}
        predicted = [index[str(p)] for p in prediction]
        if classes is None:
            return np.asarray(predicted, dtype=np.int64)
        if len(classes) != rows:
            raise ValueError(f"{len(classes)} classes for {rows} rows")
        chosen = []
        for i, name in enumerate(classes):
            if name is None:
                chosen.append(predicted[i])
            elif str(name) in index:
                chosen.append(index[str(name)])
            else:
                raise UnknownClass(f"row {i}: class {name!r} is not one of the model's "
                                   f"classes ({', '.join(self.classes)})")
        return np.asarray(chosen, dtype=np.int64)

    # -- exact ------------------------------------------------------------------------------

    def _prepare_exact(self) -> None:
        learner = self.predictor._learner
        cleaner = type(learner.label_cleaner).__name__
        if cleaner not in ("LabelCleanerBinary", "LabelCleanerMulticlass", "LabelCleanerDummy"):
            raise trees.Unsupported(f"labels cleaned by {cleaner}")
        trainer = self.predictor._trainer
        self._add(trainer, self.model_name, 1.0)
        links = learner.feature_generator.get_feature_links()
        self._source: dict[str, int] = {}
        position = {name: j for j, name in enumerate(self.features)}
        for raw, derived in links.items():
            if raw not in position:
                raise trees.Unsupported(f"the feature generator reads {raw!r}, not a feature")
            for name in derived:
                self._source[name] = position[raw]
        if self.problem_type == "multiclass":
            valid = list(learner.label_cleaner.valid_ordered_class_labels)
            self._internal = [valid.index(c) if c in valid else -1 for c in self.class_labels]
        elif self.problem_type == "binary":
            self._positive = self.class_labels.index(self.predictor.positive_class)

    def _add(self, trainer: Any, name: str, weight: float) -> None:
        model = trainer.load_model(name)
        kind = type(model).__name__
        if getattr(model, "temperature_scalar", None) is not None or \
                getattr(model, "conformalize", None) is not None:
            raise trees.Unsupported(f"{name}: calibrated probabilities")
        if kind == "WeightedEnsembleModel":
            for base, share in model._get_model_weights().items():
                if share:
                    self._add(trainer, base, weight * share)
        elif kind in ("BaggedEnsembleModel", "StackerEnsembleModel"):
            if getattr(model, "stack_columns", None):
                raise trees.Unsupported(f"{name} is stacked on other models' predictions")
            children = [model.load_child(child) for child in model.models]
            for child in children:
                self._leaves.append((weight / len(children), trees.Leaf(child)))
        else:
            self._leaves.append((weight, trees.Leaf(model)))

    def _to_raw(self, columns: list[str]) -> np.ndarray:
        key = tuple(columns)
        if key not in self._raw_index:
            missing = [c for c in columns if c not in self._source]
            if missing:
                raise trees.Unsupported(f"no raw feature for derived column {missing[0]!r}")
            self._raw_index[key] = np.asarray([self._source[c] for c in columns])
        return self._raw_index[key]

    def _exact(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(output (rows, classes), base (rows, classes), contributions (rows, classes,
        features)) in /predict's class order; a regression has one 'class'."""
        return self._exact_internal(self.predictor._learner.transform_features(frame))

    def _exact_internal(self, internal: pd.DataFrame
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`_exact` of rows the feature generator has already transformed."""
        rows, width = len(internal), len(self.features)
        contributions: np.ndarray | None = None
        base: np.ndarray | None = None
        for weight, leaf in self._leaves:
            shap = leaf.margin_shap(internal)
            phi, bias, residual = trees.to_output(shap)
            self.largest_quadrature_residual = max(self.largest_quadrature_residual, residual)
            raw = np.zeros((rows, phi.shape[1], width))
            np.add.at(raw, (slice(None), slice(None), self._to_raw(shap.columns)), phi)
            if contributions is None:
                contributions, base = weight * raw, weight * bias
            elif raw.shape != contributions.shape:
                raise trees.Unsupported("the ensemble's models answer different outputs")
            else:
                contributions += weight * raw
                base += weight * bias
        assert contributions is not None and base is not None
        if self.problem_type == "binary":
            positive = self._positive
            contributions = np.concatenate([contributions, contributions], axis=1)
            base = np.concatenate([base, base], axis=1)
            contributions[:, 1 - positive] *= -1
            base[:, 1 - positive] = 1 - base[:, 1 - positive]
        elif self.problem_type == "multiclass":
            keep = np.asarray(self._internal)
            if contributions.shape[1] != int((keep >= 0).sum()):
                raise trees.Unsupported("the trees' classes are not the learner's")
            present = keep >= 0
            full = np.zeros((rows, len(keep), width))
            full[:, present] = contributions[:, keep[present]]
            full_base = np.zeros((rows, len(keep)))
            full_base[:, present] = base[:, keep[present]]
            contributions, base = full, full_base
        output = base + contributions.sum(axis=2)
        return output, base, contributions

    def _check_exact(self) -> None:
        """The exact contributions must add up to the predictor's own output on the
        background rows (and the examples' kinds of values), or the method is not used."""
        if self.background is None or self.background.empty:
            return
        frame = self.background[self.features]
        output, _, _ = self._exact(frame)
        expected = self._model_output(frame)
        scale = np.maximum(1.0, np.abs(expected)) if not self.classification else 1.0
        error = float(np.max(np.abs(output - expected) / scale))
        if not error <= self.tolerance:
            raise trees.Unsupported(f"exact contributions miss the model's output by {error:.2e}"
                                    " on the background rows")

    # -- agnostic ---------------------------------------------------------------------------

    def _model_output(self, frame: pd.DataFrame, transformed: bool = False) -> np.ndarray:
        """The model's output (rows, classes): probabilities, or a regression's values;
        `transformed`: the rows are the feature generator's output already."""
        if self.classification:
            proba = self.predictor.predict_proba(frame, model=self.model_name,
                                                 as_multiclass=True,
                                                 transform_features=not transformed)
            return proba[self.class_labels].to_numpy(dtype=np.float64)
        values = self.predictor.predict(frame, model=self.model_name,
                                        transform_features=not transformed)
        return np.asarray(values, dtype=np.float64)[:, None]

    def _agnostic(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        output = self._model_output(frame)
        phi, base = permutation_shap(self._model_output, frame, self._agnostic_background,
                                     self.permutations, base=self._agnostic_base,
                                     output=output)
        base_rows = np.broadcast_to(base, output.shape)
        # the model's own output, and its contributions (rows, outputs, features)
        return output, np.array(base_rows), phi
