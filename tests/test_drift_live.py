"""Drift through a real server's /metrics: the bin counters of scored rows against the
reference ratios give PSI near 0 for training-like rows and a high PSI for the one shifted
feature only (PSI as the README and the recording rule compute it)."""

from __future__ import annotations

import math
import time

import httpx
import pytest

from agbento.monitoring.reference import PSI_EPSILON
from agbento.rows.schema import json_records
from agbento.training.pipeline import demo_table
from tests.helpers import metric_samples
from tests.servers import BentoServer
from tests.tiny_models import TinyModels

pytestmark = pytest.mark.integration


def bins(server: BentoServer, tag: str) -> tuple[dict, dict]:
    samples = metric_samples(server.url)
    counts, reference = {}, {}
    for sample in samples.get("agbento_feature_bin_total", []):
        if sample.labels["model"] == tag:
            counts[(sample.labels["feature"], sample.labels["bin"])] = sample.value
    for sample in samples.get("agbento_feature_reference_ratio", []):
        if sample.labels["model"] == tag:
            reference[(sample.labels["feature"], sample.labels["bin"])] = sample.value
    return counts, reference


def psi_by_feature(before: dict, after: dict, reference: dict) -> dict[str, float]:
    delta = {key: after.get(key, 0) - before.get(key, 0) for key in reference}
    result = {}
    for feature in {f for f, _ in reference}:
        keys = [k for k in reference if k[0] == feature]
        rows = sum(delta[k] for k in keys)
        value = 0.0
        for key in keys:
            actual = max(delta[key] / rows, PSI_EPSILON)
            expected = max(reference[key], PSI_EPSILON)
            value += (actual - expected) * math.log(actual / expected)
        result[feature] = value
    return result


def counted(server: BentoServer, tag: str, rows: int, since: dict) -> dict:
    """The bin counts once `rows` more rows per feature are in /metrics (each worker hands
    its counts over every second)."""
    deadline = time.monotonic() + 30
    while True:
        counts, _ = bins(server, tag)
        added = sum(v - since.get(k, 0) for k, v in counts.items()) / 7  # 7 features
        if added >= rows or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def send(server: BentoServer, shift: float) -> None:
    table = demo_table().drop(columns=["species"]).sample(n=3_000, replace=True,
                                                          random_state=11)
    table["flipper_length_mm"] += shift
    rows = json_records(table)
    for start in range(0, len(rows), 250):
        answer = httpx.post(f"{server.url}/predict", json={"data": rows[start:start + 250]},
                            timeout=60)
        assert answer.status_code == 200, answer.text[:300]


def test_psi_from_metrics_is_low_for_training_rows_and_high_for_a_shifted_feature(
        multiclass_server: BentoServer, tiny_models: TinyModels) -> None:
    tag = tiny_models.multiclass.tag
    before, reference = bins(multiclass_server, tag)
    assert reference, "no reference ratios exported"
    send(multiclass_server, 0.0)
    middle = counted(multiclass_server, tag, 3_000, before)
    calm = psi_by_feature(before, middle, reference)
    assert max(calm.values()) < 0.1, calm
    send(multiclass_server, 40.0)
    after = counted(multiclass_server, tag, 3_000, middle)
    shifted = psi_by_feature(middle, after, reference)
    assert shifted["flipper_length_mm"] > 0.2, shifted
    assert max(v for f, v in shifted.items() if f != "flipper_length_mm") < 0.1, shifted
