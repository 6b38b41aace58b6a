"""The fused topology's in-process batcher, in-process: merging, the size cap, isolation,
cancellation; then with a TabularRuntime (stand-in predictor) behind it."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest

from agbento.core.errors import ApiError, ErrorCode
from agbento.runtime.batching import InProcessBatcher
from agbento.runtime.scoring import InProcessModel
from tests.helpers import POISON, runtime


class Recorder:
    """score_groups that answers each group with its own sum, records every call, and can
    be held (a slow model) until released."""

    def __init__(self, raise_on: int | None = None) -> None:
        self.calls: list[list[list[int]]] = []
        self.release = threading.Event()
        self.release.set()
        self.raise_on = raise_on

    def __call__(self, groups: list[list[int]]) -> list[int]:
        self.release.wait(10)
        self.calls.append(groups)
        if self.raise_on is not None and any(self.raise_on in g for g in groups):
            raise RuntimeError("this call failed")
        return [sum(g) for g in groups]


async def held_then_released(batcher: InProcessBatcher, recorder: Recorder,
                             groups: list[list[int]]) -> list[Any]:
    """The first group occupies the model; the rest queue meanwhile, then the model frees."""
    recorder.release.clear()
    first = asyncio.create_task(batcher.score(groups[0]))
    while not batcher._loop_task or batcher._queue:  # the first call has left the queue
        await asyncio.sleep(0.001)
    rest = [asyncio.create_task(batcher.score(g)) for g in groups[1:]]
    await asyncio.sleep(0.01)  # every request has queued
    recorder.release.set()
    return await asyncio.gather(first, *rest, return_exceptions=True)


def test_requests_queued_while_the_model_runs_are_one_call_answered_each() -> None:
    recorder = Recorder()
    batcher = InProcessBatcher(recorder, max_rows=100)
    groups = [[1], [2, 3], [4], [5, 6, 7]]
    answers = asyncio.run(held_then_released(batcher, recorder, groups))
    assert answers == [sum(g) for g in groups]
    assert recorder.calls == [[[1]], [[2, 3], [4], [5, 6, 7]]]


def test_a_call_holds_at_most_max_rows_and_a_bigger_request_goes_alone() -> None:
    recorder = Recorder()
    batcher = InProcessBatcher(recorder, max_rows=4)
    groups = [[0], [1, 1], [2, 2], [3], [4] * 9, [5], [6]]
    answers = asyncio.run(held_then_released(batcher, recorder, groups))
    assert answers == [sum(g) for g in groups]
    sizes = [[len(g) for g in call] for call in recorder.calls]
    assert sizes == [[1], [2, 2], [1], [9], [1, 1]]
    assert all(sum(call) <= 4 for call in sizes if len(call) > 1)


def test_a_failing_call_fails_only_its_requests_and_the_loop_goes_on() -> None:
    recorder = Recorder(raise_on=13)
    batcher = InProcessBatcher(recorder, max_rows=2)
    # [13] shares a call with [1] (2 rows); [2] and [3] come in the next call
    answers = asyncio.run(held_then_released(batcher, recorder, [[0], [1], [13], [2], [3]]))
    assert answers[0] == 0 and answers[3:] == [2, 3]
    assert all(isinstance(a, RuntimeError) for a in answers[1:3])

    async def later() -> int:
        return await batcher.score([40, 2])

    assert asyncio.run(later()) == 42  # a new event loop: the batcher starts its loop again


def test_a_cancelled_waiting_request_is_dropped_and_the_others_are_answered() -> None:
    recorder = Recorder()
    batcher = InProcessBatcher(recorder, max_rows=100)

    async def run() -> list[Any]:
        recorder.release.clear()
        first = asyncio.create_task(batcher.score([1]))
        while not batcher._loop_task or batcher._queue:
            await asyncio.sleep(0.001)
        gone = asyncio.create_task(batcher.score([100]))
        kept = asyncio.create_task(batcher.score([2]))
        await asyncio.sleep(0.01)
        gone.cancel()  # the client went away while its request waited
        recorder.release.set()
        answers = await asyncio.gather(first, kept)
        assert gone.cancelled()
        return [*answers, await batcher.score([3])]

    assert asyncio.run(run()) == [1, 2, 3]
    assert recorder.calls == [[[1]], [[2]], [[3]]]  # the cancelled request never scored


def test_a_request_cancelled_while_its_call_runs_does_not_break_the_loop() -> None:
    recorder = Recorder()
    batcher = InProcessBatcher(recorder, max_rows=100)

    async def run() -> int:
        recorder.release.clear()
        running = asyncio.create_task(batcher.score([1]))
        while not batcher._loop_task or batcher._queue:
            await asyncio.sleep(0.001)
        running.cancel()
        recorder.release.set()
        with pytest.raises(asyncio.CancelledError):
            await running
        return await batcher.score([5])

    assert asyncio.run(run()) == 5


# -- with the runtime behind it: what the fused topology serves ------------------------------


def test_fused_merging_isolates_a_row_only_the_model_rejects_per_request() -> None:
    model, predictor = runtime()
    fused = InProcessModel(model, max_batch_rows=1000)
    frame_sizes: list[int] = []
    predict_proba = predictor.predict_proba

    def recorded(frame: Any, as_multiclass: bool = True) -> Any:
        frame_sizes.append(len(frame))
        return predict_proba(frame, as_multiclass)

    predictor.predict_proba = recorded  # type: ignore[method-assign]

    async def run() -> list[Any]:
        requests = [[["Biscoe", 40.0 + i / 2]] for i in range(12)]
        requests[3] = [["Biscoe", 41.0], ["Biscoe", POISON]]
        requests[8] = [["Dream", POISON]]
        return await asyncio.gather(*(fused.score(r) for r in requests), return_exceptions=True)

    answers = asyncio.run(run())
    assert all(not isinstance(a, BaseException) for a in answers), answers
    for i, answer in enumerate(answers):
        if i == 3:
            assert [f["row"] for f in answer.failed] == [1]
            assert json.loads(answer.predictions) == ["Adelie", None]
        elif i == 8:
            assert [f["row"] for f in answer.failed] == [0]
        else:
            assert answer.failed == [] and json.loads(answer.predictions) == ["Adelie"]
    assert frame_sizes[0] == 13  # every request's rows in the first model call
    assert model.ready and model.fault is None


def test_fused_broken_model_answers_503_model_error_and_is_not_ready() -> None:
    model, predictor = runtime()
    fused = InProcessModel(model, max_batch_rows=1000)
    predictor.broken = True

    async def run() -> tuple[ApiError, bool]:
        with pytest.raises(ApiError) as caught:
            await fused.score([["Biscoe", 40.0]])
        return caught.value, await fused.is_ready()

    error, ready = asyncio.run(run())
    assert error.code == ErrorCode.MODEL_ERROR and error.status == 503 and not ready
