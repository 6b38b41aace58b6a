"""The challenger gate: a stronger model passes and is promoted, the same model with a
margin fails and stores nothing, a champion that cannot score the rows is refused before
the fit; the scores are AutoGluon's own on the same rows."""

from __future__ import annotations

from pathlib import Path

import bentoml
import numpy as np
import pandas as pd
import pytest

from agbento.cli import main as agbento_main
from agbento.models.stages import StageRegistry
from agbento.models.store import ModelCard, save_model
from agbento.rows.schema import nulls_as_none
from agbento.training.challenge import (
    EXIT_CHAMPION_UNUSABLE,
    ChallengerLost,
    ClassOrder,
    compare,
    find_champion,
    predictions_of,
    score,
)
from agbento.training.pipeline import demo_table, load_data, train
from tests.tiny_models import TinyModels, tiny_config

quiet = lambda _message: None  # noqa: E731


def stored_versions(name: str) -> int:
    try:
        return len(bentoml.models.list(name))
    except bentoml.exceptions.NotFound:
        return 0


def copy_of(card: ModelCard, name: str) -> ModelCard:
    return save_model(name, card.predictor_path, card.labels, card.metadata)


def table_file(directory: Path, table: pd.DataFrame, name: str = "table.csv") -> Path:
    path = directory / name
    table.to_csv(path, index=False)
    return path


def test_a_stronger_challenger_passes_and_is_promoted(tmp_path: Path) -> None:
    """The champion saw only island and year; the challenger sees every feature."""
    name = "ch-species"
    weak = table_file(tmp_path, demo_table()[["species", "island", "year"]])
    champion = train(tiny_config(name, "species", demo=False, data=weak), quiet).card
    registry = StageRegistry.default()
    registry.promote(name, champion.tag.split(":")[1], by="tests")

    lines: list[str] = []
    result = train(tiny_config(name, "species", challenge=f"{name}@production",
                               promote=True), lines.append)
    comparison = result.comparison
    assert comparison is not None and comparison.passed and result.promoted
    assert comparison.champion == champion.tag and comparison.metric == "accuracy"
    # the challenger's score is AutoGluon's own holdout evaluation of it
    assert comparison.challenger_score == pytest.approx(result.holdout_metrics["accuracy"])
    assert comparison.difference_interval.low > 0 and comparison.rows == 69
    for point, interval in ((comparison.champion_score, comparison.champion_interval),
                            (comparison.challenger_score, comparison.challenger_interval)):
        assert interval.low <= point <= interval.high
    assert any("adds feature(s) 'bill_length_mm'" in note for note in comparison.notes)
    printed = "\n".join(lines)
    assert "champion   " in printed and "challenger " in printed and "95% [" in printed

    # the champion's score is its accuracy on those same rows, computed independently
    data = load_data(tiny_config(name, "species"), quiet)
    from autogluon.tabular import TabularPredictor

    predictor = TabularPredictor.load(str(champion.predictor_path), verbosity=0)
    features = champion.schema.validate_table(
        nulls_as_none(data.holdout_raw.drop(columns="species"))).frame
    accuracy = float(np.mean(predictor.predict(features).to_numpy()
                             == data.holdout_raw["species"].to_numpy()))
    assert comparison.champion_score == pytest.approx(accuracy)

    stored = result.card.metadata["challenge"]
    assert stored["verdict"] == "pass" and stored["champion"] == champion.tag
    assert stored["samples"] == 1000 and stored["seed"] == 0 and stored["confidence"] == 0.95
    assert len(stored["difference_interval"]) == 2
    now = registry.current(name)
    assert now is not None and now.tag == result.card.tag
    assert now.behind == (champion.tag.split(":")[1],) and "challenger gate" in now.reason


def test_the_same_model_with_a_margin_fails_and_stores_nothing(
        tiny_models: TinyModels) -> None:
    name = "ch-same"
    champion = copy_of(tiny_models.multiclass, name)
    before = stored_versions(name)
    with pytest.raises(ChallengerLost) as lost:
        train(tiny_config(name, "species", challenge=champion.tag, min_gain=0.01,
                          promote=False), quiet)
    comparison = lost.value.comparison
    # the same settings on the same rows: the same predictions, a difference of exactly 0
    assert comparison.difference == 0 and comparison.difference_interval.high == 0
    assert not comparison.passed and lost.value.exit_code == 3
    assert str(lost.value).startswith("challenger gate failed, nothing saved: accuracy")
    assert stored_versions(name) == before


