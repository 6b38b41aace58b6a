"""Drift: reference distributions for every feature kind, live counters read back from
prometheus_client's registry, the recording rule's PSI computed by the real promtool, and
the `drift` command run as a subprocess on a tiny stored model."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from prometheus_client import REGISTRY

from agbento.cli import main
from agbento.models.store import REFERENCE_KEY, ModelCard, save_model, without_nulls
from agbento.monitoring.drift import DriftCounter, reference_of
from agbento.monitoring.reference import (
    MISSING_BIN,
    OTHER_BIN,
    PSI_EPSILON,
    BinTally,
    Reference,
    build_reference,
    psi,
    shares,
)
from agbento.rows.columns import validate_records
from agbento.rows.schema import FeatureSchema, json_records
from agbento.training.pipeline import demo_table
from tests.tiny_models import TinyModels

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
WORDS = ["bird", "engine", "wing", "nose", "radome", "windshield", "gear", "struck", "no",
         "damage", "flock", "gulls", "on", "approach", "landed"]


def mixed_table(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    """Every feature kind, each with missing values: a float, a small integer, 30 categories
    (one named "missing"), a boolean, a date and free-text remarks."""
    rng = np.random.default_rng(seed)
    amount = rng.normal(100, 15, rows)
    amount[rng.random(rows) < 0.05] = np.nan
    color = rng.choice([f"c{i}" for i in range(30)], rows).astype(object)
    color[:90] = "missing"  # a real category that reads like the missing bin
    color[rng.random(rows) < 0.03] = None
    flag = rng.choice([True, False], rows).astype(object)
    flag[rng.random(rows) < 0.04] = None
    when = pd.Series(pd.Timestamp("2020-01-01")
                     + pd.to_timedelta(rng.integers(0, 365 * 24 * 3600, rows), unit="s"))
    when[rng.random(rows) < 0.02] = pd.NaT
    remarks = [" ".join(rng.choice(WORDS, int(rng.integers(3, 14)))) + f" #{i}"
               for i in range(rows)]
    for i in np.flatnonzero(rng.random(rows) < 0.05):
        remarks[i] = None
    return pd.DataFrame({"amount": amount, "count": rng.integers(0, 5, rows), "color": color,
                         "flag": flag, "when": when, "remarks": remarks,
                         "label": rng.choice(["yes", "no"], rows)})


@pytest.fixture(scope="module")
def mixed() -> tuple[pd.DataFrame, FeatureSchema, Reference]:
    table = mixed_table()
    schema = FeatureSchema.derive(table, "label", "binary")
    frame = schema.to_frame(table)
    return table, schema, build_reference(frame, schema, table["label"].to_numpy(),
                                          {"accuracy": 0.5}, "accuracy", "yes")


def test_reference_has_bins_for_every_feature_kind(mixed) -> None:
    table, schema, reference = mixed
    kinds = {f.name: f.kind for f in schema.features}
    assert set(kinds.values()) == {"numeric", "categorical", "boolean", "datetime", "text"}
    assert reference.names == schema.names
    for bins in reference.features:
        assert bins.labels[-1] == MISSING_BIN
        assert len(set(bins.labels)) == len(bins.labels), bins.labels
        assert sum(bins.shares) == pytest.approx(1.0)
        missing = table[bins.name].isna().mean()
        assert bins.shares[-1] == pytest.approx(missing), bins.name
    amount = reference.feature("amount")
    assert len(amount.labels) == 10 + 1  # deciles and missing
    assert amount.labels[0].startswith("[-inf, ") and amount.labels[-2].endswith(", +inf)")
    assert all(0.08 < share / (1 - amount.shares[-1]) < 0.12 for share in amount.shares[:-1])
    count = reference.feature("count")  # 5 values: repeated deciles merge
    assert len(count.labels) < 11 and count.edges == tuple(sorted(set(count.edges)))
    color = reference.feature("color")
    assert color.kind == "categorical" and len(color.labels) == 20 + 2
    assert color.labels[0] == '"missing"'  # the most frequent category, quoted
    assert color.labels[-2:] == (OTHER_BIN, MISSING_BIN)
    assert color.shares[-2] > 0  # 10 of the 30 categories are not in the top 20
    assert reference.feature("flag").labels == ("false", "true", MISSING_BIN)
    when = reference.feature("when")
    assert when.labels[1].startswith("[2020-") and "T" in when.labels[1]
    remarks = reference.feature("remarks")  # deciles of the length in characters
    lengths = table["remarks"].dropna().str.len()
    assert remarks.kind == "text" and lengths.min() <= remarks.edges[0] < remarks.edges[-1] \
        <= lengths.max()
    assert reference.predictions is not None
    assert set(reference.predictions.labels) == {"yes", "no", OTHER_BIN, MISSING_BIN}


def test_reference_is_json_metadata_and_reads_back(mixed) -> None:
    _, _, reference = mixed
    stored = reference.to_dict()
    assert without_nulls(stored) == stored  # BentoML metadata refuses None
    assert Reference.from_dict(json.loads(json.dumps(stored))) == reference


def test_row_path_and_frame_path_count_alike(mixed) -> None:
    """Value lists (datetimes as ISO text) and the model frame land in the same bins, which
    are the training counts: the training rows' PSI is 0."""
    table, schema, reference = mixed
    records = json_records(table.drop(columns="label"))
    rows = schema.validate_rows(records)
    frame = schema.validate_table(table.drop(columns="label")).frame
    assert rows.ok and len(rows.rows) == len(frame) == len(table)
    by_rows, by_frame = reference.bin_counts(rows.rows), reference.bin_counts(frame)
    for bins in reference.features:
        assert by_rows[bins.name].tolist() == by_frame[bins.name].tolist(), bins.name
        # the loop (few rows) and numpy (many) agree, value by value
        assert bins.counts_of_values(frame[bins.name].tolist()).tolist() == \
            by_frame[bins.name].tolist()
        assert np.allclose(shares(by_frame[bins.name]), bins.shares)
        assert psi(bins.shares, shares(by_frame[bins.name])) == pytest.approx(0, abs=1e-12)


