"""What several test files share: a good row, penguin rows and files, reading /metrics,
running the batch client."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import psutil
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from agbento.models.store import ModelCard
from agbento.rows.schema import Feature, FeatureSchema, LabelInfo, json_records
from agbento.runtime.inference import TabularRuntime
from agbento.training.pipeline import demo_table

# One valid penguin row for the demo schema.
GOOD: dict[str, Any] = {
    "island": "Biscoe",
    "bill_length_mm": 45.1,
    "bill_depth_mm": 14.5,
    "flipper_length_mm": 215,
    "body_mass_g": 5000,
    "sex": "female",
    "year": 2008,
}


def penguin_rows(label: str, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Penguins as JSON rows, from the rows a model on `label` was trained on."""
    table = demo_table().dropna(subset=[label]).drop(columns=label)
    return json_records(table.sample(n=n, replace=n > len(table), random_state=seed))


def penguin_file(path: Path, rows: int, seed: int = 0) -> pd.DataFrame:
    """A CSV or Parquet file (by suffix) of penguin rows with a `penguin_id` column."""
    table = demo_table().dropna(subset=["species"]).drop(columns="species")
    frame = table.sample(n=rows, replace=True, random_state=seed).reset_index(drop=True)
    frame.insert(0, "penguin_id", [f"p{i:06d}" for i in range(rows)])
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return frame


def metric_samples(url: str) -> dict[str, list[Sample]]:
    """The server's /metrics, parsed by prometheus_client: sample name -> samples."""
    samples: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def total(samples: dict[str, list[Sample]], name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    return sum(s.value for s in samples.get(name, [])
               if all(s.labels.get(k) == v for k, v in labels.items()))


def adaptive_batches(url: str) -> tuple[float, float]:
    """(requests, merged model calls) the model has seen, in either topology (our histogram,
    recorded by TabularRuntime.score_groups wherever the model lives)."""
    samples = metric_samples(url)
    return (total(samples, "agbento_batch_requests_sum"),
            total(samples, "agbento_batch_requests_count"))


def card_without_model(problem_type: str = "multiclass", tag: str = "unit:1") -> ModelCard:
    """A model card with a small schema and no predictor: for pure code (contract, runtime)."""
    classes = ("Adelie", "Gentoo") if problem_type != "regression" else None
    schema = FeatureSchema(
        features=(
            Feature("island", "categorical", nullable=False, categories=("Biscoe", "Dream")),
            Feature("bill_length_mm", "numeric", nullable=True, minimum=30.0, maximum=60.0),
        ),
        label=LabelInfo("species" if classes else "body_mass_g", problem_type, classes),
    )
    examples = [{"island": "Biscoe", "bill_length_mm": 45.0},
                {"island": "Dream", "bill_length_mm": 39.5}]
    return ModelCard(tag=tag, labels={}, path=Path("."), metadata={
        "schema": schema.to_dict(), "problem_type": problem_type, "eval_metric": "accuracy",
        "examples": examples})


ROOT = Path(__file__).resolve().parent.parent


def batch(*args: str, wait: bool = True) -> subprocess.CompletedProcess[str] | subprocess.Popen:
    """`python -m agbento.batch ARGS --quiet`, run to the end or (wait=False) started."""
    command = [sys.executable, "-m", "agbento.batch", *args, "--quiet"]
    if not wait:
        return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


def summary(stderr: str) -> dict:
    """The batch client's JSON summary (its last line on stderr)."""
    return json.loads(stderr.strip().splitlines()[-1])


def wait_for_parts(parts: Path, at_least: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(list(parts.glob("*.out.parquet"))) < at_least:
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.05)


def interrupt_and_resume(args: list[str], output: Path) -> tuple[int, dict[str, Any]]:
    """Run the batch client, Ctrl-C it once 10 chunks are done, run it again to the end:
    (chunks finished before the interruption, the second run's summary)."""
    parts = output.with_name(output.name + ".parts")
    client = batch(*args, wait=False)
    wait_for_parts(parts, 10)
    client.send_signal(signal.SIGINT)
    _, stderr = client.communicate(timeout=60)
    assert client.returncode == 130, stderr[-2000:]
    assert not output.exists()
    manifest = json.loads((parts / "manifest.json").read_text())
    assert manifest["model"]
    done = len(list(parts.glob("*.out.parquet")))
    result = batch(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not parts.exists()
    return done, {**summary(result.stderr), "model": manifest["model"]}


# A stand-in predictor for TabularRuntime (as KServe tests its model servers).
POISON = 31.0  # a bill length the stand-in model cannot score


class StandInPredictor:
    """P(Gentoo) grows with bill length; a poisoned row, or a broken model, raises."""

    def __init__(self) -> None:
        self.calls = 0
        self.broken = False

    def predict_proba(self, frame: pd.DataFrame, as_multiclass: bool = True) -> pd.DataFrame:
        self.calls += 1
        if self.broken or (frame["bill_length_mm"] == POISON).any():
            raise ValueError("cannot score this")
        gentoo = (frame["bill_length_mm"].fillna(45.0) / 100).to_numpy()
        return pd.DataFrame({"Adelie": 1 - gentoo, "Gentoo": gentoo}, index=frame.index)

    def predict_from_proba(self, proba: pd.DataFrame) -> pd.Series:
        return proba.idxmax(axis=1)


def runtime() -> tuple[TabularRuntime, StandInPredictor]:
    predictor = StandInPredictor()
    runtime = TabularRuntime(card_without_model(), predictor, retry_s=0.05)
    runtime.warm_up()
    return runtime, predictor


def stopped(process: psutil.Process) -> bool:
    """Gone, or a zombie (stopped; whoever adopted it may reap it late)."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
