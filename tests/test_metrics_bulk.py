"""A request's rows observed in one go count exactly as one observe() per row."""

from __future__ import annotations

import math

import numpy as np
from prometheus_client import CollectorRegistry, Histogram

from agbento.monitoring.metrics import observe_many


def samples(histogram: Histogram) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for metric in histogram.collect() for s in metric.samples
            if not s.name.endswith("_created")}


def test_observe_many_equals_one_observe_per_value() -> None:
    registry = CollectorRegistry()
    buckets = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
    one_by_one = Histogram("one", "per value", buckets=buckets, registry=registry)
    at_once = Histogram("many", "in one go", buckets=buckets, registry=registry)
    rng = np.random.default_rng(7)
    # values on the bounds too: a value equal to a bound belongs to that bound's bucket
    values = [*rng.uniform(0.3, 1.2, 5000).tolist(), *buckets, 0.0, 5.0]
    for value in values:
        one_by_one.observe(value)
    observe_many(at_once, values)
    observe_many(at_once, [])
    got = {(name.replace("many", "one"), labels): v for (name, labels), v in
           samples(at_once).items()}
    expected = samples(one_by_one)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert math.isclose(got[key], value, rel_tol=1e-12), key
    assert expected[("one_count", ())] == len(values)
