"""Live quality from labels: a batch's metrics by AutoGluon's functions (equal to the
holdout's on the holdout rows), true vs permuted labels, and the feedback counters read back
from prometheus_client's registry; tiny models trained once per session."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from prometheus_client import REGISTRY

from agbento.models.store import ModelCard
from agbento.monitoring.quality import (
    FeedbackCounter,
    LabelSpec,
    evaluate_feedback,
    read_labels,
    score_batch,
)
from agbento.runtime.inference import TabularRuntime
from agbento.training.pipeline import clean_label, demo_table, split_holdout
from tests.tiny_models import TinyModels


def holdout_of(card: ModelCard) -> pd.DataFrame:
    """The rows train() held out for this model (same split, same seed)."""
    label = card.metadata["label"]
    table, _ = clean_label(demo_table(), label)
    return split_holdout(table, label, card.problem_type, 0.2, 0)[1]


def scored(card: ModelCard, rows: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame | None]:
    runtime = TabularRuntime.load(card)
    return runtime.predict_frame(card.schema.to_frame(rows))


def kinds(tiny_models: TinyModels) -> list[ModelCard]:
    return [tiny_models.multiclass, tiny_models.binary, tiny_models.regression]


def test_batch_metrics_on_the_holdout_are_the_holdout_metrics(tiny_models: TinyModels) -> None:
    """Same functions, same encoding (binary: the positive class, its probability) as
    AutoGluon's evaluate at training."""
    for card in kinds(tiny_models):
        holdout = holdout_of(card)
        spec = LabelSpec.of(card)
        labels = read_labels(holdout[spec_label(card)].tolist(), spec)
        assert not labels.problems
        predicted, proba = scored(card, holdout)
        found = score_batch(spec, labels.values, predicted.tolist(),
                            None if proba is None else proba.to_numpy(),
                            None if proba is None else list(proba.columns))
        assert found == pytest.approx(card.metadata["holdout_metrics"], rel=1e-6), card.tag
        assert spec.eval_metric in found


def spec_label(card: ModelCard) -> str:
    return str(card.metadata["label"])


@pytest.mark.parametrize("kind", ["multiclass", "binary", "regression"])
def test_true_labels_score_well_permuted_ones_badly(tiny_models: TinyModels, kind: str) -> None:
    card = getattr(tiny_models, kind)
    rows, _ = clean_label(demo_table(), spec_label(card))
    spec = LabelSpec.of(card)
    predicted, proba = scored(card, rows)
    keys = None if proba is None else list(proba.columns)
    matrix = None if proba is None else proba.to_numpy()
    truth = read_labels(rows[spec_label(card)].tolist(), spec)
    permuted = read_labels(np.random.default_rng(0).permutation(
        rows[spec_label(card)].to_numpy()).tolist(), spec)
    good = evaluate_feedback(spec, truth, predicted.tolist(), matrix, keys)
    bad = evaluate_feedback(spec, permuted, predicted.tolist(), matrix, keys)
    assert good.rows == bad.rows == len(rows)
    metric = spec.eval_metric
    assert set(good.metrics) == set(spec.holdout_metrics)
    if kind == "regression":  # AutoGluon's sign: -RMSE, higher is better
        assert good.metrics[metric] > 2 * bad.metrics[metric]
    else:
        assert good.metrics[metric] > 0.85 and bad.metrics[metric] < 0.7
    answer = good.to_dict()
    assert answer["eval_metric"] == metric and answer["refused"] == []
    assert answer["holdout_metrics"][metric] == spec.holdout_metrics[metric]


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_feedback_counters_classification(tiny_models: TinyModels) -> None:
    card = tiny_models.multiclass
    model = "quality-test-classes"
    counter = FeedbackCounter(LabelSpec.of(card), model)
    for metric, value in card.metadata["holdout_metrics"].items():
        assert sample("agbento_holdout_score", {"model": model, "metric": metric}) == value
    rows, _ = clean_label(demo_table(), "species")
    predicted, _ = scored(card, rows)
    actual = read_labels(rows["species"].tolist(), LabelSpec.of(card)).values
    counter.observe(actual, predicted.tolist())
    counter.observe(actual[:5], predicted.tolist()[:5])  # counters add up
    total = len(rows) + 5
    assert sample("agbento_feedback_rows_total", {"model": model}) == total
    right = int((actual == predicted.to_numpy()).sum()) + int(
        (actual[:5] == predicted.to_numpy()[:5]).sum())
    assert sample("agbento_feedback_correct_total", {"model": model}) == right
    outcomes = {(a, p): sample("agbento_feedback_outcomes_total",
                               {"model": model, "actual": a, "predicted": p})
                for a in ("Adelie", "Chinstrap", "Gentoo")
                for p in ("Adelie", "Chinstrap", "Gentoo")}
    assert sum(outcomes.values()) == total
    assert sum(v for (a, p), v in outcomes.items() if a == p) == right


def test_feedback_counters_regression(tiny_models: TinyModels) -> None:
    card = tiny_models.regression
    model = "quality-test-values"
    counter = FeedbackCounter(LabelSpec.of(card), model)
    rows, _ = clean_label(demo_table(), "body_mass_g")
    predicted, _ = scored(card, rows)
    actual = read_labels(rows["body_mass_g"].tolist(), LabelSpec.of(card)).values
    counter.observe(actual, predicted.tolist())
    errors = actual - predicted.to_numpy(dtype=np.float64)
    assert sample("agbento_feedback_rows_total", {"model": model}) == len(rows)
    assert sample("agbento_feedback_absolute_error_total", {"model": model}) == pytest.approx(
        np.abs(errors).sum())
    assert sample("agbento_feedback_squared_error_total", {"model": model}) == pytest.approx(
        np.square(errors).sum())
    assert sample("agbento_feedback_correct_total", {"model": model}) == 0  # not a classifier


def test_labels_the_model_cannot_use_are_named_by_row(tiny_models: TinyModels) -> None:
    classes = LabelSpec.of(tiny_models.multiclass)
    read = read_labels(["Adelie", None, "Emperor", "Gentoo"], classes)
    assert read.values.tolist() == ["Adelie", "Gentoo"] and read.rows.tolist() == [0, 3]
    assert read.problems[1] == "missing label"
    assert "'Emperor' is not a class" in read.problems[2] and "Adelie" in read.problems[2]
    values = LabelSpec.of(tiny_models.regression)
    read = read_labels([4200, "3900.5", "heavy", float("inf")], values)
    assert read.values.tolist() == [4200.0, 3900.5]
    assert "not a number" in read.problems[2] and "finite" in read.problems[3]
    binary = LabelSpec.of(tiny_models.binary)
    assert binary.positive_class in binary.classes
    # a batch too small for a metric (roc_auc on one class) leaves it out, not an error
    one = score_batch(binary, np.array([binary.positive_class] * 3, dtype=object),
                      [binary.positive_class] * 3)
    assert one["accuracy"] == 1.0 and "roc_auc" not in one
