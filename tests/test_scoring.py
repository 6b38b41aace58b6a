"""The API's side of scoring, in-process: the cache in front, the model service behind."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from bentoml.exceptions import ServiceUnavailable

from agbento.core.errors import ApiError, ErrorCode
from agbento.runtime.cache import CacheConfig, MemoryBackend, PredictionCache
from agbento.runtime.inference import ScoredRequest, decode_for, decode_group, encode_rows
from agbento.runtime.scoring import CachedScorer, ModelServiceClient


class StubModel:
    """Scores a row [name, x] as prediction x * 2; rows whose name is "bad" fail."""

    def __init__(self) -> None:
        self.calls: list[list[list[Any]]] = []

    async def __call__(self, rows: list[list[Any]]) -> ScoredRequest:
        self.calls.append(rows)
        failed = [{"row": i, "problem": "no"} for i, row in enumerate(rows) if row[0] == "bad"]
        bad = {f["row"] for f in failed}
        predictions = [None if i in bad else row[1] * 2 for i, row in enumerate(rows)]
        probabilities = [None if i in bad else {"a": 0.25, "b": 0.75} for i in range(len(rows))]
        return ScoredRequest(json.dumps(predictions), json.dumps(probabilities), failed)


def scorer(max_cached_rows: int = 10, cache: bool = True) -> tuple[CachedScorer, StubModel]:
    config = CacheConfig(url="memory")
    backend = MemoryBackend(1 << 20) if cache else None
    model = StubModel()
    return CachedScorer(model, PredictionCache(backend, "m:1", config), True,
                        max_cached_rows), model


async def settled(scoring: CachedScorer) -> None:
    await asyncio.gather(*scoring.background)  # the stores run after the answer


def test_a_cached_row_is_not_scored_again() -> None:
    async def run() -> None:
        scoring, model = scorer()
        first = await scoring.score([["a", 1], ["b", 2]])
        await settled(scoring)
        second = await scoring.score([["b", 2], ["c", 3], ["a", 1]])
        assert first.prediction_values == [2, 4]
        assert second.prediction_values == [4, 6, 2]
        assert model.calls == [[["a", 1], ["b", 2]], [["c", 3]]]  # only the new row

    asyncio.run(run())


def test_a_failed_row_keeps_its_request_index_and_is_not_cached() -> None:
    async def run() -> None:
        scoring, model = scorer()
        await scoring.score([["a", 1]])
        await settled(scoring)
        answer = await scoring.score([["a", 1], ["bad", 5], ["c", 3]])
        await settled(scoring)
        assert [f["row"] for f in answer.failed] == [1]
        assert answer.prediction_values == [2, None, 6]
        await scoring.score([["bad", 5]])
        assert model.calls[-1] == [["bad", 5]]

    asyncio.run(run())


def test_large_requests_and_no_cache_go_straight_to_the_model() -> None:
    async def run() -> None:
        for scoring, model in (scorer(max_cached_rows=1), scorer(cache=False)):
            for _ in range(2):
                await scoring.score([["a", 1], ["b", 2]])
                await settled(scoring)
            assert len(model.calls) == 2
            assert await scoring.score([]) is None

    asyncio.run(run())


def client(*outcomes: Any, wait_s: float = 5) -> tuple[ModelServiceClient, list[list[str]]]:
    """A client whose remote answers (or raises) each outcome in turn."""
    sent: list[list[str]] = []
    queue = list(outcomes)

    async def remote(payload: list[str]) -> list[dict[str, Any]]:
        sent.append(payload)
        outcome = queue.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        if outcome == "hang":
            await asyncio.sleep(60)
        return [outcome]

    async def ready(timeout: float) -> bool:
        return True

    return ModelServiceClient("m:1", remote, ready, wait_s), sent


GOOD_ANSWER = ScoredRequest("[1]", "null").to_dict()


def test_the_rows_travel_encoded_and_the_answer_comes_back() -> None:
    model, sent = client(GOOD_ANSWER)
    answer = asyncio.run(model.score([["a", 1.5]]))
    tag, rows = decode_for(sent[0][0])
    assert answer.prediction_values == [1] and decode_group(rows) == [["a", 1.5]]
    assert (tag, rows) == ("m:1", encode_rows([["a", 1.5]]))


def test_a_lost_connection_is_retried_once() -> None:
    model, sent = client(aiohttp.ServerDisconnectedError(), GOOD_ANSWER)
    assert asyncio.run(model.score([["a", 1]])).prediction_values == [1]
    assert len(sent) == 2


@pytest.mark.parametrize(("outcomes", "code"), [
    ((aiohttp.ServerDisconnectedError(), aiohttp.ClientPayloadError()), "model_unavailable"),
    (("hang",), "model_unavailable"),
    ((ServiceUnavailable("queue full"),), "overloaded"),
    ((ScoredRequest.broken("RuntimeError").to_dict(),), "model_error"),
])
def test_what_goes_wrong_on_the_hop_is_a_503_with_retry_after(outcomes: tuple,
                                                              code: str) -> None:
    model, _ = client(*outcomes, wait_s=0.2)
    with pytest.raises(ApiError) as caught:
        asyncio.run(model.score([["a", 1]]))
    assert caught.value.code == ErrorCode(code) and caught.value.status == 503
    assert caught.value.retry_after_s


def test_readiness_is_the_model_services_answer_and_false_when_it_cannot_be_asked() -> None:
    async def ready(timeout: float) -> bool:
        return True

    async def not_ready(timeout: float) -> bool:
        return False

    async def unreachable(timeout: float) -> bool:
        raise aiohttp.ClientConnectionError("gone")

    async def run() -> list[bool]:
        return [await ModelServiceClient("m:1", client()[0].remote_score, probe,
                                         1).is_ready()
                for probe in (ready, not_ready, unreachable)]

    assert asyncio.run(run()) == [True, False, False]
