"""Live drift: every scored row counted into its training bin, per feature, in /metrics.

    agbento_feature_bin_total{model, feature, bin}         rows counted per bin (counter)
    agbento_feature_reference_ratio{model, feature, bin}   the training share of that bin

PSI per feature is computed by Prometheus (`agbento:feature_psi:1h` in
deploy/prometheus/alerts.yml) from the two, so the service keeps no state beyond counters.

The `model` label is the served tag: each version has its own bins (edges come from its own
training rows), so two versions' counts must not be added; a model swapped in live starts
its own series and the old one's stop growing. Every bin's series exists from load on (at
0), so a bin no served row falls into still counts in PSI.

Cost: a request's rows are binned with numpy (searchsorted, bincount) or, for a few rows, a
short loop, and added to counts held in this process; a thread of the counter's own hands
them to Prometheus every `FLUSH_S` (in BentoML's multiprocess mode each `inc` is a locked
write to a shared file: once a second per non-empty bin, not per request). So /metrics may
be up to a second behind, and a worker that dies loses at most its last second of counts:
nothing for PSI over an hour.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from prometheus_client import Counter, Gauge

from agbento.models.store import ModelCard
from agbento.monitoring.reference import FEW_ROWS, Reference

FEATURE_BINS = Counter("agbento_feature_bin", "Scored rows per feature bin (bins of the "
                       "model's training rows)", ["model", "feature", "bin"])
# Every worker sets the same values: max merges them (and keeps a dead worker's harmlessly)
REFERENCE_RATIO = Gauge("agbento_feature_reference_ratio",
                        "Share of the model's training rows in each feature bin",
                        ["model", "feature", "bin"], multiprocess_mode="max")


def reference_of(card: ModelCard) -> Reference | None:
    """The card's reference distributions; None for a model trained before they existed."""
    stored = card.reference_distributions
    return Reference.from_dict(stored) if stored else None


# How often counted rows are handed to Prometheus (seconds).
FLUSH_S = 1.0


class DriftCounter:
    """Counts validated groups into `agbento_feature_bin_total` for one served model.

    Made at load (it sets the reference gauges and creates every bin's series); then
    `observe(group)` per scored request, with the group as the runtime holds it: value lists
    in schema order (row path) or the model frame (columnar path). `flush()` hands the
    counts to Prometheus; a daemon thread calls it every `FLUSH_S`.
    """

    def __init__(self, reference: Reference, model: str,
                 schema_names: Sequence[str] | None = None, flush_s: float = FLUSH_S) -> None:
        self.reference = reference
        self.model = model
        names = list(schema_names) if schema_names is not None else reference.names
        # where each reference feature sits in a row path's value list
        self.positions = [names.index(name) for name in reference.names]
        self.children = [[FEATURE_BINS.labels(model, bins.name, label) for label in bins.labels]
                         for bins in reference.features]
        for bins in reference.features:
            for label, share in zip(bins.labels, bins.shares, strict=True):
                REFERENCE_RATIO.labels(model, bins.name, label).set(share)
        # per feature, per bin: rows counted since the last flush
        self._pending = [[0] * len(bins.labels) for bins in reference.features]
        self._plan = list(enumerate(zip(reference.features, self.positions, strict=True)))
        self._lock = threading.Lock()
        if flush_s > 0:
            _start_flushing(self, flush_s)

    @classmethod
    def of(cls, card: ModelCard) -> DriftCounter | None:
        """The counter of a served model, or None when its card has no reference."""
        reference = reference_of(card)
        if reference is None:
            return None
        return cls(reference, card.tag, card.schema.names)

    def observe(self, group: pd.DataFrame | Sequence[Sequence[Any]]) -> None:
        """Count one request's validated (scored) rows."""
        if not len(group):
            return
        if len(group) <= FEW_ROWS:
            self._observe_few(group)
            return
        counts = self.reference.bin_counts(
            group, None if isinstance(group, pd.DataFrame) else self.positions)
        with self._lock:
            for pending, bins in zip(self._pending, self.reference.features, strict=True):
                found = counts[bins.name]
                for index in np.flatnonzero(found).tolist():
                    pending[index] += int(found[index])

    def _observe_few(self, group: pd.DataFrame | Sequence[Sequence[Any]]) -> None:
        """A few rows (a single-row request, most often): value by value in Python, numpy's
        fixed cost per call being more than the whole loop."""
        if isinstance(group, pd.DataFrame):
            columns = [group[name].tolist() for name in self.reference.names]
            rows: Any = zip(*columns, strict=True)
            plan = list(enumerate(zip(self.reference.features, range(len(columns)),
                                      strict=True)))
        else:
            rows, plan = group, self._plan
        pending = self._pending
        with self._lock:
            for row in rows:
                for k, (bins, at) in plan:
                    pending[k][bins.index_of(row[at])] += 1

    def flush(self) -> None:
        """Hand the counts to Prometheus: one `inc` per bin that counted rows."""
        with self._lock:
            taken = self._pending
            self._pending = [[0] * len(counts) for counts in taken]
        for children, counts in zip(self.children, taken, strict=True):
            for index, count in enumerate(counts):
                if count:
                    children[index].inc(count)


def _start_flushing(counter: DriftCounter, every_s: float) -> None:
    """A daemon thread that flushes `counter` every `every_s` while it is alive (a swapped-out
    version's counter is flushed once more and let go)."""
    alive = weakref.ref(counter)

    def run() -> None:
        while True:
            time.sleep(every_s)
            current = alive()
            if current is None:
                return
            current.flush()
            del current

    threading.Thread(target=run, name="agbento-drift-flush", daemon=True).start()
