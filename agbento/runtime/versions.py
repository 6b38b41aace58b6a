"""The split model worker's loaded versions: requests name theirs, each is scored by it.

A split API worker validates a request against one version's schema and sends the tag with
the rows (`encode_for`); the model worker scores each request with that version. It keeps
the version its stage names (`current`) and the one before, so requests validated just
before a swap still score on theirs; a version it does not hold is loaded on demand
(verified and warmed up off the event loop), which only happens when an API worker
noticed a promotion first.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from agbento.runtime.explaining import ExplainedRows, ExplainRequest, ExplanationRunner
from agbento.runtime.inference import ScoredRequest, TabularRuntime, decode_for, decode_group

# The current version and the one before it (a request validated against it may still come).
KEPT_VERSIONS = 2


class RuntimeVersions:
    def __init__(self, first: TabularRuntime, load: Callable[[str], TabularRuntime],
                 max_explain_rows: int) -> None:
        self.current = first
        self.load = load  # tag -> a loaded, warmed-up runtime (blocking)
        self.max_explain_rows = max_explain_rows
        self._held: OrderedDict[str, TabularRuntime] = OrderedDict({first.card.tag: first})
        self._explaining: dict[str, ExplanationRunner] = {}
        self._closing: set[asyncio.Task[Any]] = set()
        self._loading = asyncio.Lock()

    def tag(self) -> str:
        return self.current.card.tag

    @property
    def ready(self) -> bool:
        return self.current.ready

    async def ensure(self, tag: str) -> TabularRuntime:
        """The runtime of `tag`, loaded (off the event loop) if it is not held."""
        held = self._held.get(tag)
        if held is not None:
            self._held.move_to_end(tag)
            return held
        async with self._loading:
            held = self._held.get(tag)
            if held is None:
                held = await asyncio.to_thread(self.load, tag)
                self._held[tag] = held
                self._evict()
            return held

    async def swap(self, tag: str) -> None:
        """Make `tag` the current version (loading it first; raises if it does not load)."""
        self.current = await self.ensure(tag)
        self._held.move_to_end(tag)
        self._evict()

    def _evict(self) -> None:
        while len(self._held) > KEPT_VERSIONS:
            oldest = next(tag for tag in self._held if tag != self.current.card.tag)
            del self._held[oldest]
            runner = self._explaining.pop(oldest, None)
            if runner is not None:  # its thread and batcher go with the version
                task = asyncio.get_running_loop().create_task(runner.close())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    async def explain(self, encoded: str, explained_class: str | None) -> ExplainedRows:
        """One request's rows (`encode_for`: its version and rows) -> their explanations,
        by that version's runner (made on the first explanation it is asked for)."""
        tag, body = decode_for(encoded)
        runtime = await self.ensure(tag or self.tag())
        runner = self._explaining.get(runtime.card.tag)
        if runner is None:
            runner = self._explaining[runtime.card.tag] = ExplanationRunner(
                runtime, self.max_explain_rows)
        return await runner.explain(ExplainRequest(decode_group(body), explained_class))

    async def close(self) -> None:
        for runner in self._explaining.values():
            await runner.close()

    async def score_requests(self, requests: list[str]) -> list[ScoredRequest]:
        """A merged batch whose requests may name different versions: one model call per
        version, answers in the requests' order."""
        decoded = [decode_for(r) for r in requests]
        tags = [tag or self.tag() for tag, _ in decoded]
        if len(set(tags)) == 1:
            runtime = await self.ensure(tags[0])
            return runtime.score_groups([decode_group(body) for _, body in decoded])
        answers: list[ScoredRequest | None] = [None] * len(requests)
        for tag in dict.fromkeys(tags):
            runtime = await self.ensure(tag)
            positions = [i for i, t in enumerate(tags) if t == tag]
            scored = runtime.score_groups([decode_group(decoded[i][1]) for i in positions])
            for i, answer in zip(positions, scored, strict=True):
                answers[i] = answer
        return [a for a in answers if a is not None]
