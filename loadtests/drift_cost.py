"""What counting a request into the drift bins costs, in-process: `DriftCounter.observe` on
the demo schema's validated groups (1 and 1,000 rows, as value lists and as model frames),
with prometheus_client in BentoML's multiprocess mode (each inc a locked write to a shared
file, as in a served worker) and, with --plain, without it.

    .venv/bin/python loadtests/drift_cost.py [--plain]

Prints microseconds per call (the best and the median of 7 rounds of many calls). No model
is trained: the reference is built from the demo table itself.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
if "--plain" not in sys.argv:  # before prometheus_client is imported, as BentoML does
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="agbento-drift-cost-")

from agbento.monitoring.drift import DriftCounter  # noqa: E402
from agbento.monitoring.reference import build_reference  # noqa: E402
from agbento.rows.columns import validate_records  # noqa: E402
from agbento.rows.schema import FeatureSchema, json_records  # noqa: E402
from agbento.training.pipeline import demo_table  # noqa: E402


def per_call_us(call: Callable[[], None], calls: int, rounds: int = 7) -> tuple[float, float]:
    """Microseconds per call: the best and the median round (the best is what the code
    costs; on a shared machine the median also holds other processes' time)."""
    call()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        samples.append((time.perf_counter() - start) / calls * 1e6)
    return min(samples), statistics.median(samples)


def main() -> None:
    table = demo_table()
    schema = FeatureSchema.derive(table, "species", "multiclass")
    counter = DriftCounter(build_reference(schema.to_frame(table), schema), "cost-test")
    rows = table.drop(columns="species").sample(n=1000, replace=True, random_state=0)
    records = json_records(rows)
    groups = {
        "1 row, value lists (row path)": schema.validate_rows(records[:1]).rows,
        "1 row, model frame": validate_records(schema, records[:1]).frame,
        "1,000 rows, model frame (columnar path)": validate_records(schema, records).frame,
        "1,000 rows, value lists": schema.validate_rows(records).rows,
    }
    mode = "plain" if "--plain" in sys.argv else "multiprocess"
    print(f"prometheus_client {mode} mode, {len(schema.features)} features")
    print(f"{'':42s} {'best':>8s} {'median':>8s}  (us per call)")
    for name, group in groups.items():
        calls = 20_000 if len(group) == 1 else 200
        best, median = per_call_us(lambda g=group: counter.observe(g), calls)
        print(f"{name:42s} {best:8.1f} {median:8.1f}")


if __name__ == "__main__":
    main()
