"""One answer, two forms: fused keeps the model's arrays, split carries JSON fragments across
its hop. The API answers the same bytes from either (JSON, Arrow, Parquet), with real tiny
models, in-process: the topologies differ only in what `ScoredRequest` holds."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from agbento.core.wire import ARROW_STREAM, PARQUET
from agbento.rows.schema import OnError
from agbento.runtime import contract as contract_module
from agbento.runtime.cache import CacheConfig, MemoryBackend, PredictionCache
from agbento.runtime.contract import PredictionContract, render_table
from agbento.runtime.inference import Group, ScoredRequest, TabularRuntime, encode_group
from agbento.runtime.scoring import CachedScorer
from agbento.training.pipeline import demo_table
from tests.tiny_models import TinyModels, loose_schema_model

TOPOLOGIES = ("fused", "split")


def fused(runtime: TabularRuntime, groups: list[Group]) -> list[ScoredRequest]:
    """The in-process batcher's call: the answers hold the model's arrays."""
    return runtime.score_groups(groups)


def split(runtime: TabularRuntime, groups: list[Group]) -> list[ScoredRequest]:
    """What crosses the split topology's hop: encoded groups in, JSON dicts back."""
    sent = [encode_group(g) for g in groups]
    answers = json.loads(json.dumps([a.to_dict() for a in runtime.score_requests(sent)]))
    return [ScoredRequest.from_dict(a) for a in answers]


SCORE: dict[str, Callable[[TabularRuntime, list[Group]], list[ScoredRequest]]] = {
    "fused": fused, "split": split}


def demo_rows(runtime: TabularRuntime, count: int, start: int = 0) -> list[dict[str, Any]]:
    """Demo rows with the model's features (and not its label)."""
    table = demo_table().dropna()[list(runtime.schema.names)].iloc[start:start + count]
    return [{k: (None if pd.isna(v) else v) for k, v in row.items()}
            for row in table.to_dict(orient="records")]


def answer_bodies(runtime: TabularRuntime, placed_answer: Any, rows: Any,
                  total: int) -> dict[str, bytes]:
    contract = PredictionContract(runtime.card, max_rows=10_000)
    classes = contract.classes
    bodies = {"json": contract.render(placed_answer, rows, "rid"),
              ARROW_STREAM: render_table(placed_answer, total, classes, ARROW_STREAM),
              PARQUET: render_table(placed_answer, total, classes, PARQUET)}
    if classes is not None:
        bodies["json probabilities"] = contract.render(placed_answer, rows, "rid",
                                                       "probabilities")
    return bodies


def holds_arrays(answer: Any) -> bool:
    return answer.labels is not None or (
        answer.source is not None and answer.source.labels is not None)


def bodies_per_topology(runtime: TabularRuntime, requests: list[list[dict[str, Any]]],
                        on_error: OnError = "fail", as_frames: bool = False,
                        ) -> dict[str, list[dict[str, bytes]]]:
    """Each request's answer bodies, its rows merged into one model batch with the others."""
    contract = PredictionContract(runtime.card, max_rows=10_000)
    accepted = [contract.accept(data, on_error) for data in requests]
    groups: list[Group] = [runtime.schema.to_frame(rows.rows) if as_frames else rows.rows
                           for rows in accepted]
    result = {}
    for topology in TOPOLOGIES:
        answers = SCORE[topology](runtime, groups)
        # what each topology's answer holds: fused, the model's arrays (its own, or a
        # slice of its merged batch's); split, the JSON fragments that crossed the hop
        assert all(holds_arrays(a) == (topology == "fused" and not a.failed) for a in answers)
        result[topology] = [
            answer_bodies(runtime, contract.place(rows, len(data), answer, on_error), rows,
                          len(data))
            for data, rows, answer in zip(requests, accepted, answers, strict=True)]
    return result


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contract_module, "now_iso", lambda: "2026-01-01T00:00:00.000Z")


@pytest.fixture(scope="module")
def runtimes(tiny_models: TinyModels) -> dict[str, TabularRuntime]:
    return {"multiclass": TabularRuntime.load(tiny_models.multiclass),
            "binary": TabularRuntime.load(tiny_models.binary),
            "regression": TabularRuntime.load(tiny_models.regression)}