def test_psi_uses_the_epsilon_for_empty_bins() -> None:
    assert psi([0.5, 0.5, 0.0], [0.5, 0.5, 0.0]) == 0
    expected = (0.5 - 0.9) * math.log(0.5 / 0.9) + (0.5 - 0.1) * math.log(0.5 / 0.1)
    assert psi([0.5, 0.5, 0.0], [0.9, 0.1, 0.0]) == pytest.approx(expected)
    empty = (PSI_EPSILON - 0.5) * math.log(PSI_EPSILON / 0.5) + 0.5 * math.log(1 / 0.5)
    assert psi([0.5, 0.5], [1.0, 0.0]) == pytest.approx(empty)


# -- live counters, on a tiny model's card ----------------------------------------------------


def counted(reference: Reference, model: str) -> dict[str, np.ndarray]:
    """The counter's values per feature bin, read back from the registry /metrics serves."""
    return {bins.name: np.array([REGISTRY.get_sample_value(
        "agbento_feature_bin_total", {"model": model, "feature": bins.name, "bin": label})
        for label in bins.labels]) for bins in reference.features}


def live_psi(reference: Reference, model: str) -> dict[str, float]:
    return {name: psi(reference.feature(name).shares, shares(counts))
            for name, counts in counted(reference, model).items()}


def penguin_rows() -> pd.DataFrame:
    return demo_table().drop(columns=["species"])


def shifted(table: pd.DataFrame) -> pd.DataFrame:
    return table.assign(bill_length_mm=table["bill_length_mm"] + 8)


def test_card_keeps_the_reference(tiny_models: TinyModels) -> None:
    for card in (tiny_models.multiclass, tiny_models.binary, tiny_models.regression):
        reference = reference_of(card)
        assert reference is not None and reference.names == card.schema.names
        assert reference.holdout_metrics == pytest.approx(card.metadata["holdout_metrics"])
        assert reference.eval_metric == card.metadata["eval_metric"]
        assert reference.predictions is not None
        assert sum(reference.predictions.shares) == pytest.approx(1)
    binary = reference_of(tiny_models.binary)
    assert binary.positive_class in binary.predictions.categories
    regression = tiny_models.regression
    assert reference_of(regression).predictions.kind == "numeric"
    assert regression.info()[REFERENCE_KEY] == regression.reference_distributions


def test_counters_give_psi_near_zero_then_high_on_the_shifted_feature_only(
        tiny_models: TinyModels) -> None:
    card = tiny_models.multiclass
    reference = reference_of(card)
    like = DriftCounter(reference, "drift-test-like", card.schema.names, flush_s=0)
    for bins in reference.features:  # every bin's series exists from load, at 0
        assert counted(reference, "drift-test-like")[bins.name].tolist() == \
            [0] * len(bins.labels)
        assert [REGISTRY.get_sample_value("agbento_feature_reference_ratio", {
            "model": "drift-test-like", "feature": bins.name, "bin": label})
            for label in bins.labels] == list(bins.shares)
    for record in json_records(penguin_rows()):  # single-row requests: the row path
        like.observe(card.schema.validate_rows([record]).rows)
    like.flush()
    found = live_psi(reference, "drift-test-like")
    assert max(found.values()) < 0.1, found
    assert sum(counted(reference, "drift-test-like")["island"]) == len(penguin_rows())

    shift = DriftCounter(reference, "drift-test-shift", card.schema.names, flush_s=0)
    # a request as the columnar path decodes and validates JSON rows
    shift.observe(validate_records(card.schema, json_records(shifted(penguin_rows()))).frame)
    shift.flush()
    found = live_psi(reference, "drift-test-shift")
    assert found.pop("bill_length_mm") > 0.2
    assert max(found.values()) < 0.1, found


