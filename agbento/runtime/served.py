"""One model version as the endpoints answer with it.

A `ServedModel` bundles what belongs to one version and must never mix with another's:
the card, the contract that validates against its schema, the scorer that reaches its
predictor (and its explainer), the cache keyed by its tag and the observer of its answers.
An endpoint takes the current `ServedModel` once per request and uses only it, so a request
validated against one version is scored (or explained) by that version, whatever is
swapped in meanwhile.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from agbento.core.errors import ApiError, ErrorCode
from agbento.core.settings import Settings
from agbento.models.store import ModelCard
from agbento.monitoring.drift import DriftCounter
from agbento.monitoring.metrics import PredictionObserver, observe_inputs
from agbento.monitoring.prediction_log import PredictionSampler
from agbento.monitoring.quality import FeedbackCounter
from agbento.rows.bounds import RowLimit
from agbento.rows.columns import RequestTable
from agbento.rows.explain_options import ExplainOptions
from agbento.rows.schema import OnError, ValidatedRows, ValidatedTable
from agbento.runtime.cache import CacheBackend, CacheConfig, PredictionCache
from agbento.runtime.contract import PredictionContract
from agbento.runtime.explaining import ExplainedRows, ExplainRequest
from agbento.runtime.inference import ScoredRequest, log_rejected_rows
from agbento.runtime.scoring import CachedScorer, ModelScorer
from agbento.runtime.shadow import ShadowScorer

Accepted = ValidatedRows | ValidatedTable
logger = logging.getLogger(__name__)


@dataclass
class ServedModel:
    card: ModelCard
    contract: PredictionContract
    scorer: ModelScorer
    scoring: CachedScorer
    cache: PredictionCache
    observer: PredictionObserver
    # counts every scored row into its feature's training bins (None: monitoring off, or a
    # card without reference distributions)
    drift: DriftCounter | None = None
    # counts labelled rows from /feedback (None: monitoring off)
    feedback: FeedbackCounter | None = None
    # a candidate scoring a sample of this version's requests off the request path
    shadow: ShadowScorer | None = None
    # scoring calls in flight: a swapped-out version is closed once this is 0
    active: int = field(default=0, compare=False)

    @classmethod
    def open(cls, card: ModelCard, scorer: ModelScorer, settings: Settings,
             cache_backend: CacheBackend | None,
             shadow: ShadowScorer | None = None) -> ServedModel:
        """The endpoints' view of `card`, scored by `scorer` (loaded and warmed up)."""
        cache_config = CacheConfig.from_settings(settings)
        cache = PredictionCache(cache_backend, card.tag, cache_config)
        return cls(
            card=card,
            contract=PredictionContract(card, settings.max_rows, settings.extra_fields,
                                        settings.max_explain_rows),
            scorer=scorer,
            scoring=CachedScorer(scorer.score, cache, card.is_classification,
                                 settings.cache_max_rows),
            cache=cache,
            observer=PredictionObserver(
                card.is_classification, card.metadata.get("label_range"),
                PredictionSampler(card.schema, card.is_classification,
                                  settings.prediction_log_sample, settings.prediction_log_dir)),
            drift=DriftCounter.of(card) if settings.monitoring == "on" else None,
            feedback=FeedbackCounter.of(card) if settings.monitoring == "on" else None,
            shadow=shadow,
        )

    @property
    def tag(self) -> str:
        return self.card.tag

    async def accept_and_score(
        self, data: Any, on_error: OnError, request_id: str, table: RequestTable | None = None
    ) -> tuple[Accepted, ScoredRequest | None]:
        """Validate against this version's schema, then score with this version's model."""
        rows = self._accept(data, on_error, table, self.contract.row_limit)
        scored = await self.score_accepted(rows)
        log_rejected_rows(scored, rows.indices, request_id)
        group = _group(rows)
        if self.drift is not None:
            self._count_drift(group)
        if self.shadow is not None:
            self.shadow.offer(self.card.schema, group, scored, self.tag, request_id)
        return rows, scored

    def _count_drift(self, group: Any) -> None:
        """Counting must never cost an answer: a failure stops it for this version, said
        once."""
        try:
            self.drift.observe(group)  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001
            logger.exception("drift counting stopped for %s: the answers go on", self.tag)
            self.drift = None

    async def score_accepted(self, rows: Accepted) -> ScoredRequest | None:
        """Accepted rows scored from the cache or by this version's model."""
        self.active += 1
        try:
            return await self.scoring.score(_group(rows))
        finally:
            self.active -= 1

    async def accept_and_explain(
        self, data: Any, on_error: OnError, request_id: str, table: RequestTable | None = None,
        options: ExplainOptions | None = None,
    ) -> tuple[Accepted, ExplainedRows | None]:
        """Validate against this version's schema (at most AGBENTO_MAX_EXPLAIN_ROWS rows),
        then explain with this version's model; never through the cache (an explanation
        is not a prediction, and costs too much to keep per row)."""
        options = options or ExplainOptions()
        self.contract.require_class(options.explained_class)
        rows = self._accept(data, on_error, table, self.contract.explain_limit)
        group = _group(rows)
        if not len(group):  # every row refused (skip mode): nothing to explain
            return rows, None
        self.active += 1
        try:
            explained = await self.scorer.explain(
                ExplainRequest(group, options.explained_class))
        finally:
            self.active -= 1
        log_rejected_rows(explained, rows.indices, request_id)
        return rows, explained

    def _accept(self, data: Any, on_error: OnError, table: RequestTable | None,
                limit: RowLimit) -> Accepted:
        if table is not None:
            rows: Accepted = self.contract.accept_table(table, on_error, limit)
        else:
            rows = self.contract.accept(data, on_error, limit)
        observe_inputs(rows.missing, rows.unseen_categories, rows.out_of_range)
        return rows

    async def score_rows(self, data: list[Any], request_id: str) -> ScoredRequest:
        """/predict's path for the other protocols' codecs (V2, KServe V1): validated,
        scored from the cache or the batched model, observed; any bad row is an ApiError."""
        rows, scored = await self.accept_and_score(data, "fail", request_id)
        self.contract.model_failures(rows, scored)
        if scored is None:  # cannot happen: "fail" refuses a request without good rows
            raise ApiError(ErrorCode.EMPTY_DATA, "the request has no rows")
        self.observer.observe(rows.rows, scored)
        return scored

    async def explain_rows(self, data: list[Any], request_id: str) -> ExplainedRows:
        """/explain's path for KServe V1's codec: validated, explained; any bad row (or one
        the model cannot explain) is an ApiError."""
        rows, explained = await self.accept_and_explain(data, "fail", request_id)
        self.contract.model_failures(rows, explained)
        if explained is None:  # cannot happen: "fail" refuses a request without good rows
            raise ApiError(ErrorCode.EMPTY_DATA, "the request has no rows")
        return explained

    async def is_ready(self) -> bool:
        return await self.scorer.is_ready()

    async def close(self) -> None:
        if self.drift is not None:  # its last second of counts
            self.drift.flush()
        await self.scorer.close()


def _group(rows: Accepted) -> Any:
    """The accepted rows as the model takes them: a typed frame, or value lists."""
    return rows.frame if isinstance(rows, ValidatedTable) else rows.rows
