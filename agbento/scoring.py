"""Scoring from the API's side: the call to the model service, and the cache in front.

`ModelServiceClient` turns what can go wrong on the hop to the batched model service into
our answers (503 `model_unavailable`, `overloaded`, `model_error`). `CachedScorer` knows
nothing of HTTP or BentoML: it is handed the function that scores rows and the cache, so a
unit test can drive it with a stub.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pandas as pd
from bentoml.exceptions import ServiceUnavailable

from agbento.cache import PredictionCache
from agbento.errors import ApiError, ErrorCode
from agbento.inference import Group, ScoredRequest, encode_group
from agbento.overload import overloaded

# The model service went away under a call (killed, restarting, shutting down): before it
# answered, or after its headers and before the whole body (a payload error).
MODEL_GONE = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)
RETRY_AFTER_S = 1


class ModelServiceClient:
    """Calls the batched `score` endpoint of the model service (a `bentoml.depends` handle)."""

    def __init__(self, score: Callable[[list[str]], Awaitable[list[dict[str, Any]]]],
                 wait_s: float) -> None:
        self.remote_score = score
        self.wait_s = wait_s

    async def score(self, rows: Group) -> ScoredRequest:
        """One request's validated rows (value lists or a typed frame) -> its answer."""
        payload = [encode_group(rows)]
        try:
            # a crashed model worker is restarted, and until it accepts, calls wait in its
            # socket's backlog: bound that wait rather than stall every client with it
            async with asyncio.timeout(self.wait_s):
                try:
                    (answer,) = await self.remote_score(payload)
                except MODEL_GONE:
                    # BentoML's client may close a pooled connection under a request in
                    # flight (BENTOML-NOTES.md); scoring is idempotent, so one retry is safe
                    (answer,) = await self.remote_score(payload)
        except TimeoutError:
            raise ApiError(ErrorCode.MODEL_UNAVAILABLE,
                           f"the model service did not answer within {self.wait_s:g} s "
                           "(AGBENTO_MODEL_WAIT_S); retry later",
                           retry_after_s=RETRY_AFTER_S) from None
        except MODEL_GONE as exc:
            # the model service is gone (restarting, shutting down): transient, say so
            raise ApiError(ErrorCode.MODEL_UNAVAILABLE,
                           f"the model service cannot be reached ({type(exc).__name__}); "
                           "retry later", retry_after_s=RETRY_AFTER_S) from None
        except ServiceUnavailable as exc:
            # the batcher could not meet max_latency_ms: the model is saturated
            raise overloaded(f"the model service is saturated ({exc}); retry later") from None
        return ScoredRequest.from_dict(answer).unless_model_broken()

ScoreFn = Callable[[Group], Awaitable[ScoredRequest]]


class CachedScorer:
    def __init__(self, score: ScoreFn, cache: PredictionCache, classification: bool,
                 max_cached_rows: int) -> None:
        self.score_fn = score
        self.cache = cache
        self.classification = classification
        # per-row cache work costs more than the model's one call for a big request
        self.max_cached_rows = max_cached_rows
        self.background: set[asyncio.Task[Any]] = set()

    def caches(self, rows: int) -> bool:
        """Does a request of this many rows go through the cache (its keys need the row
        path's value lists)?"""
        return self.cache.enabled and rows <= self.max_cached_rows

    async def score(self, rows: Group) -> ScoredRequest | None:
        """Validated rows (value lists in schema order, or a typed frame, which the cache
        does not key) -> one answer per row; None for none."""
        if not len(rows):
            return None
        if isinstance(rows, pd.DataFrame) or not self.caches(len(rows)):
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
