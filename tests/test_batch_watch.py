"""The batch client's end-of-run report: the top drifting features of the file against the
model's training rows, and with --label the run's metrics beside the holdout's."""

from __future__ import annotations

from pathlib import Path

import pytest

from agbento.training.pipeline import demo_table
from tests.helpers import batch, summary
from tests.servers import BentoServer
from tests.tiny_models import TinyModels


def penguins(path: Path, shift: float = 0.0) -> Path:
    table = demo_table().dropna(subset=["species"]).sample(n=2_000, replace=True, random_state=3)
    table["bill_length_mm"] += shift
    table.reset_index(drop=True).rename_axis("penguin_id").reset_index().to_parquet(path)
    return path


def test_local_run_reports_label_metrics_and_no_drift_on_training_like_rows(
        tiny_models: TinyModels, tmp_path: Path) -> None:
    card = tiny_models.multiclass
    done = batch(str(penguins(tmp_path / "in.parquet")), str(tmp_path / "out.parquet"),
                 "--local", card.tag, "--label", "species", "--id-column", "penguin_id")
    assert done.returncode == 0, done.stderr[-2000:]
    report = summary(done.stderr)
    metrics = report["label_metrics"]
    assert metrics["rows"] == 2_000 and metrics["eval_metric"] == "accuracy"
    assert metrics["metrics"]["accuracy"] > 0.85
    assert "accuracy" in metrics["holdout_metrics"]
    assert report["drift_sample_rows"] > 0
    assert all(entry["psi"] < 0.1 for entry in report["top_drifting"])


def test_a_shifted_feature_tops_the_drift_report(tiny_models: TinyModels,
                                                 tmp_path: Path) -> None:
    done = batch(str(penguins(tmp_path / "in.parquet", shift=25.0)),
                 str(tmp_path / "out.parquet"), "--local", tiny_models.multiclass.tag)
    report = summary(done.stderr)
    top = report["top_drifting"]
    assert top[0]["feature"] == "bill_length_mm" and top[0]["psi"] > 0.2
    assert all(entry["psi"] < 0.2 for entry in top[1:])
    assert "label_metrics" not in report


@pytest.mark.integration
def test_remote_run_measures_the_served_model(multiclass_server: BentoServer,
                                              tmp_path: Path) -> None:
    done = batch(str(penguins(tmp_path / "in.parquet")), str(tmp_path / "out.csv"),
                 "--url", multiclass_server.url, "--label", "species", "--chunk-rows", "500")
    assert done.returncode == 0, done.stderr[-2000:]
    assert summary(done.stderr)["label_metrics"]["metrics"]["accuracy"] > 0.85
