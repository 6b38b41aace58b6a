"""Scoring from the API's side: the model (one of two topologies), and the cache in front.

A `ModelScorer` scores one request's validated rows, explains them, and says whether the
model is ready:
- split: `ModelServiceClient` calls the batched model service (`score`, and `explain`) and
  turns what can go wrong on that hop into our answers (503 `model_unavailable`,
  `overloaded`, `model_error`);
- fused: `InProcessModel` holds the predictor in this worker and merges concurrent requests
  with an `InProcessBatcher` (explanations with one of their own, on their own thread).
Explanations never go through the cache.
`CachedScorer` knows nothing of HTTP or BentoML: it is handed the function that scores rows
and the cache, so a unit test can drive it with a stub.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import aiohttp
import pandas as pd
from bentoml.exceptions import ServiceUnavailable

from agbento.core.errors import ApiError, ErrorCode, overloaded
from agbento.models.store import ModelCard
from agbento.runtime.batching import InProcessBatcher
from agbento.runtime.cache import PredictionCache
from agbento.runtime.explaining import ExplainedRows, ExplainRequest, ExplanationRunner
from agbento.runtime.inference import Group, ScoredRequest, TabularRuntime, encode_for

# The model service went away under a call (killed, restarting, shutting down): before it
# answered, or after its headers and before the whole body (a payload error).
MODEL_GONE = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)
RETRY_AFTER_S = 1


READY_PROBE_S = 5


class ModelScorer(Protocol):
    """What the API needs from the model, whichever topology holds it."""

    async def score(self, rows: Group) -> ScoredRequest: ...

    async def explain(self, request: ExplainRequest) -> ExplainedRows: ...

    async def is_ready(self) -> bool: ...

    async def close(self) -> None: ...


Answer = TypeVar("Answer")
# The model service's `explain` endpoint: (one request's encoded rows, the explained class)
RemoteExplain = Callable[[str, str | None], Awaitable[dict[str, Any]]]


class ModelServiceClient:
    """Split: calls the batched `score` endpoint of the model service, and its `explain`
    (a `bentoml.depends` handle's methods, looked up per call: its client has endpoints only
    once serving); each request names `tag`, the version its rows were validated against.
    An explanation may take seconds: its wait is `explain_wait_s`."""

    def __init__(self, tag: str, score: Callable[[list[str]], Awaitable[list[dict[str, Any]]]],
                 ready: Callable[[float], Awaitable[bool]], wait_s: float,
                 explain: RemoteExplain | None = None,
                 explain_wait_s: float | None = None) -> None:
        self.tag = tag
        self.remote_score = score
        self.remote_ready = ready
        self.wait_s = wait_s
        self.remote_explain = explain
        self.explain_wait_s = explain_wait_s or wait_s

    async def is_ready(self) -> bool:
        """The model service answers its own /readyz within 5 s."""
        try:
            async with asyncio.timeout(READY_PROBE_S):
                return await self.remote_ready(READY_PROBE_S)
        except Exception:  # noqa: BLE001 - any failure to reach the model means not ready
            return False

    async def close(self) -> None:
        """Nothing to release: BentoML closes the dependency's client."""

    async def score(self, rows: Group) -> ScoredRequest:
        """One request's validated rows (value lists or a typed frame) -> its answer."""
        payload = [encode_for(self.tag, rows)]
        (answer,) = await self._call(lambda: self.remote_score(payload), self.wait_s,
                                     "AGBENTO_MODEL_WAIT_S")
        return ScoredRequest.from_dict(answer).unless_model_broken()

    async def explain(self, request: ExplainRequest) -> ExplainedRows:
        """One request's validated rows -> their explanations, from the model service."""
        if self.remote_explain is None:
            raise RuntimeError("this client was made without the model service's explain")
        remote, rows = self.remote_explain, encode_for(self.tag, request.rows)
        answer = await self._call(lambda: remote(rows, request.explained_class),
                                  self.explain_wait_s, "AGBENTO_REQUEST_TIMEOUT_S")
        return ExplainedRows.from_dict(answer).unless_model_broken()

    async def _call(self, call: Callable[[], Awaitable[Answer]], wait_s: float,
                    variable: str) -> Answer:
        """One call of the model service, within `wait_s` (set by `variable`), its
        failures turned into our answers."""
        try:
            # a crashed model worker is restarted, and until it accepts, calls wait in its
            # socket's backlog: bound that wait rather than stall every client with it
            async with asyncio.timeout(wait_s):
                try:
                    return await call()
                except MODEL_GONE:
                    # BentoML's client may close a pooled connection under a request in
                    # flight (BENTOML-NOTES.md); scoring and explaining are idempotent, so
                    # one retry is safe
                    return await call()
        except TimeoutError:
            raise ApiError(ErrorCode.MODEL_UNAVAILABLE,
                           f"the model service did not answer within {wait_s:g} s "
                           f"({variable}); retry later",
                           retry_after_s=RETRY_AFTER_S) from None
        except MODEL_GONE as exc:
            # the model service is gone (restarting, shutting down): transient, say so
            raise ApiError(ErrorCode.MODEL_UNAVAILABLE,
                           f"the model service cannot be reached ({type(exc).__name__}); "
                           "retry later", retry_after_s=RETRY_AFTER_S) from None
        except ServiceUnavailable as exc:
            # the batcher could not meet max_latency_ms: the model is saturated
            raise overloaded(f"the model service is saturated ({exc}); retry later") from None


class InProcessModel:
    """Fused: the verified, persisted predictor in this API worker; concurrent requests are
    merged by an `InProcessBatcher` into calls of `TabularRuntime.score_groups`, concurrent
    explanations by the `ExplanationRunner`'s, on a thread of its own."""

    def __init__(self, runtime: TabularRuntime, max_batch_rows: int,
                 max_explain_rows: int | None = None) -> None:
        self.runtime = runtime
        # looked up per call, so a test may patch the runtime's method
        self.batcher: InProcessBatcher[Group, ScoredRequest] = InProcessBatcher(
            lambda groups: self.runtime.score_groups(groups), max_batch_rows)
        self.explanations = ExplanationRunner(runtime, max_explain_rows or max_batch_rows)

    @classmethod
    def load(cls, card: ModelCard, allow_version_mismatch: bool, max_batch_rows: int,
             max_explain_rows: int | None = None) -> InProcessModel:
        """Verify, load, persist and warm up the model (readiness means the warm-up worked)."""
        return cls(TabularRuntime.ready_to_serve(card, allow_version_mismatch), max_batch_rows,
                   max_explain_rows)

    async def score(self, rows: Group) -> ScoredRequest:
        return (await self.batcher.score(rows)).unless_model_broken()

    async def explain(self, request: ExplainRequest) -> ExplainedRows:
        return (await self.explanations.explain(request)).unless_model_broken()

    async def is_ready(self) -> bool:
        """Warmed up, and the model is not broken (this worker's own runtime)."""
        return self.runtime.ready

    async def close(self) -> None:
        await self.batcher.close()
        await self.explanations.close()


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
