"""Cache-first scoring: rows the cache knows are answered from it, the rest by the model.

`CachedScorer` knows nothing of HTTP or BentoML: it is handed the function that scores
rows (the call to the batched model service) and the cache, so a unit test can drive it
with a stub.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from agbento.cache import PredictionCache
from agbento.inference import ScoredRequest

ScoreFn = Callable[[list[list[Any]]], Awaitable[ScoredRequest]]


class CachedScorer:
    def __init__(self, score: ScoreFn, cache: PredictionCache, classification: bool,
                 max_cached_rows: int) -> None:
        self.score_fn = score
        self.cache = cache
        self.classification = classification
        # per-row cache work costs more than the model's one call for a big request
        self.max_cached_rows = max_cached_rows
        self.background: set[asyncio.Task[Any]] = set()

    async def score(self, rows: list[list[Any]]) -> ScoredRequest | None:
        """Validated rows (values in schema order) -> one answer per row; None for none."""
        if not rows:
            return None
        if not self.cache.enabled or len(rows) > self.max_cached_rows:
            return await self.score_fn(rows)
        keys = self.cache.keys(rows)
        answers = await self.cache.lookup(keys)
        missing = [i for i, answer in enumerate(answers) if answer is None]
        failed: list[dict[str, Any]] = []
        if missing:
            fresh = await self.score_fn([rows[i] for i in missing])
            failed = [{**f, "row": missing[f["row"]]} for f in fresh.failed]
            for i, answer in zip(missing, fresh.per_row(), strict=True):
                answers[i] = answer
            self._in_background(self.cache.store(
                {keys[i]: answers[i] for i in missing if answers[i] is not None}))
        return ScoredRequest.from_rows(answers, failed, self.classification)

    def _in_background(self, work: Awaitable[Any]) -> None:
        """A store must not delay the answer; keep a reference until it is done."""
        task = asyncio.ensure_future(work)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
