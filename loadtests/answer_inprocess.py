"""The fused topology's work for one bulk request after intake, in-process (no HTTP), held
to predict_proba alone: score_groups (predict, the answer's arrays) -> place -> render (JSON,
Arrow or Parquet) -> PredictionObserver.

    .venv/bin/python loadtests/answer_inprocess.py --model agbento-demo:latest --sizes 1000 10000

CPU-time medians of interleaved rounds (process_time: less at the mercy of a shared
machine's other work than wall time, though still noisy).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")  # as the service's model threads
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bentoml  # noqa: E402

from agbento.core.wire import ARROW_STREAM, PARQUET  # noqa: E402
from agbento.models.store import ModelCard  # noqa: E402
from agbento.monitoring.metrics import PredictionObserver  # noqa: E402
from agbento.rows.schema import json_records  # noqa: E402
from agbento.runtime.contract import PredictionContract, render_table  # noqa: E402
from agbento.runtime.inference import TabularRuntime  # noqa: E402
from agbento.training.pipeline import demo_table  # noqa: E402


class NoLog:
    def maybe_log(self, rows: Any, predictions: Callable[[], list[Any]]) -> bool:
        return False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="agbento-demo:latest")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000])
    args = parser.parse_args()
    card = ModelCard.of(bentoml.models.get(args.model))
    runtime = TabularRuntime.load(card)
    contract = PredictionContract(card, max_rows=1_000_000)
    observer = PredictionObserver(card.is_classification, None, NoLog())
    source = demo_table()[list(card.schema.names)]
    for size in args.sizes:
        sample = source.sample(n=size, replace=True, random_state=size).reset_index(drop=True)
        rows = contract.accept(json_records(sample))
        frame = card.schema.to_frame(rows.rows)

        def answer(media: str | None, size: int = size, rows: Any = rows,
                   frame: Any = frame) -> None:
            (scored,) = runtime.score_groups([frame])
            placed = contract.place(rows, size, scored)
            if media is None:
                contract.render(placed, rows, "rid")
            else:
                render_table(placed, size, contract.classes, media)
            observer.observe(rows.rows, scored)

        stages: dict[str, Callable[[], Any]] = {
            "predict_proba": lambda frame=frame: runtime.predictor.predict_proba(frame),
            "fused json": lambda: answer(None),
            "fused arrow": lambda: answer(ARROW_STREAM),
            "fused parquet": lambda: answer(PARQUET)}
        times: dict[str, list[float]] = {name: [] for name in stages}
        for work in stages.values():  # warm
            work()
        for _ in range(max(15, 30_000 // size)):
            for name, work in stages.items():
                start = time.process_time()
                work()
                times[name].append(time.process_time() - start)
        ms = {name: statistics.median(t) * 1000 for name, t in times.items()}
        for name, value in ms.items():
            print(f"{size:>7} rows  {name:14} {value:8.2f} ms CPU  "
                  f"predict_proba's share {ms['predict_proba'] / value:6.1%}")


if __name__ == "__main__":
    main()
