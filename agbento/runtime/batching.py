"""In-process adaptive batching for the fused topology: concurrent requests, one model call.

BentoML 1.4.39 applies its batch dispatcher only to HTTP calls of a batchable endpoint
(`http_app.py`), and our public endpoints take `data`, `on_error` and the context, so the
fused topology merges requests here. Each request queues its validated rows (a *group*)
with a future; one loop takes everything queued (up to `max_rows` rows; a bigger request
goes alone), makes one call of `score_groups` on a dedicated thread, and resolves the
futures. While the model runs, the event loop keeps reading and validating the next
requests, which is what fills the next batch: no timer, no waiting for company.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence, Sized
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

Group = TypeVar("Group", bound=Sized)
Answer = TypeVar("Answer")


@dataclass
class _Waiting(Generic[Group, Answer]):
    group: Group
    future: asyncio.Future[Answer]


class InProcessBatcher(Generic[Group, Answer]):
    """Merges concurrent `score` calls into calls of `score_groups(groups) -> answers`.

    `score_groups` must answer one item per group, in order, and isolate its own failures
    (TabularRuntime.score_groups does: a row only the model rejects fails only its group).
    Should it raise anyway, only the requests of that call fail; the loop goes on.
    """

    def __init__(self, score_groups: Callable[[list[Group]], Sequence[Answer]],
                 max_rows: int, thread_name: str = "agbento-model") -> None:
        self.score_groups = score_groups
        self.max_rows = max_rows
        self._queue: deque[_Waiting[Group, Answer]] = deque()
        self._wakeup: asyncio.Event | None = None
        self._loop_task: asyncio.Task[None] | None = None
        # one thread: model calls never overlap, and the event loop stays free meanwhile
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)

    async def score(self, group: Group) -> Answer:
        """One request's validated rows -> its answer, scored together with its neighbours."""
        loop = asyncio.get_running_loop()
        if self._loop_task is None or self._loop_task.done():
            # started by the first request, in the serving event loop (BentoML builds the
            # service before that loop runs); an Event belongs to the loop that made it
            self._wakeup = asyncio.Event()
            self._loop_task = loop.create_task(self._run(self._wakeup))
        future: asyncio.Future[Answer] = loop.create_future()
        self._queue.append(_Waiting(group, future))
        assert self._wakeup is not None
        self._wakeup.set()
        return await future

    def _take_batch(self) -> list[_Waiting[Group, Answer]]:
        """Everything queued, up to `max_rows` rows; a request bigger than that goes alone.
        Requests whose caller is gone (cancelled) are dropped here."""
        batch: list[_Waiting[Group, Answer]] = []
        rows = 0
        while self._queue:
            waiting = self._queue[0]
            if waiting.future.done():
                self._queue.popleft()
                continue
            size = len(waiting.group)
            if batch and rows + size > self.max_rows:
                break
            batch.append(self._queue.popleft())
            rows += size
        return batch

    async def _run(self, wakeup: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                wakeup.clear()
                await wakeup.wait()
            batch = self._take_batch()
            if not batch:
                continue
            try:
                answers = await loop.run_in_executor(
                    self._model_thread, self.score_groups, [w.group for w in batch])
                if len(answers) != len(batch):
                    raise RuntimeError(f"{len(answers)} answers for {len(batch)} requests")
            except Exception as exc:  # noqa: BLE001 - fail this call's requests, not the loop
                # each request reports it as its own internal error, with its request id
                for waiting in batch:
                    if not waiting.future.done():
                        waiting.future.set_exception(exc)
                continue
            for waiting, answer in zip(batch, answers, strict=True):
                if not waiting.future.done():  # its caller may have gone meanwhile
                    waiting.future.set_result(answer)

    async def close(self) -> None:
        """Stop the loop (at shutdown, once requests have drained) and the model thread."""
        task, self._loop_task = self._loop_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._model_thread.shutdown(wait=False, cancel_futures=True)
