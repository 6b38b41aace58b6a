"""Exact TreeSHAP of AutoGluon's boosted-tree models, in margin space, and the map from a
model's margin to its output that keeps the contributions additive.

A *leaf* is one fitted LightGBM, XGBoost or CatBoost model as AutoGluon wraps it. Its
contributions come from the library's own path-dependent TreeSHAP (LightGBM
`pred_contrib`, XGBoost `pred_contribs`, CatBoost `ShapValues`): exact Shapley values of
the model's raw score (margin), with the expected margin over the training data (the
trees' covers) as base. The columns are the model's own (after AutoGluon's per-model
preprocessing: LightGBM's renamed columns, XGBoost's one-hot columns) and are named back
to AutoGluon's internal features here.

`to_output` carries margin contributions to the model's output: the identity for a
regression; for a classifier the link's gradient averaged along the straight line from the
base margin to the row's margin (the "rescale" rule; for the logistic link exactly
(sigmoid(m) - sigmoid(b)) / (m - b), for softmax Gauss-Legendre quadrature with a
minimum-norm correction of its residual), so that base + sum(contributions) is the output
exactly. These are not Shapley values of the probability: they are the margin's Shapley
values, each mapped by the same per-row linear map.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

IDENTITY, LOGISTIC, SOFTMAX = "identity", "logistic", "softmax"
# Gauss-Legendre nodes for the softmax path integral; the residual is corrected exactly.
QUADRATURE_NODES = 32


class Unsupported(Exception):
    """A model this module cannot explain exactly (the caller falls back)."""


@dataclass(frozen=True)
class MarginShap:
    """One leaf's TreeSHAP on a batch: `phi` (rows, outputs, columns) and `bias`
    (rows, outputs), with `columns` naming AutoGluon's internal feature of each column."""

    phi: np.ndarray
    bias: np.ndarray
    columns: list[str]
    link: str


def leaf_kind(model: Any) -> str | None:
    """'lightgbm', 'xgboost', 'catboost' or None for a model this module cannot read."""
    name = type(model).__name__
    return {"LGBModel": "lightgbm", "XGBoostModel": "xgboost",
            "CatBoostModel": "catboost"}.get(name)


