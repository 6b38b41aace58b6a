"""agbento.explain in process: contributions add up to what /predict answers, on every kind
of model the tests train (binary, multiclass, regression, dates and text, each tree
library, a non-tree model); they rank the features a label depends on first, and a
monotone feature's contributions have its sign."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agbento.explain import Explainer, Explanations, UnknownClass
from agbento.explain.background import METADATA_KEY, background_frame
from agbento.explain.engine import PERMUTATION_SHAP, TREE_SHAP, TREE_SHAP_RESCALED
from agbento.models.store import ModelCard
from agbento.rows.schema import FeatureSchema, json_records
from agbento.runtime.inference import TabularRuntime
from agbento.training.pipeline import demo_table
from tests.helpers import penguin_rows
from tests.tiny_models import (
    TinyModels,
    dates_text_table,
    train_table_model,
    two_feature_table,
)

TOLERANCE = 1e-6


def frame_of(schema: FeatureSchema, records: list[dict]) -> pd.DataFrame:
    validated = schema.validate_rows(records)
    assert validated.rows, validated.problems[:3]
    return schema.to_frame(validated.rows)


def model_output(runtime: TabularRuntime, frame: pd.DataFrame,
                 explained: list[str] | None) -> tuple[np.ndarray, np.ndarray]:
    """(labels, the explained output) as /predict answers them."""
    labels, proba = runtime.predict_frame(frame)
    if proba is None:
        return labels.to_numpy(), labels.to_numpy(dtype=np.float64)
    assert explained is not None
    columns = [proba.columns.get_loc(c) for c in explained]
    return labels.to_numpy(), proba.to_numpy()[np.arange(len(frame)), columns]


def assert_additive(explanations: Explanations, expected: np.ndarray,
                    tolerance: float = TOLERANCE) -> None:
    summed = explanations.base_value + explanations.contributions.sum(axis=1)
    np.testing.assert_allclose(summed, explanations.output, rtol=0, atol=1e-9)
    scale = np.maximum(1.0, np.abs(expected))
    error = np.abs(summed - expected) / scale
    assert error.max() <= tolerance, f"additivity error {error.max():.3e}"


@pytest.fixture(scope="module")
def runtimes(tiny_models: TinyModels) -> dict[str, TabularRuntime]:
    return {kind: TabularRuntime.load(getattr(tiny_models, kind))
            for kind in ("multiclass", "binary", "regression")}


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("explain-tables")


@pytest.fixture(scope="module")
def dates_text(tables: Path) -> tuple[TabularRuntime, pd.DataFrame]:
    table = dates_text_table()
    card = train_table_model(table, "tiny-dates-text", "cost", tables)
    return TabularRuntime.load(card), table


@pytest.fixture(scope="module")
def two_features(tables: Path) -> tuple[TabularRuntime, pd.DataFrame]:
    table = two_feature_table()
    card = train_table_model(table, "tiny-two-features", "y", tables)
    return TabularRuntime.load(card), table


# -- the background sample in the card ------------------------------------------------------


def test_training_keeps_a_background_sample_that_validates(tiny_models: TinyModels) -> None:
    card = tiny_models.multiclass
    stored = card.metadata[METADATA_KEY]["background"]
    assert 30 <= len(stored) <= 100
    frame = background_frame(card.schema, card.metadata)
    assert frame is not None and len(frame) == len(stored)
    assert list(frame.columns) == card.schema.names


# -- additivity on the tiny models ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["multiclass", "binary", "regression"])
def test_contributions_add_up_to_what_predict_answers(
        runtimes: dict[str, TabularRuntime], kind: str) -> None:
    runtime = runtimes[kind]
    explainer = Explainer.load(runtime.predictor, runtime.card)
    assert explainer.method == (TREE_SHAP if kind == "regression" else TREE_SHAP_RESCALED)
    label = runtime.card.metadata["label"]
    frame = frame_of(runtime.schema, penguin_rows(label, 300, seed=3))
    explanations = explainer.explain(frame)
    labels, expected = model_output(runtime, frame, explanations.explained_class)
    assert_additive(explanations, expected)
    assert explanations.contributions.shape == (300, len(runtime.schema.names))
    assert explanations.features == runtime.schema.names
    if kind != "regression":  # the explained class is the predicted one
        assert explanations.explained_class == [str(v) for v in labels]
        assert list(explanations.prediction) == list(labels)
    else:  # the model's own value, exactly (the sums match it within the tolerance)
        np.testing.assert_array_equal(explanations.prediction, labels.astype(np.float64))
    assert np.abs(explanations.contributions).sum(axis=1).min() > 0  # something explains


def test_a_single_row_and_an_empty_feature_are_explained(
        runtimes: dict[str, TabularRuntime]) -> None:
    runtime = runtimes["multiclass"]
    explainer = Explainer.load(runtime.predictor, runtime.card)
    record = {**penguin_rows("species", 1, seed=5)[0], "sex": None, "bill_depth_mm": None}
    frame = frame_of(runtime.schema, [record])
    explanations = explainer.explain(frame)
    _, expected = model_output(runtime, frame, explanations.explained_class)
    assert_additive(explanations, expected)


def test_the_caller_chooses_the_explained_class(runtimes: dict[str, TabularRuntime]) -> None:
    runtime = runtimes["multiclass"]
    explainer = Explainer.load(runtime.predictor, runtime.card)
    frame = frame_of(runtime.schema, penguin_rows("species", 3, seed=7))
    classes = ["Gentoo", None, "Chinstrap"]
    explanations = explainer.explain(frame, classes)
    predicted = explainer.explain(frame)
    assert explanations.explained_class[0] == "Gentoo"
    assert explanations.explained_class[1] == predicted.explained_class[1]
    assert explanations.explained_class[2] == "Chinstrap"
    _, expected = model_output(runtime, frame, explanations.explained_class)
    assert_additive(explanations, expected)
    # every class's contributions of one row sum to zero (the probabilities sum to one)
    per_class = [explainer.explain(frame.iloc[[0]], [c]).contributions[0]
                 for c in explainer.classes]
    np.testing.assert_allclose(np.sum(per_class, axis=0), 0, atol=1e-9)
    with pytest.raises(UnknownClass):
        explainer.explain(frame, ["Gentoo", "Dodo", None])


def test_binary_classes_mirror_each_other(runtimes: dict[str, TabularRuntime]) -> None:
    runtime = runtimes["binary"]
    explainer = Explainer.load(runtime.predictor, runtime.card)
    frame = frame_of(runtime.schema, penguin_rows("sex", 20, seed=9))
    first, second = (explainer.explain(frame, [c] * len(frame)) for c in explainer.classes)
    np.testing.assert_allclose(first.contributions, -second.contributions, atol=1e-12)
    np.testing.assert_allclose(first.base_value + second.base_value, 1, atol=1e-12)


def test_top_keeps_the_largest_and_says_what_is_left(runtimes: dict[str, TabularRuntime]) -> None:
    runtime = runtimes["regression"]
    explainer = Explainer.load(runtime.predictor, runtime.card)
    explanations = explainer.explain(frame_of(runtime.schema, penguin_rows("body_mass_g", 5)))
    for row, full in zip(explanations.records(top=2), explanations.records(), strict=True):
        assert len(row["contributions"]) == 2
        kept = sorted(full["contributions"].values(), key=abs, reverse=True)[:2]
        assert list(row["contributions"].values()) == kept
        total = row["base_value"] + sum(row["contributions"].values()) + row["others"]
        assert total == pytest.approx(row["prediction"], rel=1e-6)


# -- dates and text: derived columns summed back to their raw feature -----------------------


def test_dates_and_text_add_up_and_name_only_raw_features(
        dates_text: tuple[TabularRuntime, pd.DataFrame]) -> None:
    runtime, table = dates_text
    kinds = {f.name: f.kind for f in runtime.schema.features}
    assert kinds["date"] == "datetime" and kinds["remarks"] == "text"
    derived = runtime.predictor._learner.feature_generator.get_feature_links()
    assert len(derived["date"]) > 1 and len(derived["remarks"]) > 1  # AutoGluon derived them
    explainer = Explainer.load(runtime.predictor, runtime.card)
    assert explainer.method == TREE_SHAP
    frame = frame_of(runtime.schema, json_records(table.drop(columns="cost").iloc[:200]))
    explanations = explainer.explain(frame)
    assert explanations.features == ["date", "remarks", "speed", "sky"]
    _, expected = model_output(runtime, frame, None)
    assert_additive(explanations, expected)
    # the label moves with 'smoke' in the remarks: its contribution carries that
    smoke = frame["remarks"].str.split().map(lambda words: "smoke" in words).to_numpy()
    remarks = explanations.contributions[:, 1]
    assert remarks[smoke].mean() > 3 > remarks[~smoke].mean()


# -- the synthetic table: the two features the label depends on come first ------------------


def test_the_two_informative_features_rank_first(
        two_features: tuple[TabularRuntime, pd.DataFrame]) -> None:
    runtime, table = two_features
    explainer = Explainer.load(runtime.predictor, runtime.card)
    rows = table.drop(columns="y").sample(300, random_state=1)
    frame = frame_of(runtime.schema, json_records(rows))
    explanations = explainer.explain(frame, ["yes"] * len(frame))
    top = explanations.top(2)
    informative = {0, 1}
    share = np.mean([set(pair) == informative for pair in top.tolist()])
    assert share >= 0.9, f"x0 and x1 first in only {share:.0%} of rows"
    # monotone: P(yes) rises with x0, and so does x0's contribution to it
    x0 = frame["x0"].to_numpy()
    contribution = explanations.contributions[:, 0]
    assert np.corrcoef(x0, contribution)[0, 1] > 0.8
    assert (contribution[x0 > 0.8] > 0).mean() > 0.9
    assert (contribution[x0 < 0.2] < 0).mean() > 0.9


def test_the_agnostic_method_ranks_them_first_too(
        two_features: tuple[TabularRuntime, pd.DataFrame]) -> None:
    runtime, table = two_features
    explainer = Explainer.load(runtime.predictor, runtime.card, method="agnostic")
    assert explainer.method == PERMUTATION_SHAP
    frame = frame_of(runtime.schema, json_records(table.drop(columns="y").iloc[:40]))
    explanations = explainer.explain(frame, ["yes"] * len(frame))
    _, expected = model_output(runtime, frame, explanations.explained_class)
    assert_additive(explanations, expected)
    share = np.mean([set(pair) == {0, 1} for pair in explanations.top(2).tolist()])
    assert share >= 0.85, f"x0 and x1 first in only {share:.0%} of rows"


# -- each tree library, their ensemble, and a model that is not trees -----------------------

ZOO = {"GBM": {"num_boost_round": 30}, "CAT": {"iterations": 30},
       "XGB": {"n_estimators": 30}, "LR": {}}


@pytest.fixture(scope="module", params=["multiclass", "binary", "regression"])
def zoo(request: pytest.FixtureRequest, tiny_models: TinyModels,
        tmp_path_factory: pytest.TempPathFactory) -> tuple[object, ModelCard, pd.DataFrame]:
    """A predictor with one model of each tree library and a linear model, all kept (no
    clone for deployment), persisted as the runtime does; the tiny model's card for the
    same label gives the schema and the background rows."""
    from autogluon.tabular import TabularPredictor

    card: ModelCard = getattr(tiny_models, request.param)
    label = card.metadata["label"]
    table = demo_table().dropna(subset=[label])
    train = card.schema.to_frame(table)
    train[label] = table[label].to_numpy()
    predictor = TabularPredictor(label=label, problem_type=card.problem_type, verbosity=0,
                                 path=str(tmp_path_factory.mktemp(f"zoo-{request.param}")))
    predictor.fit(train, hyperparameters=ZOO, time_limit=120)
    # an ensemble of the tree models alone (AutoGluon's may weigh the linear model in)
    predictor.fit_weighted_ensemble(base_models=["LightGBM", "CatBoost", "XGBoost"],
                                    name_suffix="Trees")
    predictor.persist(models="all")
    frame = frame_of(card.schema, penguin_rows(label, 150, seed=11))
    return predictor, card, frame


def zoo_output(predictor, frame: pd.DataFrame, model: str,
               explained: list[str] | None) -> np.ndarray:
    if explained is None:
        return predictor.predict(frame, model=model).to_numpy(dtype=np.float64)
    proba = predictor.predict_proba(frame, model=model, as_multiclass=True)
    proba.columns = [str(c) for c in proba.columns]
    columns = [proba.columns.get_loc(c) for c in explained]
    return proba.to_numpy()[np.arange(len(frame)), columns]


def test_every_tree_library_and_the_ensemble_explain_exactly(zoo) -> None:
    predictor, card, frame = zoo
    names = predictor.model_names()
    kinds = {type(predictor._trainer.load_model(n)).__name__ for n in names}
    assert {"LGBModel", "CatBoostModel", "XGBoostModel"} <= kinds
    ensembles = {n: predictor._trainer.load_model(n)._get_model_weights()
                 for n in names if n.startswith("WeightedEnsemble")}
    exact = [n for n in names if n != "LinearModel" and "LinearModel" not in ensembles.get(n, {})]
    assert "WeightedEnsemble_L2Trees" in exact
    for name in exact:
        explainer = Explainer.load(predictor, card, model=name)
        assert explainer.method in (TREE_SHAP, TREE_SHAP_RESCALED), (name,
                                                                   explainer.fallback_reason)
        explanations = explainer.explain(frame)
        assert_additive(explanations, zoo_output(predictor, frame, name,
                                                 explanations.explained_class))


def test_a_model_that_is_not_trees_explains_by_permutation(zoo) -> None:
    predictor, card, frame = zoo
    weights = predictor._trainer.load_model("WeightedEnsemble_L2")._get_model_weights()
    if weights.get("LinearModel"):  # an ensemble with a non-tree member: agnostic too
        assert Explainer.load(predictor, card).method == PERMUTATION_SHAP
    explainer = Explainer.load(predictor, card, model="LinearModel")
    assert explainer.method == PERMUTATION_SHAP
    assert "LinearModel" in (explainer.fallback_reason or "")
    frame = frame.iloc[:20]
    explanations = explainer.explain(frame)
    assert_additive(explanations, zoo_output(predictor, frame, "LinearModel",
                                             explanations.explained_class))
    assert np.abs(explanations.contributions).sum(axis=1).min() > 0


def test_xgboost_with_merged_rare_categories_explains_exactly(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """XGBoost's one-hot encoder merges rare categories into one column: the exact path
    counts its columns as the encoder does (it fell back to the slow permutation method)."""
    from tests.tiny_models import rare_categories_table, train_table_model

    table = rare_categories_table()
    card = train_table_model(table, "tiny-rare-xgb", "y", tmp_path_factory.mktemp("rare"),
                             hyperparameters={"XGB": {"n_estimators": 30}})
    runtime = TabularRuntime.ready_to_serve(card)
    encoder = runtime.predictor._trainer.load_model("XGBoost")._ohe_generator.ohe_encs
    assert any(found.size for found in encoder.infrequent_indices_)  # the case itself
    explainer = Explainer.load(runtime.predictor, card)
    assert explainer.method == TREE_SHAP_RESCALED, explainer.fallback_reason
    frame = frame_of(card.schema, json_records(table.drop(columns="y").iloc[:80]))
    explanations = explainer.explain(frame)
    _, expected = model_output(runtime, frame, explanations.explained_class)
    assert_additive(explanations, expected)