def test_scores_are_autogluons_own_for_probabilities_and_regression(
        tiny_models: TinyModels) -> None:
    """A stored model against itself, on its own holdout rows: each score is the holdout
    metric train.py stored (roc_auc reads the positive class's probability)."""
    from autogluon.core.metrics import get_metric
    from autogluon.tabular import TabularPredictor

    for card, metric in ((tiny_models.binary, "roc_auc"),
                         (tiny_models.regression, "root_mean_squared_error")):
        label = card.metadata["label"]
        data = load_data(tiny_config("unused", label), quiet)
        predictor = TabularPredictor.load(str(card.predictor_path), verbosity=0)
        order = ClassOrder.of(predictor)
        truth = order.encode(data.holdout_raw[label].to_numpy())
        given = predictions_of(predictor, data.holdout_frame.drop(columns=label), order)
        scorer = get_metric(metric, card.problem_type)
        assert score(scorer, truth, given) == pytest.approx(
            card.metadata["holdout_metrics"][metric], rel=1e-9)

        comparison = compare(find_champion(card.tag), predictor, data.holdout_raw,
                             data.holdout_frame, label, min_gain=0.0, seed=7, samples=200)
        assert comparison.difference == 0 and not comparison.passed
        assert comparison.stratified == (card.problem_type == "binary")
        assert (comparison.samples, comparison.seed) == (200, 7)


def run_train(*argv: str) -> int:
    return agbento_main(["train", *argv])


@pytest.fixture(scope="module")
def penguins() -> pd.DataFrame:
    return demo_table()


def test_incompatible_champions_are_refused_before_the_fit(
        tiny_models: TinyModels, penguins: pd.DataFrame, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    species = tiny_models.multiclass.tag
    renamed = penguins.assign(species=penguins["species"].replace({"Adelie": "adelie"}))
    textual_year = penguins.assign(year="y" + penguins["year"].astype(str))
    cases = [
        ("label", ["--demo", "--challenge", tiny_models.binary.tag],
         "predicts 'sex', the challenger 'species': not the same label"),
        ("problem type", ["--demo", "--label", "sex", "--problem-type", "multiclass",
                          "--challenge", tiny_models.binary.tag],
         "is binary, the challenger multiclass: not the same problem type"),
        ("classes", ["--data", str(table_file(tmp_path, renamed, "renamed.csv")), "--label",
                     "species", "--challenge", species], "not the same classes"),
        ("dropped feature", ["--data", str(table_file(tmp_path, penguins.drop(
            columns="bill_length_mm"), "dropped.csv")), "--label", "species",
            "--challenge", species],
         "needs feature(s) 'bill_length_mm', which the challenger's data does not have"),
        ("refused rows", ["--data", str(table_file(tmp_path, textual_year, "year.csv")),
                          "--label", "species", "--challenge", species],
         "schema refuses 69 of the challenger's 69 holdout rows (first: row 0, 'year'"),
        ("no champion", ["--demo", "--name", "ch-none", "--challenge", "ch-none@production"],
         "no version of ch-none is in production: agbento models promote ch-none:VERSION"),
    ]
    for what, argv, message in cases:
        before = stored_versions("agbento-demo") + stored_versions("tiny-species")
        assert run_train(*argv, "--time-limit", "5") == EXIT_CHAMPION_UNUSABLE, what
        error = capsys.readouterr().err.strip()
        assert message in error and error.startswith("error: ") and "\n" not in error, (
            what, error)
        assert stored_versions("agbento-demo") + stored_versions("tiny-species") == before


def test_promote_needs_a_challenged_stage_of_the_same_name(
        capsys: pytest.CaptureFixture[str]) -> None:
    for argv, message in (
        (["--demo", "--promote"], "--promote needs --challenge NAME@STAGE"),
        (["--demo", "--promote", "--challenge", "agbento-demo:abc"],
         "--promote needs --challenge NAME@STAGE"),
        (["--demo", "--promote", "--challenge", "other@production"],
         "the challenged model other@production is not the one trained (agbento-demo)"),
    ):
        assert run_train(*argv) == 1
        assert message in capsys.readouterr().err