class Leaf:
    """One tree model: its preprocessing and its library's TreeSHAP, ready to call."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.kind = leaf_kind(model)
        if self.kind is None:
            raise Unsupported(f"{type(model).__name__} is not a tree model we read")
        if getattr(model, "temperature_scalar", None) is not None or \
                getattr(model, "conformalize", None) is not None:
            raise Unsupported(f"{model.name}: calibrated probabilities")
        self.link, self.scale = getattr(self, f"_link_{self.kind}")()
        self._columns: dict[tuple[str, ...], list[str]] = {}

    # -- links ----------------------------------------------------------------------------

    def _link_of_problem(self, problem_type: str) -> str:
        return {"binary": LOGISTIC, "multiclass": SOFTMAX, "regression": IDENTITY}.get(
            problem_type, "")

    def _link_lightgbm(self) -> tuple[str, float]:
        header = self.model.model.model_to_string(num_iteration=0).split("\n", 40)
        objective = next((line.split("=", 1)[1] for line in header
                          if line.startswith("objective=")), "")
        name, *params = objective.split()
        scale = 1.0
        for param in params:
            key, _, value = param.partition(":")
            if key == "sigmoid":
                scale = float(value)
        links = {"binary": LOGISTIC, "multiclass": SOFTMAX, "regression": IDENTITY,
                 "regression_l1": IDENTITY, "huber": IDENTITY, "fair": IDENTITY,
                 "quantile": IDENTITY}
        if name not in links:
            raise Unsupported(f"LightGBM objective {objective!r}")
        return links[name], scale

    def _link_xgboost(self) -> tuple[str, float]:
        config = json.loads(self.model.model.get_booster().save_config())
        name = config["learner"]["objective"]["name"]
        links = {"binary:logistic": LOGISTIC, "multi:softprob": SOFTMAX,
                 "multi:softmax": SOFTMAX, "reg:squarederror": IDENTITY,
                 "reg:absoluteerror": IDENTITY, "reg:pseudohubererror": IDENTITY}
        if name not in links:
            raise Unsupported(f"XGBoost objective {name!r}")
        return links[name], 1.0

    def _link_catboost(self) -> tuple[str, float]:
        loss = str(self.model.model.get_all_params().get("loss_function", ""))
        name = loss.split(":")[0]
        links = {"Logloss": LOGISTIC, "CrossEntropy": LOGISTIC, "MultiClass": SOFTMAX,
                 "RMSE": IDENTITY, "MAE": IDENTITY, "Quantile": IDENTITY}
        if name not in links:
            raise Unsupported(f"CatBoost loss {loss!r}")
        return links[name], 1.0

    # -- contributions --------------------------------------------------------------------

    def margin_shap(self, internal: pd.DataFrame) -> MarginShap:
        """TreeSHAP of AutoGluon-internal rows (the feature generator's output)."""
        X = self.model.preprocess(internal)
        phi, columns = getattr(self, f"_shap_{self.kind}")(X)
        if phi.ndim == 2:  # one output: (rows, columns + 1)
            phi = phi[:, None, :]
        phi = phi.astype(np.float64, copy=False) * self.scale
        return MarginShap(phi[:, :, :-1], phi[:, :, -1], columns, self.link)

    def _shap_lightgbm(self, X: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
        booster = self.model.model
        raw = np.asarray(booster.predict(X, pred_contrib=True))
        width = X.shape[1] + 1
        outputs = raw.shape[1] // width
        phi = raw.reshape(len(X), outputs, width) if outputs > 1 else raw
        return phi, self._named(tuple(X.columns), self._lightgbm_names)

    def _lightgbm_names(self, columns: tuple[str, ...]) -> list[str]:
        renamed = self.model._features_internal_map or {}
        back = {new: old for old, new in renamed.items()}
        return [back.get(c, c) for c in columns]

    def _shap_xgboost(self, X: Any) -> tuple[np.ndarray, list[str]]:
        import xgboost

        wrapper = self.model.model
        matrix = xgboost.DMatrix(X, missing=wrapper.missing, nthread=wrapper.n_jobs or -1,
                                 enable_categorical=wrapper.enable_categorical)
        # the trees the wrapper predicts with: up to the best iteration (early stopping)
        try:
            trees = (0, int(wrapper.best_iteration) + 1)
        except AttributeError:
            trees = (0, 0)
        phi = wrapper.get_booster().predict(matrix, pred_contribs=True, iteration_range=trees)
        if getattr(self.model, "_ohe", False):
            columns = self._named(("ohe",), self._xgboost_ohe_names)
        else:
            columns = list(X.columns)
        if len(columns) != phi.shape[-1] - 1:
            raise Unsupported("XGBoost columns do not match its one-hot encoder")
        return phi, columns

    def _xgboost_ohe_names(self, _: tuple[str, ...]) -> list[str]:
        encoder = self.model._ohe_generator
        names: list[str] = []
        if encoder.cat_cols:
            for column, width in zip(encoder.cat_cols, _one_hot_widths(encoder.ohe_encs),
                                     strict=True):
                names += [column] * width
        return names + list(encoder.other_cols)

    def _shap_catboost(self, X: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
        from catboost import Pool

        model = self.model.model
        pool = Pool(X, cat_features=model.get_cat_feature_indices())
        phi = model.get_feature_importance(data=pool, type="ShapValues",
                                           thread_count=getattr(model, "thread_count", -1) or -1)
        return np.asarray(phi), list(X.columns)

    def _named(self, key: tuple[str, ...], name: Any) -> list[str]:
        if key not in self._columns:
            self._columns[key] = name(key)
        return self._columns[key]


def _one_hot_widths(encoder: Any) -> list[int]:
    """Columns per feature of AutoGluon's one-hot encoder (OneHotMergeRaresHandleUnknown-
    Encoder), counted as its `transform` counts them: a column per kept category, rare
    categories merged into one, less a dropped one."""
    widths = [len(categories) for categories in encoder.categories_]
    for index in range(len(widths)):
        infrequent = encoder.infrequent_indices_[index].size
        if infrequent > 0:
            widths[index] += 1 - infrequent
        if encoder.drop is not None:
            widths[index] -= 1
            if isinstance(encoder.drop, str) and encoder.drop == "infrequent" and not infrequent:
                widths[index] += 1
    return widths


# -- from margin to output --------------------------------------------------------------------


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # stable for large |x|


def _softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(QUADRATURE_NODES)
_NODES, _WEIGHTS = (_NODES + 1) / 2, _WEIGHTS / 2  # on [0, 1]


def to_output(shap: MarginShap) -> tuple[np.ndarray, np.ndarray, float]:
    """(contributions (rows, outputs, columns), base (rows, outputs), largest quadrature
    residual corrected) in the model's output space: additive to the output exactly."""
    phi, bias = shap.phi, shap.bias
    if shap.link == IDENTITY:
        return phi, bias, 0.0
    delta = phi.sum(axis=2)  # (rows, outputs): margin - base margin
    if shap.link == LOGISTIC:
        margin = bias + delta
        base, output = _sigmoid(bias), _sigmoid(margin)
        small = np.abs(delta) < 1e-9
        slope = np.where(small, base * (1 - base), (output - base) / np.where(small, 1, delta))
        return phi * slope[:, :, None], base, 0.0
    # softmax: A[r, k, c] = mean over the path of d p_k / d m_c
    rows, classes = delta.shape
    jacobian = np.zeros((rows, classes, classes))
    for node, weight in zip(_NODES, _WEIGHTS, strict=True):
        p = _softmax(bias + node * delta)
        jacobian += weight * (p[:, :, None] * (np.eye(classes)[None] - p[:, None, :]))
    base, output = _softmax(bias), _softmax(bias + delta)
    residual = (output - base) - np.einsum("rkc,rc->rk", jacobian, delta)
    norm = (delta * delta).sum(axis=1)
    safe = norm > 0
    jacobian[safe] += (residual[safe][:, :, None] * delta[safe][:, None, :]
                       / norm[safe][:, None, None])
    largest = float(np.abs(residual).max()) if residual.size else 0.0
    return np.einsum("rkc,rcf->rkf", jacobian, phi), base, largest