def read_table(body: bytes, media: str) -> pa.Table:
    import io

    import pyarrow.parquet as pq

    return (pa.ipc.open_stream(body).read_all() if media == ARROW_STREAM
            else pq.read_table(io.BytesIO(body)))


def assert_same_bodies(result: dict[str, list[dict[str, bytes]]]) -> None:
    for fused_bodies, split_bodies in zip(result["fused"], result["split"], strict=True):
        for media, body in fused_bodies.items():
            if media in (ARROW_STREAM, PARQUET) and body != split_bodies[media]:
                assert read_table(body, media) == read_table(split_bodies[media], media)
            assert body == split_bodies[media], media
    for bodies in result["fused"]:
        table = pa.ipc.open_stream(bodies[ARROW_STREAM]).read_all()
        assert table.num_rows > 0 and table.column("prediction").null_count < table.num_rows


@pytest.mark.parametrize("model", ["multiclass", "binary", "regression"])
@pytest.mark.parametrize("as_frames", [False, True], ids=["value lists", "frames"])
def test_fused_and_split_answer_the_same_bytes(runtimes: dict[str, TabularRuntime], model: str,
                                               as_frames: bool) -> None:
    runtime = runtimes[model]
    # three requests merged into one batch, of different sizes
    requests = [demo_rows(runtime, 1, 0), demo_rows(runtime, 150, 10),
                demo_rows(runtime, 40, 200)]
    result = bodies_per_topology(runtime, requests, as_frames=as_frames)
    assert_same_bodies(result)
    document = json.loads(result["fused"][1]["json"])
    table = pa.ipc.open_stream(result["fused"][1][ARROW_STREAM]).read_all()
    # the table's values are the JSON answer's, value for value
    assert table.column("prediction").to_pylist() == document["predictions"]
    if runtime.classification:
        for cls in runtime.card.schema.label.classes:
            assert table.column(f"proba_{cls}").to_pylist() == [
                p[str(cls)] for p in document["probabilities"]]
        assert any(len(repr(p)) > 12 for row in document["probabilities"] for p in row.values())


@pytest.mark.parametrize("model", ["multiclass", "regression"])
def test_skipped_rows_and_a_row_only_the_model_rejects_answer_the_same(
    tiny_models: TinyModels, runtimes: dict[str, TabularRuntime], model: str,
) -> None:
    rows = demo_rows(runtimes[model], 30, 100)
    bad = {**rows[3], "flipper_length_mm": "wide"}  # the schema refuses it
    skipping = bodies_per_topology(runtimes[model], [rows[:3] + [bad] + rows[3:]], "skip")
    assert_same_bodies(skipping)
    errors = json.loads(skipping["fused"][0]["json"])["errors"]
    assert [e["row"] for e in errors] == [3]

    # the schema wrongly calls bill_length_mm categorical: only the model rejects text there
    loose = TabularRuntime.load(loose_schema_model(getattr(tiny_models, model),
                                                   "bill_length_mm"))
    loose_rows = [{**r, "bill_length_mm": str(r["bill_length_mm"])}
                  for r in rows if r["bill_length_mm"] is not None]
    rejected = {**loose_rows[1], "bill_length_mm": "long"}
    refused = {**loose_rows[2], "flipper_length_mm": "wide"}
    requests = [loose_rows[:1] + [rejected, refused] + loose_rows[1:], loose_rows[:5]]
    result = bodies_per_topology(loose, requests, "skip")
    assert_same_bodies(result)
    document = json.loads(result["fused"][0]["json"])
    assert [(e["row"], e["field"]) for e in document["errors"]] == [
        (1, None), (2, "flipper_length_mm")]
    assert document["predictions"][1] is None and document["predictions"][0] is not None


