"""The benchmark's pure parts, in-process: rows for any model, bodies in every format,
distinct one-row bodies, the targets table; and the shipped birdstrikes table it trains on."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from agbento.models.store import ModelCard
from agbento.rows.schema import FeatureSchema, json_records
from agbento.training.pipeline import DATASETS, TrainConfig, load_data
from loadtests import bench_rows
from loadtests.bench_report import (
    SINGLE,
    ModelResult,
    Report,
    markdown,
    targets,
)
from loadtests.bench_servers import Run
from train import parse_args, train_config

LABEL = "outcome"


def mixed_table(rows: int = 60) -> pd.DataFrame:
    """Numbers, a category, a date and free text (several words, mostly distinct), a label."""
    words = ["engine", "wing", "gear", "windshield", "radome", "landing", "light", "nose"]
    return pd.DataFrame({
        "height": [float(100 * i) for i in range(rows)],
        "engines": [2 + i % 3 for i in range(rows)],
        "sky": [["clear", "cloud", "overcast"][i % 3] for i in range(rows)],
        "date": pd.date_range("1990-01-01", periods=rows, freq="D"),
        "remarks": [f"bird hit {words[i % 8]} {words[(i * 3) % 8]} flight {i}"
                    for i in range(rows)],
        LABEL: [["yes", "no"][i % 2] for i in range(rows)],
    })


def card_for(table: pd.DataFrame, training: dict | None = None) -> ModelCard:
    schema = FeatureSchema.derive(table, LABEL, "binary")
    return ModelCard(tag="mixed:test", labels={}, path=Path("/nowhere"), metadata={
        "label": LABEL, "problem_type": "binary", "schema": schema.to_dict(),
        "training": training or {"source": "/gone/train.csv"}})


def test_the_mixed_table_has_every_kind() -> None:
    kinds = {f.name: f.kind for f in card_for(mixed_table()).schema.features}
    assert kinds == {"height": "numeric", "engines": "numeric", "sky": "categorical",
                     "date": "datetime", "remarks": "text"}


def test_rows_come_from_the_file_without_label_unknown_columns_and_refused_rows(
        tmp_path: Path) -> None:
    table = mixed_table()
    card = card_for(table)
    data = table.assign(note="not a feature")
    data["height"] = data["height"].astype(object)
    data.loc[5, "height"] = "tall"  # refused by the schema: left out, counted
    path = tmp_path / "rows.csv"
    data.to_csv(path, index=False)

    rows = bench_rows.model_rows(card, path, LABEL)

    assert list(rows.frame.columns) == card.schema.names
    assert rows.dropped_columns == ["note"]
    assert rows.rejected_rows == 1
    assert len(rows.frame) == len(table) - 1
    assert card.schema.validate_rows(json_records(rows.frame)).ok
    assert rows.source == str(path)


def test_rows_from_parquet_keep_dates_and_text(tmp_path: Path) -> None:
    table = mixed_table()
    path = tmp_path / "rows.parquet"
    table.to_parquet(path, index=False)
    rows = bench_rows.model_rows(card_for(table), path)  # the label comes from the card
    assert LABEL not in rows.frame.columns
    assert pd.api.types.is_datetime64_any_dtype(rows.frame["date"])
    assert rows.rejected_rows == 0


def test_a_model_whose_training_file_is_gone_asks_for_data() -> None:
    with pytest.raises(bench_rows.RowsError, match="--data"):
        bench_rows.model_rows(card_for(mixed_table()))


def test_a_file_without_the_models_features_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    pd.DataFrame({"a": [1, 2], "b": [3, 4]}).to_csv(path, index=False)
    with pytest.raises(bench_rows.RowsError, match="none of the model's features"):
        bench_rows.model_rows(card_for(mixed_table()), path)


def test_a_shipped_dataset_model_finds_its_rows_without_data() -> None:
    table = DATASETS["penguins"].load()
    schema = FeatureSchema.derive(table.dropna(subset=["species"]), "species", "multiclass")
    card = ModelCard(tag="p:1", labels={}, path=Path("/nowhere"), metadata={
        "label": "species", "problem_type": "multiclass", "schema": schema.to_dict(),
        "training": {"source": "palmerpenguins (demo)", "dataset": "penguins"}})
    rows = bench_rows.model_rows(card)
    assert "species" not in rows.frame.columns
    assert len(rows.frame) + rows.rejected_rows == len(table)


@pytest.mark.parametrize("fmt", list(bench_rows.FORMATS))
def test_bodies_hold_the_rows_in_every_format(fmt: str) -> None:
    frame = mixed_table(30).drop(columns=LABEL)
    frame.loc[3, "remarks"] = None
    frame.loc[4, "height"] = None
    body = bench_rows.body(frame, fmt)
    if fmt == "json":
        assert json.loads(body) == {"data": json_records(frame)}
        return
    if fmt == "csv":
        back = pd.read_csv(io.BytesIO(body), parse_dates=["date"]).astype({"remarks": object})
        back["remarks"] = back["remarks"].where(back["remarks"].notna(), None)
    elif fmt == "parquet":
        back = pd.read_parquet(io.BytesIO(body))
    else:
        back = pa.ipc.open_stream(body).read_all().to_pandas()
    back["date"] = back["date"].astype("datetime64[ns]")
    pd.testing.assert_frame_equal(back, frame, check_dtype=fmt != "csv")


def test_distinct_single_bodies_are_distinct_valid_and_in_range() -> None:
    table = mixed_table(20)
    card = card_for(table)
    rows = table.drop(columns=LABEL)
    bodies = bench_rows.distinct_single_bodies(rows, card.schema, 200)
    assert len(bodies) == len(set(bodies)) == 200
    records = [json.loads(b)["data"][0] for b in bodies]
    result = card.schema.validate_rows(records)
    assert result.ok and not result.out_of_range
    # whole numbers stay whole, within the training range
    assert {r["engines"] for r in records} <= set(table["engines"])
    assert len({r["height"] for r in records}) > len(table)


def test_distinct_single_bodies_stop_when_nothing_can_vary() -> None:
    table = mixed_table(12).drop(columns=["height", "engines"])
    card = ModelCard("m:1", {}, {"label": LABEL, "problem_type": "binary", "schema":
                                 FeatureSchema.derive(table, LABEL, "binary").to_dict()},
                     Path("/nowhere"))
    bodies = bench_rows.distinct_single_bodies(table.drop(columns=LABEL), card.schema, 50)
    assert len(bodies) == len(set(bodies)) == 12


def run(server: str, scenario: str, concurrency: int, rows: int, rps: float,
        p99: float = 50.0, non2xx: int = 0) -> Run:
    return Run(server=server, scenario=scenario, concurrency=concurrency,
               rows_per_request=rows, requests_per_s=rps, rows_per_s=rps * rows, p50_ms=10.0,
               p95_ms=20.0, p99_ms=p99, max_ms=p99, requests=1000, non2xx=non2xx,
               socket_errors=0, server_cpu_pct=100.0, server_peak_rss_mb=500.0,
               wrk_cpu_pct=5.0, non2xx_by_status={"503": non2xx} if non2xx else {})


def sample_report() -> Report:
    model = ModelResult(key="demo", tag="demo:1", problem_type="multiclass", models="GBM",
                        features="x:numeric", rows_source="test", rows_note="")
    model.in_process = {"64": {"rows_per_s": 8000.0, "ms": 8.0},
                        "1000": {"rows_per_s": 100_000.0, "ms": 10.0},
                        "10000": {"rows_per_s": 400_000.0, "ms": 25.0}}
    model.servers = {"agbento split": {"asked": "split", "effective": "split"},
                     "agbento fused": {"asked": "fused", "effective": "split"},
                     "baseline": {"asked": "-", "effective": "seed-style"}}
    model.runs = [run("agbento split", SINGLE, 64, 1, 900.0),
                  run("agbento fused", SINGLE, 64, 1, 1000.0, p99=200.0, non2xx=3),
                  run("baseline", SINGLE, 64, 1, 60.0),
                  run("agbento split", "1000-json", 4, 1000, 70.0),  # 70,000 rows/s: 70%
                  run("agbento split", "1000-parquet", 4, 1000, 75.0),  # 75%: missed
                  run("agbento split", "10000-arrow", 4, 10_000, 36.0)]  # 90%
    batch = {"rows": 1_000_000, "chunk_rows": 10_000, "concurrency": 4, "retries": 0}
    model.batch_client = {"http": {**batch, "rows_per_s": 200_000.0, "seconds": 5.0,
                                   "where": "agbento split"},
                          "local": {**batch, "rows_per_s": 380_000.0, "seconds": 2.6,
                                    "where": "in-process"}}
    report = Report(machine={}, settings={}, models=[model])
    report.echoes = [run("echo split", SINGLE, 64, 1, 1000.0),
                     run("echo fused", SINGLE, 64, 1, 3000.0)]
    return report


def test_targets_are_same_run_shares_beside_the_issues_targets() -> None:
    rows = {t["what"]: t for t in targets(sample_report())}
    json_1000 = rows["1,000-row JSON, agbento split, 4 clients"]
    assert (json_1000["figure"], json_1000["target"], json_1000["met"]) == (0.7, ">= 60%", True)
    assert rows["1,000-row Parquet, agbento split, 4 clients"]["met"] is False
    assert rows["10,000-row Arrow, agbento split, 4 clients"]["figure"] == 0.9
    # a scenario the server did not run has no figure to show
    assert not any("1,000-row Arrow," in what for what in rows)
    http = rows["batch client over HTTP (Parquet in, Parquet out), 1,000,000 rows"]
    assert (http["figure"], http["met"]) == (0.5, False)
    assert rows["batch client --local, 1,000,000 rows"]["figure"] == 0.95
    split = "single row, agbento split, 64 clients"
    assert rows[f"{split} vs bare split echo"]["figure"] == 0.9
    # issue 17's fused-echo target is the fused topology's; split gets the share alone
    assert (rows[f"{split} vs bare fused echo"]["target"],
            rows[f"{split} vs bare fused echo"]["met"]) == ("-", None)
    assert rows[f"{split} vs the seed-style server"]["figure"] == 15.0
    assert rows[f"{split} vs the seed-style server"]["met"] is False


def test_a_fused_run_that_ran_split_says_so() -> None:
    rows = {t["what"]: t for t in targets(sample_report())}
    fused = "single row, agbento fused, 64 clients (ran split)"
    assert rows[f"{fused} vs bare fused echo"]["figure"] == round(1000 / 3000, 3)
    assert rows[f"{fused}: non-2xx and socket errors"]["met"] is False
    assert rows[f"{fused}: p99"]["met"] is False


def test_the_markdown_puts_each_target_beside_its_figure() -> None:
    report = sample_report()
    report.settings = {"mode": "test", "when": "now", "seconds": 1, "note": "",
                       "service_env": "env"}
    report.machine = {"cpu": "cpu", "cores": 2, "memory_gb": 1, "os": "os", "python": "3",
                      "load_generator": "wrk"}
    report.echo_servers = {"echo split": {"workers": "1 + 1", "command": "c",
                                          "cold_start_s": 1},
                           "echo fused": {"workers": "2", "command": "c", "cold_start_s": 1}}
    for info in report.models[0].servers.values():
        info["cold_start_s"] = 1.0
    report.targets = targets(report)
    text = markdown(report)
    assert "| demo | 14 | 1,000-row JSON, agbento split, 4 clients | 70% | >= 60% | met |" in text
    assert "| 15.0x | >= 16x (stretch 20x) | **missed** |" in text


def test_a_report_reads_back_from_its_json() -> None:
    from dataclasses import asdict

    from loadtests.bench_report import report_from_json

    report = sample_report()
    report.targets = targets(report)
    again = report_from_json(json.loads(json.dumps(asdict(report))))
    assert again == report


def test_the_birdstrikes_table_has_dates_free_text_numbers_and_categories() -> None:
    dataset = DATASETS["birdstrikes"]
    data = load_data(TrainConfig(label=dataset.label, dataset="birdstrikes"),
                     lambda _line: None)
    kinds = {f.kind for f in data.schema.features}
    assert kinds >= {"datetime", "text", "numeric", "categorical"}
    assert data.problem_type == "multiclass"
    assert len(data.table) > 10_000


def test_train_py_dataset_brings_its_label_name_and_quick_settings() -> None:
    args = parse_args(["--dataset", "birdstrikes"])
    config = train_config(args, DATASETS["birdstrikes"].label)
    assert (config.dataset, config.name, config.label) == (
        "birdstrikes", "agbento-birdstrikes", "phase_of_flt")
    assert config.time_limit == DATASETS["birdstrikes"].time_limit
    given = train_config(parse_args(["--dataset", "birdstrikes", "--name", "b",
                                     "--time-limit", "5"]), "phase_of_flt")
    assert (given.name, given.time_limit) == ("b", 5)
    demo = train_config(parse_args(["--demo"]), "species")
    assert (demo.name, demo.time_limit, demo.dataset) == ("agbento-demo", 120, None)