def test_counter_skips_a_card_without_reference(tiny_models: TinyModels) -> None:
    card = tiny_models.multiclass
    bare = ModelCard(card.tag, card.labels,
                     {k: v for k, v in card.metadata.items() if k != REFERENCE_KEY}, card.path)
    assert DriftCounter.of(bare) is None and reference_of(bare) is None
    assert DriftCounter.of(card) is not None


def series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ",".join(f"{key}={json.dumps(value)}" for key, value in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def annotations(labels: dict[str, str]) -> dict[str, str]:
    """AgbentoFeatureDrift's annotations as alerts.yml words them, for these labels."""
    rules = yaml.safe_load(ALERTS.read_text())
    rule = next(r for g in rules["groups"] for r in g["rules"]
                if r.get("alert") == "AgbentoFeatureDrift")
    found = {}
    for name, text in rule["annotations"].items():
        for key, value in labels.items():
            text = text.replace(f"{{{{ $labels.{key} }}}}", value)
        found[name] = text
    return found


def test_recording_rule_computes_the_same_psi_and_alerts(tiny_models: TinyModels,
                                                         tmp_path: Path) -> None:
    """The counters' values after a shifted request, fed to the real promtool as one
    request like it every minute: `agbento:feature_psi:1h` is the PSI Python computes, and
    AgbentoFeatureDrift fires for the shifted feature only."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed: run `make test-deps`"
    card = tiny_models.multiclass
    reference = reference_of(card)
    model = "drift-test-rule"
    counter = DriftCounter(reference, model, card.schema.names, flush_s=0)
    counter.observe(validate_records(card.schema, json_records(shifted(penguin_rows()))).frame)
    counter.flush()
    inputs, expected = [], []
    for bins in reference.features:
        counts = counted(reference, model)[bins.name]
        for label, share, count in zip(bins.labels, bins.shares, counts, strict=True):
            labels = {"job": "agbento", "instance": "i", "model": model, "feature": bins.name,
                      "bin": label}
            inputs.append(series("agbento_feature_reference_ratio", labels, f"{share}x120"))
            inputs.append(series("agbento_feature_bin_total", labels, f"0+{int(count)}x120"))
        value = psi(bins.shares, shares(counts))
        expected.append({"labels": f'{{job="agbento",model="{model}",feature="{bins.name}"}}',
                         "value": round(value, 3)})
    labels = {"severity": "ticket", "job": "agbento", "model": model,
              "feature": "bill_length_mm"}
    test = {"rule_files": [str(ALERTS)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": inputs,
        "promql_expr_test": [{"expr": "round(agbento:feature_psi:1h, 0.001)",
                              "eval_time": "90m", "exp_samples": expected}],
        "alert_rule_test": [{"eval_time": "90m", "alertname": "AgbentoFeatureDrift",
                             "exp_alerts": [{"exp_labels": labels,
                                             "exp_annotations": annotations(labels)}]}],
    }]}
    (tmp_path / "drift_test.yml").write_text(yaml.safe_dump(test))
    result = subprocess.run([promtool, "test", "rules", "drift_test.yml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


# -- the offline command --------------------------------------------------------------------


def run_drift(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "agbento.drift", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_drift_command_exit_codes_json_and_chart(tiny_models: TinyModels,
                                                 tmp_path: Path) -> None:
    tag = tiny_models.multiclass.tag
    penguin_rows().to_csv(tmp_path / "like.csv", index=False)
    shifted(penguin_rows()).to_parquet(tmp_path / "shifted.parquet")

    calm = run_drift("--model", tag, "--data", "like.csv", "--chart", "like.png", cwd=tmp_path)
    assert calm.returncode == 0, calm.stderr
    found = json.loads(calm.stdout)
    assert found["drifting"] == [] and found["rows"] == len(penguin_rows())
    assert {f["feature"] for f in found["features"]} == set(tiny_models.multiclass.schema.names)
    assert max(f["psi"] for f in found["features"]) < 0.1
    assert (tmp_path / "like.png").read_bytes().startswith(b"\x89PNG")

    moved = run_drift("--model", tag, "--data", "shifted.parquet", "--threshold", "0.2",
                      cwd=tmp_path)
    assert moved.returncode == 3, moved.stderr
    found = json.loads(moved.stdout)
    assert found["drifting"] == ["bill_length_mm"]
    assert found["features"][0]["feature"] == "bill_length_mm"  # highest PSI first
    assert (tmp_path / "drift.png").exists()


def test_drift_command_against_a_baseline_and_its_errors(
        tiny_models: TinyModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    card = tiny_models.multiclass
    data = tmp_path / "shifted.parquet"
    shifted(penguin_rows()).to_parquet(data)
    chart = str(tmp_path / "c.png")
    # the same rows as the baseline: nothing moved
    assert main(["drift", "--model", card.tag, "--data", str(data), "--baseline", str(data),
                 "--chart", chart]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["baseline"] == str(data) and max(f["psi"] for f in found["features"]) == 0

    bare = save_model("tiny-no-reference", card.predictor_path, card.labels,
                      {k: v for k, v in card.metadata.items() if k != REFERENCE_KEY})
    for argv, message in [
        (["--model", "no-such-model:1", "--data", str(data)], "not in the BentoML model store"),
        (["--model", "tiny-species@production", "--data", str(data)], "no version of"),
        (["--model", card.tag, "--data", str(tmp_path / "absent.csv")], "not found"),
        (["--model", bare.tag, "--data", str(data)], "no reference distributions"),
        (["--model", card.tag, "--data", str(data), "--threshold", "0"], "--threshold"),
        (["--model", card.tag], "--data"),
    ]:
        assert main(["drift", *argv, "--chart", chart]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err, err


def test_tally_over_chunks_names_the_top_drifting_features(mixed) -> None:
    table, schema, reference = mixed
    moved = table.assign(amount=table["amount"] * 1.5, flag=None)
    tally, baseline = BinTally(reference), BinTally(reference)
    for start in range(0, len(table), 250):  # a file read in chunks
        tally.add(schema.to_frame(moved.iloc[start:start + 250]))
        baseline.add(schema.to_frame(table.iloc[start:start + 250]))
    assert tally.rows == baseline.rows == len(table)
    assert [name for name, _ in tally.top_drifting(5, threshold=0.2)] in (
        ["amount", "flag"], ["flag", "amount"])
    assert tally.top_drifting(1)[0][1] == max(tally.psi_by_feature().values())
    assert baseline.top_drifting(5, threshold=1e-9) == []
    assert tally.psi_by_feature(baseline) == pytest.approx(tally.psi_by_feature())


def test_every_way_a_request_arrives_counts_the_same(tiny_models: TinyModels) -> None:
    """Single rows, a few rows and many, as value lists or as frames: the same bins."""
    card = tiny_models.multiclass
    reference = reference_of(card)
    records = json_records(penguin_rows())
    ways = {
        "drift-test-one-row": [card.schema.validate_rows([r]).rows for r in records],
        "drift-test-few-frames": [validate_records(card.schema, records[i:i + 10]).frame
                                  for i in range(0, len(records), 10)],
        "drift-test-many-rows": [card.schema.validate_rows(records[i:i + 50]).rows
                                 for i in range(0, len(records), 50)],
        "drift-test-one-frame": [validate_records(card.schema, records).frame],
    }
    found = {}
    for model, groups in ways.items():
        counter = DriftCounter(reference, model, card.schema.names, flush_s=0)
        for group in groups:
            counter.observe(group)
        counter.flush()
        found[model] = {name: c.tolist() for name, c in counted(reference, model).items()}
    first = found.pop("drift-test-one-row")
    assert sum(first["year"]) == len(records)
    assert all(counts == first for counts in found.values())


def test_counts_reach_prometheus_within_a_flush_by_the_counters_own_thread(
        tiny_models: TinyModels) -> None:
    card = tiny_models.multiclass
    reference = reference_of(card)
    counter = DriftCounter(reference, "drift-test-thread", card.schema.names, flush_s=0.05)
    rows = card.schema.validate_rows(json_records(penguin_rows())[:10]).rows
    counter.observe(rows)  # held in the process until the counter's thread hands it over
    deadline = time.monotonic() + 10
    while sum(counted(reference, "drift-test-thread")["island"]) < 10:
        assert time.monotonic() < deadline, "the counts never reached the registry"
        time.sleep(0.02)
    assert sum(counted(reference, "drift-test-thread")["island"]) == 10