def test_cached_and_fresh_rows_merge_to_the_same_answer(
    runtimes: dict[str, TabularRuntime],
) -> None:
    runtime = runtimes["multiclass"]
    contract = PredictionContract(runtime.card, max_rows=10_000)
    data = demo_rows(runtime, 20, 50)
    rows = contract.accept(data)

    async def through_cache(topology: str) -> ScoredRequest | None:
        async def score(group: Group) -> ScoredRequest:
            return SCORE[topology](runtime, [group])[0]

        backend = MemoryBackend(1 << 20)
        scorer = CachedScorer(score, PredictionCache(backend, "m:1", CacheConfig(url="memory")),
                              True, max_cached_rows=100)
        await scorer.score(rows.rows[::3])  # some rows cached first
        await asyncio.gather(*scorer.background)
        return await scorer.score(rows.rows)  # then cached and fresh rows merged

    def bodies(scored: ScoredRequest | None) -> dict[str, bytes]:
        return answer_bodies(runtime, contract.place(rows, len(data), scored), rows, len(data))

    cached = {topology: bodies(asyncio.run(through_cache(topology))) for topology in TOPOLOGIES}
    assert cached["fused"] == cached["split"]
    uncached = bodies(fused(runtime, [rows.rows])[0])
    # the cache's JSON is written by json.dumps, so compare values; tables byte for byte
    assert json.loads(cached["fused"]["json"]) == json.loads(uncached["json"])
    assert cached["fused"][ARROW_STREAM] == uncached[ARROW_STREAM]


def test_a_fused_table_answer_writes_no_json(runtimes: dict[str, TabularRuntime],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = runtimes["multiclass"]
    contract = PredictionContract(runtime.card, max_rows=10_000)
    data = demo_rows(runtime, 50)
    rows = contract.accept(data)
    (answer,) = fused(runtime, [rows.rows])

    def no_json(*args: Any, **kwargs: Any) -> str:
        raise AssertionError("JSON written for a table answer")

    monkeypatch.setattr(pd.Series, "to_json", no_json)
    monkeypatch.setattr(pd.DataFrame, "to_json", no_json)
    table = pa.ipc.open_stream(render_table(contract.place(rows, 50, answer), 50,
                                            contract.classes, ARROW_STREAM)).read_all()
    assert table.num_rows == 50
    assert len(answer.prediction_values) == 50 and len(answer.probability_values) == 50


@pytest.mark.parametrize("on_error", ["fail", "skip"])
def test_metrics_observe_the_same_from_either_form(runtimes: dict[str, TabularRuntime],
                                                   on_error: OnError) -> None:
    from prometheus_client import REGISTRY

    from agbento.monitoring.metrics import PredictionObserver

    runtime = runtimes["multiclass"]
    classes = [str(c) for c in runtime.card.schema.label.classes]
    contract = PredictionContract(runtime.card, max_rows=10_000)
    data = demo_rows(runtime, 60, 30)
    if on_error == "skip":
        data[5] = {**data[5], "flipper_length_mm": "wide"}
    rows = contract.accept(data, on_error)

    class Sink:
        def maybe_log(self, rows: Any, predictions: Callable[[], list[Any]]) -> bool:
            self.logged = predictions()
            return True

    def observed(topology: str) -> tuple[list[float], list[Any]]:
        def sample(name: str, **labels: str) -> float:
            return REGISTRY.get_sample_value(name, labels) or 0.0

        names = [("agbento_predictions_total", {"class": c}) for c in classes] + [
            ("agbento_prediction_confidence_sum", {}),
            ("agbento_prediction_confidence_count", {}),
            ("agbento_prediction_confidence_bucket", {"le": "0.9"})]
        before = [sample(name, **labels) for name, labels in names]
        sink = Sink()
        (scored,) = SCORE[topology](runtime, [rows.rows])
        PredictionObserver(True, None, sink).observe(rows.rows, scored)
        return [sample(name, **labels) - b
                for (name, labels), b in zip(names, before, strict=True)], sink.logged

    (fused_counts, fused_logged), (split_counts, split_logged) = map(observed, TOPOLOGIES)
    assert fused_counts == split_counts
    assert sum(fused_counts[:len(classes)]) == len(rows.rows) == fused_counts[-2]
    assert fused_logged == split_logged and len(fused_logged) == len(rows.rows)
